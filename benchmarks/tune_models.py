"""Tune the fused embedding kernel of full-size models E and F in offline rounds (the GPU node has no compiler).

    # host: next round's candidates for each model (round 1 also measures the default schedule)
    python benchmarks/tune_models.py export --round-dir .device/tune_r1 [--models e,f] [--per-task 40] [--dense-only]
    # GPU node (TVM runtime only):
    python benchmarks/tune_models.py measure --round-dir .device/tune_r1 --out $OUT
    # host: commit the timings (databases in benchmarks/tuning/<model>/), print the summary
    python benchmarks/tune_models.py import --round-dir .device/tune_r1 --results $OUT
    # or a round of gemv grid points per dense layer (not searched), imported with the same --batches:
    python benchmarks/tune_models.py dense-grid --round-dir .device/dense_grid --models e --batches 1,32,256
    # or a round of given fused-kernel schedules (not searched): the best records of the same kernel over the other
    # packed layout, each also with the linear bucketize search, plus any listed (a JSON list of KernelConfig fields)
    python benchmarks/tune_models.py seeded --round-dir .device/seeded --models e [--configs seeds.json] \
        [--batches 512,2048]   (a batch without records gets every batch's best as its baseline)
    # after the last round: the default and the best schedule per task, to measure side by side in one run
    python benchmarks/tune_models.py final --round-dir .device/tune_final

Tasks: the fused kernel at B = 32, 256, 2048, each measured on a synthetic request of that batch (ids uniform over
the tables, 1-10 ids per multi-hot bag). Databases and trial logs: benchmarks/tuning/model_<m>/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

BATCHES = (32, 256, 2048)
TUNING = os.path.join(HERE, "tuning")


def work_dir(m: str) -> str:
    return os.path.join(TUNING, f"model_{m}")


def export(round_dir: str, models: list[str], per_task: int, rows: int, arch: str, carry_packed: bool,
           dense_only: bool = False) -> None:
    import recom_tvm
    from full_models import optimized
    from recom_tvm.schedules import offline

    recom_tvm.config.cuda_arch = arch
    for m in models:
        opt, _, _ = optimized(m, rows, "e2e")
        offline.export_round(opt, "cuda", work_dir(m), os.path.join(round_dir, m), per_task=per_task,
                             batches=BATCHES, carry_packed=carry_packed, fused=not dense_only)


def dense_grid(layer, batch: int, per_task: int, seed: int = 0) -> list:
    """Configs for one dense layer at one batch: dlight's matmul and a gemv grid, those the layer can run; more than
    `per_task` of them: the matmul and per_task - 1 gemvs drawn at random. The grid: K threads owning 2 or 4
    consecutive K (kvec: x loaded as vectors along K) with rows, columns, K threads and unrolling varied, and the
    kvec = 1 configs that won the previous grid on an H100 (vector loads of w, 8 K steps unrolled)."""
    import itertools
    import random

    from recom_tvm.schedules.dense_tail import DenseConfig, check_config, fit

    rows = (1, 2, 4) if batch <= 4 else (4, 8, 16) if batch <= 16 else (4, 8, 16, 32)
    kvec_axes = (rows, (4, 8, 16), (2, 4), (16, 32, 64), (1, 2, 4), (2, 4))
    plain_axes = (rows, (4, 8), (2, 4), (16, 32, 64), (8,), (1,))
    grid = [DenseConfig("matmul")]  # dlight's, beside the gemv at every batch: where the gemv stops paying
    for axes in (kvec_axes, plain_axes):
        for r, tn, vec, tk, unroll, kvec in itertools.product(*axes):
            cfg = DenseConfig("gemv", rows=r, threads_n=tn, vec=vec, threads_k=tk, unroll=unroll, kvec=kvec)
            if check_config(fit(cfg, layer), layer) is None:
                grid.append(cfg)
    if len(grid) > per_task:
        grid = grid[:1] + random.Random(seed + batch + layer.k + layer.n).sample(grid[1:], per_task - 1)
    return grid


def listed_configs(path: str):
    """configs(layer, batch) for a round of the same configs at every layer and batch (those the layer can run):
    a JSON list of DenseConfig fields. Picks one config per batch bucket that is good on every layer, where the
    grid's random draws differ per layer."""
    import json

    from recom_tvm.schedules.dense_tail import DenseConfig, check_config, fit

    with open(path) as f:
        cfgs = [DenseConfig.from_json(c) for c in json.load(f)]
    return lambda layer, batch: [c for c in cfgs if check_config(fit(c, layer), layer) is None]


def dense_configs(round_dir: str, models: list[str], per_task: int, rows: int, arch: str, batches,
                  config_list: str | None = None) -> None:
    """A round of gemv grid points per layer and batch, or of the configs listed in `config_list` (not searched;
    import it like any round)."""
    import recom_tvm
    from full_models import optimized
    from recom_tvm.schedules import offline

    recom_tvm.config.cuda_arch = arch
    configs = listed_configs(config_list) if config_list else lambda layer, b: dense_grid(layer, b, per_task)
    for m in models:
        opt, _, _ = optimized(m, rows, "e2e")
        offline.export_dense_configs(opt, "cuda", work_dir(m), os.path.join(round_dir, m), configs, batches)


def seeds_for(opt, target, m: str, extra, top: int = 8, batches=BATCHES) -> dict:
    """{batch: [KernelConfig]} for a seeded round of the fused kernel: per batch the `top` fastest distinct configs
    measured for the same kernel over the other packed layout (its trials), each also with the linear bucketize
    search; at a batch neither layout has records of (a new tuning batch), this layout's best record of every
    batch instead (the schedules a build would otherwise use there); then `extra` (a list: at every batch; a dict:
    {batch: list}). Those the kernel cannot run or this layout has measured are left out."""
    import dataclasses

    from recom_tvm.ops.fused_kernel import KernelConfig, check_config, column_classes, max_bounds
    from recom_tvm.schedules.tasks import find_fused_call, kernel_key
    from recom_tvm.schedules.tune import TrialLog

    call = find_fused_call(opt)
    other = dataclasses.replace(call, packed_dtype="int64" if call.packed_dtype == "int32" else "int32")
    prefix = f"fused_{kernel_key(other, target)[:8]}_B"
    mine = f"fused_{kernel_key(call, target)[:8]}_B"
    log = TrialLog(work_dir(m)).read()
    trials = [t for t in log if t["task"].startswith(prefix) and t["ms"] is not None]
    measured = {(t["task"], json.dumps(t["config"], sort_keys=True)) for t in log if t["task"].startswith(mine)}
    classes, nb = column_classes(call.meta), max(max_bounds(call.meta), 1)
    own = [t for t in log if t["task"].startswith(mine) and t["ms"] is not None]
    out = {}
    for b in batches:
        ranked = sorted((t for t in trials if t["task"] == f"{prefix}{b}"), key=lambda t: t["ms"])
        picks: list = []
        for t in ranked:
            cfg = KernelConfig.from_json(t["config"])
            if cfg not in picks:
                picks.append(cfg)
            if len(picks) == top:
                break
        picks += [dataclasses.replace(c, linear_search=16) for c in picks]
        if not ranked and not any(t["task"] == f"{mine}{b}" for t in own):
            for task in sorted({t["task"] for t in own}):
                picks.append(KernelConfig.from_json(min((t for t in own if t["task"] == task),
                                                        key=lambda t: t["ms"])["config"]))
        picks += list(extra.get(b, []) if isinstance(extra, dict) else extra)
        out[b] = [c for c in dict.fromkeys(picks) if check_config(c, classes, nb, True) is None and
                  (f"{mine}{b}", json.dumps(c.to_json(), sort_keys=True)) not in measured]
    return out


def seeded(round_dir: str, models: list[str], rows: int, arch: str, config_list: str | None,
           batches=BATCHES) -> None:
    """A round of given fused-kernel schedules (seeds_for), numbered as the model's next round: import it like any
    round. For a packed layout without records: the other layout's winners measured on it, not searched from
    scratch (round 7's search on int32 found nothing better than the defaults and its records shadowed them)."""
    import recom_tvm
    from full_models import optimized
    from recom_tvm.build_module import make_target
    from recom_tvm.ops.fused_kernel import KernelConfig
    from recom_tvm.schedules import offline

    recom_tvm.config.cuda_arch = arch
    extra: list | dict = []
    if config_list:
        with open(config_list) as f:
            given = json.load(f)
        # a list: tried at every batch; a dict: {"512": [...], ...} per batch
        extra = ({int(b): [KernelConfig.from_json(c) for c in cs] for b, cs in given.items()}
                 if isinstance(given, dict) else [KernelConfig.from_json(c) for c in given])
    target = make_target("cuda")
    for m in models:
        opt, _, _ = optimized(m, rows, "e2e")
        seeds = seeds_for(opt, target, m, extra, batches=batches)
        offline.export_configs(opt, target, os.path.join(round_dir, m), seeds, batches=batches, work_dir=work_dir(m))
        print(f"model {m}: {', '.join(f'B={b}: {len(c)}' for b, c in seeds.items())} seeded configs")


def final(round_dir: str, models: list[str], rows: int, arch: str) -> None:
    """The default and the best schedule of every task in one library per task: measured side by side (one run)."""
    import recom_tvm
    from full_models import optimized
    from recom_tvm.schedules import offline
    from recom_tvm.schedules.apply import best_configs
    from recom_tvm.schedules.tasks import find_fused_call, kernel_key
    from recom_tvm.schedules.tune import open_database

    recom_tvm.config.cuda_arch = arch
    for m in models:
        opt, _, _ = optimized(m, rows, "e2e")
        from recom_tvm.build_module import make_target

        target = make_target("cuda")
        best = best_configs(open_database(work_dir(m)), kernel_key(find_fused_call(opt), target))
        offline.export_configs(opt, target, os.path.join(round_dir, m), {b: [c] for b, (c, _) in best.items()},
                               batches=BATCHES)
        print(f"model {m}: default + best of {sorted(best)}")


def measure(round_dir: str, out_dir: str, number: int, repeat: int) -> int:
    from recom_tvm.runtime.measure import measure as run

    os.makedirs(out_dir, exist_ok=True)
    for m in sorted(os.listdir(round_dir)):
        d = os.path.join(round_dir, m)
        if not os.path.exists(os.path.join(d, "manifest.json")):
            continue
        print(f"== model {m}", flush=True)
        res = run(d, number=number, repeat=repeat)
        with open(os.path.join(out_dir, f"tune_{m}.json"), "w") as f:
            json.dump(res, f, indent=1)
    return 0


def import_results(round_dir: str, results_dir: str, models: list[str], rows: int, arch: str,
                   batches=BATCHES) -> None:
    import shutil

    import recom_tvm
    from full_models import optimized
    from recom_tvm.schedules import offline
    from recom_tvm.schedules.tasks import extract_tasks
    from recom_tvm.schedules.tune import format_row, summarize

    recom_tvm.config.cuda_arch = arch
    for m in models:
        src = os.path.join(results_dir, f"tune_{m}.json")
        if not os.path.exists(src):
            print(f"model {m}: no results in {results_dir}")
            continue
        dst = os.path.join(round_dir, m, "results.json")
        shutil.copyfile(src, dst)
        opt, _, _ = optimized(m, rows, "e2e")
        offline.import_round(opt, "cuda", work_dir(m), dst, batches=batches)
        for row in summarize(work_dir(m), extract_tasks(opt, "cuda", sorted({*BATCHES, *batches})))["tasks"]:
            print(f"model {m}: {format_row(row)}")


def report(final_results: str | None, models: list[str]) -> str:
    """Markdown: per model and batch, the default and the best schedule per round (from the trial logs), the trial
    that found the best, and the side-by-side check of the last step (same run)."""
    from recom_tvm.schedules.tune import TrialLog

    lines = ["| model | B | default (round 1) | best after round 1 / 2 / 3 | found at trial | of | best schedule | "
             "same run: default -> best (speedup) |", "|---|---|---|---|---|---|---|---|"]
    check = {}
    for m in models:
        path = os.path.join(final_results, f"tune_{m}.json") if final_results else None
        if path and os.path.exists(path):
            with open(path) as f:
                res = json.load(f)
            for c in res["candidates"]:
                check.setdefault((m, c["task"]), []).append(c)
    for m in models:
        trials = TrialLog(work_dir(m)).read()
        for task in sorted({t["task"] for t in trials}, key=lambda n: int(n.rsplit("B", 1)[1])):
            mine = [t for t in trials if t["task"] == task]
            default = next(t["ms"] for t in mine if t["source"] == "default")
            per_round, best_i = [], None
            for r in (1, 2, 3):
                upto = [(i, t) for i, t in enumerate(mine) if t["ms"] is not None and (
                    t["source"] == "default" or int(t["source"].split()[-1]) <= r)]
                if any(t["source"] == f"offline round {r}" for t in mine):
                    i, b = min(upto, key=lambda x: x[1]["ms"])
                    per_round.append(f"{b['ms'] * 1e3:.1f}")
                    best_i, best = i, b
            cfg = ", ".join(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in best["config"].items())
            same = check.get((m, task))
            if same:
                d = next(c for c in same if c["func"] == "cand_0")
                b = min((c for c in same if c.get("ok")), key=lambda c: c["ms"])
                same_s = f"{d['ms'] * 1e3:.1f} -> {b['ms'] * 1e3:.1f} us ({d['ms'] / b['ms']:.2f}x)"
            else:
                same_s = "–"
            lines.append(f"| {m.upper()} | {task.rsplit('B', 1)[1]} | {default * 1e3:.1f} us | "
                         f"{' / '.join(per_round)} us | {best_i + 1} | {len(mine)} | {cfg} | {same_s} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["export", "dense-grid", "seeded", "measure", "import", "final", "report"])
    p.add_argument("--round-dir", required=True)
    p.add_argument("--out", default=os.environ.get("OUT", "."), help="measure: where results go")
    p.add_argument("--results", default=None, help="import: the measure step's --out")
    p.add_argument("--models", default="e,f")
    p.add_argument("--per-task", type=int, default=40)
    p.add_argument("--rows", type=int, default=1 << 23)
    p.add_argument("--arch", default="sm_90")
    p.add_argument("--carry-packed", action="store_true", help="export: write the requests too (see offline)")
    p.add_argument("--dense-only", action="store_true", help="export: the MLP's layers alone (no fused-kernel tasks)")
    p.add_argument("--batches", default=None, help="dense-grid (default 1,32,256), seeded (default 32,256,2048) "
                   "and their import: the tasks' batches")
    p.add_argument("--configs", default=None, help="dense-grid: a JSON list of DenseConfig fields, measured at "
                   "every layer and batch instead of the grid; seeded: a JSON list of KernelConfig fields, added "
                   "at every batch, or a dict of such lists per batch ({\"512\": [...]})")
    p.add_argument("--number", type=int, default=20)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    models = a.models.split(",")
    batches = tuple(int(b) for b in a.batches.split(",")) if a.batches else None
    if a.mode == "export":
        export(a.round_dir, models, a.per_task, a.rows, a.arch, a.carry_packed, a.dense_only)
    elif a.mode == "dense-grid":
        dense_configs(a.round_dir, models, a.per_task, a.rows, a.arch, batches or (1, 32, 256), a.configs)
    elif a.mode == "report":
        print(report(a.results, models))
    elif a.mode == "seeded":
        seeded(a.round_dir, models, a.rows, a.arch, a.configs, batches or BATCHES)
    elif a.mode == "final":
        final(a.round_dir, models, a.rows, a.arch)
    elif a.mode == "measure":
        return measure(a.round_dir, a.out, a.number, a.repeat)
    else:
        import_results(a.round_dir, a.results or a.out, models, a.rows, a.arch, batches or BATCHES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
