"""The fused kernel of full-size E and F per table dtype and schedule knob, on the GPU (issue 16's targets).

    # host (compiler, TF exports of E / F cached): one offline round per model and table dtype, holding the
    # default schedule, the tuned one (benchmarks/tuning/model_<m>) and the new knobs on top of it
    python benchmarks/compact_kernels.py export --dir .device/compact [--models e,f] [--batches 512,2048]
    # GPU (TVM runtime + PyTorch): time every candidate (time_evaluator, median of --repeat x --number), check each
    # against its round's default (poisoned output, every element written), bytes floor per task at the copy
    # bandwidth measured in the same run
    python3 benchmarks/compact_kernels.py measure --dir .device/compact --out $OUT
    # host: tables for BENCHMARKS.md (time, floor ratio, dtype vs float32 ratio per model, batch and schedule)
    python benchmarks/compact_kernels.py report --results $OUT/compact_kernels.json

Floor: the bytes a task must move (its packed request, every id's table row in the task's dtype: dim x 4 / 2 / 2
/ 1 bytes, + 8 for an int8 row's scale and bias, the [B, width] float32 output) over the device-to-device copy
bandwidth. Tables hold random float32 values encoded in their dtype (runtime.measure fills them on the GPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

DTYPES = ("float32", "float16", "bfloat16", "int8")
BATCHES = (512, 2048)
# knobs tried on top of each task's tuned schedule (a dict of KernelConfig fields each)
VARIANTS = {"stage_meta": {"stage_meta": True}, "search_once": {"search_once": True}, "group2": {"group": 2},
            "group4": {"group": 4}, "vec8": {"vec": 8},
            "all": {"stage_meta": True, "search_once": True, "group": 4},
            "all_vec8": {"stage_meta": True, "search_once": True, "group": 4, "vec": 8}}
ELEM_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}


def candidates(opt, tuned: dict, batches=BATCHES) -> dict[int, list[tuple[str, object]]]:
    """{batch: [(label, KernelConfig), ...]} after the default: tuned, then each variant on top of tuned (those
    the task can run)."""
    from recom_tvm.ops.fused_kernel import DEFAULT, check_config, column_classes, max_bounds
    from recom_tvm.schedules.tasks import find_fused_call

    call = find_fused_call(opt)
    classes, nb = column_classes(call.meta), max(max_bounds(call.meta), 1)
    out = {}
    for b in batches:
        base = tuned.get(b, DEFAULT)
        picks = [("tuned", base)] if base != DEFAULT else []
        for label, change in VARIANTS.items():
            cfg = dataclasses.replace(base, **change)
            if cfg not in [c for _, c in picks] and cfg != DEFAULT and check_config(cfg, classes, nb, True) is None:
                picks.append((label, cfg))
        out[b] = picks
    return out


def export(out_dir: str, models: list[str], rows: int, arch: str, batches) -> None:
    import recom_tvm
    from full_models import optimized
    from recom_tvm.build_module import make_target
    from recom_tvm.passes.compact_tables import CompactTables
    from recom_tvm.schedules import offline
    from recom_tvm.schedules.apply import best_configs
    from recom_tvm.schedules.tasks import find_fused_call, kernel_key
    from recom_tvm.schedules.tune import open_database

    recom_tvm.config.cuda_arch = arch
    target = make_target("cuda")
    for m in models:
        opt, _, _ = optimized(m, rows, "e2e")  # the model the tuning records were made for
        db = os.path.join(HERE, "tuning", f"model_{m}")
        best = best_configs(open_database(db), kernel_key(find_fused_call(opt), target)) if os.path.isdir(db) else {}
        # the nearest tuned batch's schedule for each measured batch
        tuned = {b: min(best.items(), key=lambda kv: abs(np.log(kv[0] / b)))[1][0] for b in batches} if best else {}
        for d in DTYPES:
            mod = CompactTables(d)(opt) if d != "float32" else opt
            picks = candidates(mod, tuned, batches)
            labels = {b: ["default"] + [lbl for lbl, _ in p] for b, p in picks.items()}
            rd = os.path.join(out_dir, f"{m}_{d}")
            t0 = time.perf_counter()
            offline.export_configs(mod, target, rd, {b: [c for _, c in p] for b, p in picks.items()},
                                   batches=batches)
            with open(os.path.join(rd, "labels.json"), "w") as f:
                json.dump({"model": m, "dtype": d, "labels": {str(b): v for b, v in labels.items()}}, f)
            print(f"{m} {d}: {sum(map(len, labels.values()))} candidates in {time.perf_counter() - t0:.0f}s",
                  flush=True)


def task_bytes(arrays: dict, task: dict) -> int:
    """Bytes one task must move at least: packed request, each id's row in its dtype, the float32 output."""
    from recom_tvm.runtime import compact
    from recom_tvm.runtime.fused_layout import KIND, META, meta_rows
    from recom_tvm.runtime.synthetic import Distribution, synthetic_env

    meta = meta_rows(arrays["meta"])
    s = task["source"]["synthetic"]
    fused, env = synthetic_env(meta, arrays["bounds"], task["batch"], seed=s["seed"],
                               dist=Distribution.from_json(s["dist"]))
    f = {k: META.index(k) for k in META}
    total = 8 * int(task["shapes"][0]) + 4 * task["batch"] * task["width"]
    for row, col in zip(meta.tolist(), fused["columns"]):
        if row[f["kind"]] == KIND["numeric"]:
            continue
        t = col["tensors"]
        if row[f["kind"]] == KIND["csr"]:
            n = env[t["ids"]].size
        elif row[f["kind"]] == KIND["dense"]:
            n = int((env[t["x"]] != -1).sum())
        else:
            n = task["batch"]
        dt = compact.NAMES[row[f["tdtype"]]]
        total += n * (row[f["dim"]] * ELEM_BYTES[dt] + (8 if dt == "int8" else 0))
    return total


def measure(in_dir: str, out_dir: str, number: int, repeat: int) -> int:
    from device_info import gpu_name
    from recom_tvm.runtime.measure import measure as run

    import torch
    from gpu_common import bandwidths

    dev = torch.device("cuda")
    bw = bandwidths(torch, dev, torch.cuda.synchronize)
    rows = []
    for name in sorted(os.listdir(in_dir)):
        rd = os.path.join(in_dir, name)
        if not os.path.exists(os.path.join(rd, "manifest.json")):
            continue
        with open(os.path.join(rd, "labels.json")) as f:
            labels = json.load(f)
        with open(os.path.join(rd, "manifest.json")) as f:
            manifest = json.load(f)
        print(f"== {name}", flush=True)
        res = run(rd, number=number, repeat=repeat)
        for c in res["candidates"]:
            task = manifest["tasks"][c["task"]]
            with np.load(os.path.join(rd, task["arrays"])) as z:
                nbytes = task_bytes({k: z[k] for k in z.files}, task)
            b = task["batch"]
            i = int(c["func"].split("_")[1])
            floor_ms = 1e3 * nbytes / (bw["d2d_copy_GBps"] * 1e9)
            rows.append({"model": labels["model"], "dtype": labels["dtype"], "batch": b,
                         "schedule": labels["labels"][str(b)][i], "config": c["config"], "ok": c.get("ok"),
                         "ms": c.get("ms"), "runs_ms": c.get("runs_ms"), "bytes": nbytes, "floor_ms": floor_ms,
                         "error": c.get("error")})
    out = {"device": gpu_name(), "date": time.strftime("%Y-%m-%d"), "bandwidth": bw, "rows": rows}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "compact_kernels.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(report(out))
    return 1 if any(not r["ok"] for r in rows) else 0


def report(res: dict) -> str:
    """Markdown: per model and batch, each dtype's default / tuned / best time, floor ratio, ratio to float32."""
    lines = [f"{res['device']}, {res['date']}; copy bandwidth {res['bandwidth']['d2d_copy_GBps']:.0f} GB/s "
             "(read + write). Kernel alone, median; floor = the task's bytes / that bandwidth.", "",
             "| model | B | table dtype | default | tuned | best (schedule) | floor | best / floor | "
             "best / float32 best |", "|---|---|---|---|---|---|---|---|---|"]
    rows = [r for r in res["rows"] if r["ok"] and r["ms"]]
    best32 = {}
    for r in rows:
        if r["dtype"] == "float32":
            k = (r["model"], r["batch"])
            best32[k] = min(best32.get(k, float("inf")), r["ms"])
    for key in sorted({(r["model"], r["batch"], r["dtype"]) for r in rows},
                      key=lambda k: (k[0], k[1], list(ELEM_BYTES).index(k[2]))):
        mine = [r for r in rows if (r["model"], r["batch"], r["dtype"]) == key]
        get = {r["schedule"]: r for r in mine}
        best = min(mine, key=lambda r: r["ms"])
        ratio = best["ms"] / best32[key[:2]] if key[:2] in best32 else float("nan")
        tuned = f"{get['tuned']['ms'] * 1e3:.1f} us" if "tuned" in get else "–"
        lines.append(f"| {key[0].upper()} | {key[1]} | {key[2]} | {get['default']['ms'] * 1e3:.1f} us | {tuned} | "
                     f"{best['ms'] * 1e3:.1f} us ({best['schedule']}) | {best['floor_ms'] * 1e3:.1f} us | "
                     f"{best['ms'] / best['floor_ms']:.2f}x | {ratio:.2f}x |")
    bad = [r for r in res["rows"] if not r["ok"]]
    if bad:
        lines.append(f"\n{len(bad)} candidates failed or differ from their round's default: "
                     + ", ".join(f"{r['model']}/{r['dtype']}/B{r['batch']}/{r['schedule']}" for r in bad[:8]))
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["export", "measure", "report"])
    p.add_argument("--dir", default=".device/compact")
    p.add_argument("--out", default=os.environ.get("OUT", "."))
    p.add_argument("--results", default=None, help="report: the measure step's compact_kernels.json")
    p.add_argument("--models", default="e,f")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--rows", type=int, default=1 << 23)
    p.add_argument("--arch", default="sm_90")
    p.add_argument("--number", type=int, default=20)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    if a.mode == "export":
        export(a.dir, a.models.split(","), a.rows, a.arch, tuple(int(b) for b in a.batches.split(",")))
        return 0
    if a.mode == "measure":
        return measure(a.dir, a.out, a.number, a.repeat)
    with open(a.results) as f:
        print(report(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
