"""Offline tuning rounds, for GPU nodes the tuning host cannot reach (no network, batch queues, air gaps).

    round k on the tuning host:  export_round(mod, "cuda", work_dir, out_dir)   # candidates + manifest
    on the GPU node (TVM runtime only, no compiler):
        python -m recom_tvm.runtime.measure out_dir                             # -> out_dir/results.json
    back on the tuning host:     import_round(mod, "cuda", work_dir, out_dir/results.json)
    ... repeat; then recom_tvm.build(mod, "cuda", params, database=work_dir)

A round asks MetaSchedule's evolutionary search for each task's next candidates, with the XGBoost cost model
retrained on everything the database holds (the first round also measures the default schedule), and compiles
each task's candidates into one library. Importing commits the timings to the database (the next round's cost
model learns from them) and to work_dir/trials.jsonl. The GPU node regenerates each fused-kernel task's measurement
request from its seed (checked by fingerprint), runs dense-layer tasks on random inputs of their shapes, and checks
every candidate's output against the default schedule's. Tasks of both kinds share the round (one cost model each).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import tvm
from tvm.s_tir import meta_schedule as ms

from ..ops.fused_kernel import DEFAULT
from ..runtime.synthetic import Distribution
from .builder import compile_kernels, instantiate_any
from .dense_space import extract_dense_tasks
from .tasks import DEFAULT_BATCHES, extract_tasks, find_fused_call, target_tag
from .tune import (TrialLog, candidate_config, context_for, cost_model_for, is_dense, open_database, say,
                   scheduled)

MANIFEST = "manifest.json"


def task_records(db, task) -> list:
    """Every record the database holds for a task's workload."""
    if not db.has_workload(task.mod):
        return []
    return list(db.get_top_k(db.commit_workload(task.mod), 1 << 30))


def trained_cost_model(db, tasks, contexts, target, kind: str = "fused") -> ms.cost_model.XGBModel:
    """An XGBoost cost model trained on the database's records of these tasks (all of one kind)."""
    cm = cost_model_for(kind)
    for t, ctx in zip(tasks, contexts):
        recs = task_records(db, t)
        if not recs:
            continue
        cands, results = [], []
        for r in recs:
            sch = tvm.s_tir.Schedule(t.mod)
            r.trace.apply_to_schedule(sch, remove_postproc=False)
            cands.append(ms.MeasureCandidate(sch, r.args_info))
            results.append(ms.runner.RunnerResult([float(s) for s in r.run_secs], None))
        cm.update(ctx, cands, results)
    return cm


def export_round(mod: tvm.IRModule, target, work_dir: str, out_dir: str, per_task: int = 32,
                 batches=DEFAULT_BATCHES, feeds=None, seed: int = 0, dist: Distribution = Distribution(),
                 carry_packed: bool = False, dense: bool = True, fused: bool = True) -> str:
    """Write the next round's candidates of every task to out_dir (libraries + manifest); -> manifest path.
    fused=False: the dense layers' tasks alone (a round for an MLP that has not been tuned yet).

    per_task: searched candidates per task (the first round measures the default schedule besides).
    carry_packed: also write synthetic requests (the GPU node regenerates them; this is the fallback should its
    numpy draw differently)."""
    from ..build_module import make_target

    target = make_target(target)
    tasks = all_tasks(mod, target, batches, feeds, seed, dist, dense, fused)
    db = open_database(work_dir)
    log = TrialLog(work_dir)
    done = {}
    for r in log.read():
        done.setdefault(r["task"], set()).add(json.dumps(r["config"], sort_keys=True))
    rnd = next_round(log)
    os.makedirs(out_dir, exist_ok=True)
    contexts = [context_for(t, target, seed + 101 * rnd + i) for i, t in enumerate(tasks)]
    models = {}  # one cost model per kind of task, trained on its records
    for kind in ("fused", "dense"):
        sel = [i for i, t in enumerate(tasks) if ("dense" if is_dense(t) else "fused") == kind]
        models[kind] = trained_cost_model(db, [tasks[i] for i in sel], [contexts[i] for i in sel], target, kind)
    manifest = new_manifest(rnd, target)
    for t, ctx in zip(tasks, contexts):
        seen = set(done.get(t.name, ()))
        picks = []
        if not seen:  # first round: the default schedule is the baseline
            picks.append(scheduled(t, None, target.kind.name))
            seen.add(json.dumps(candidate_config(picks[0].mod).to_json(), sort_keys=True))
        want = len(picks) + per_task  # the searched candidates, beside the default
        ctx.pre_tuning(max_trials=per_task * 8, num_trials_per_iter=per_task,
                       design_spaces=ctx.generate_design_space(), database=db,
                       cost_model=models["dense" if is_dense(t) else "fused"])
        for _ in range(8):  # the search may propose what earlier rounds measured: ask again
            cands = ctx.generate_measure_candidates()
            if not cands:
                break
            for c in cands:
                k = json.dumps(candidate_config(c.sch.mod).to_json(), sort_keys=True)
                if k not in seen and len(picks) < want:
                    seen.add(k)
                    picks.append(c.sch)
            # only advances the search's trial counter: the cost model learns from measured records alone
            ctx.notify_runner_results(cands, [ms.runner.RunnerResult([1.0], None) for _ in cands])
            if len(picks) >= want:
                break
        ctx.post_tuning()
        if not picks:
            say(f"{t.name}: the design space holds no unmeasured candidate")
            continue
        t0 = time.perf_counter()
        write_task(out_dir, target, t, picks, not done.get(t.name), carry_packed, manifest)
        say(f"round {rnd}: {t.name}: {len(picks)} candidates compiled in {time.perf_counter() - t0:.1f}s")
    return write_manifest(out_dir, manifest)


def write_task(out_dir: str, target, t, picks: list, first_is_default: bool, carry_packed: bool,
               manifest: dict) -> None:
    """Compile one task's candidate schedules into one library and describe them in the manifest."""
    funcs = {f"cand_{i}": instantiate_any(s.mod, target, f"cand_{i}") for i, s in enumerate(picks)}
    lib = compile_kernels(funcs, target)
    path = os.path.join(out_dir, f"{t.name}.so")
    lib.export_library(path)
    if target.kind.name == "cuda":
        from ..cuda_support import has_fatbin

        if not has_fatbin(path):
            raise RuntimeError(f"{path} holds no CUDA binary: the CUDA codegen could not compile")
    if is_dense(t):  # measured on random inputs of these shapes
        manifest["tasks"][t.name] = {"kind": "dense", "lib": os.path.basename(path), "batch": t.batch,
                                     "args": t.arg_shapes(), "key": t.key}
    else:
        np.savez(os.path.join(out_dir, f"{t.name}.npz"), meta=t.call.meta, bounds=t.call.bounds,
                 **({"packed": t.packed} if carry_packed or "synthetic" not in t.source else {}))
        manifest["tasks"][t.name] = {"kind": "fused", "lib": os.path.basename(path), "arrays": f"{t.name}.npz",
                                     "batch": t.batch, "width": t.call.width, "shapes": list(t.shapes),
                                     "packed_dtype": t.call.packed_dtype,
                                     "source": t.source}
    for i, s in enumerate(picks):
        manifest["candidates"].append({"task": t.name, "func": f"cand_{i}",
                                       "config": candidate_config(s.mod).to_json(),
                                       "default": i == 0 and first_is_default,
                                       "trace": plain(s.trace.as_json(remove_postproc=True))})


def new_manifest(rnd, target: tvm.target.Target) -> dict:
    """An empty round manifest (tasks and candidates are added as each task's library is written)."""
    return {"round": rnd, "target": target_tag(target), "device_type": "cuda" if target.kind.name == "cuda" else "cpu",
            "created": time.strftime("%Y-%m-%d %H:%M:%S"), "tasks": {}, "candidates": []}


def write_manifest(out_dir: str, manifest: dict) -> str:
    path = os.path.join(out_dir, MANIFEST)
    with open(path, "w") as f:
        json.dump(manifest, f)
    return path


def next_round(log: TrialLog) -> int:
    return 1 + max((int(r["source"].split()[-1]) for r in log.read() if r["source"].startswith("offline round")),
                   default=0)


def export_dense_configs(mod: tvm.IRModule, target, work_dir: str, out_dir: str, configs, batches) -> str:
    """A round of given dense-layer schedules instead of searched ones: `configs(layer, batch)` -> [DenseConfig]
    per task (the default schedule is measured first in every task, beside them). Numbered as the next round of
    work_dir, so import_round commits it like a searched one (then pass the same batches)."""
    from ..build_module import make_target
    from .dense_space import default_for
    from .dense_tail import fit

    target = make_target(target)
    rnd = next_round(TrialLog(work_dir))
    os.makedirs(out_dir, exist_ok=True)
    manifest = new_manifest(rnd, target)
    kind = target.kind.name
    for t in extract_dense_tasks(mod, target, batches):
        picks, seen = [], set()
        for cfg in [default_for(kind, t.batch)] + list(configs(t.layer, t.batch)):
            k = json.dumps(fit(cfg, t.layer).to_json(), sort_keys=True)
            if k not in seen:  # (configs the layer's shape shrinks to the same schedule: measured once)
                seen.add(k)
                picks.append(scheduled(t, cfg, kind))
        t0 = time.perf_counter()
        write_task(out_dir, target, t, picks, True, False, manifest)
        say(f"round {rnd}: {t.name}: {len(picks)} given configs compiled in {time.perf_counter() - t0:.1f}s")
    return write_manifest(out_dir, manifest)


def export_configs(mod: tvm.IRModule, target, out_dir: str, configs: dict, batches=DEFAULT_BATCHES,
                   seed: int = 0, dist: Distribution = Distribution(), carry_packed: bool = False,
                   work_dir: str | None = None) -> str:
    """A round of given schedules, not searched: {batch: [KernelConfig, ...]} (each task's default first), e.g.
    the default and the best found, measured again side by side in one run. With `work_dir`, the round is that
    database's next one (import_round commits it; the default counts as the baseline only for a task without
    trials yet): a round seeded with schedules known to be good elsewhere (another packed layout, a profile)."""
    from ..build_module import make_target

    target = make_target(target)
    os.makedirs(out_dir, exist_ok=True)
    log = TrialLog(work_dir) if work_dir else None
    tried = {r["task"] for r in log.read()} if log else set()
    manifest = new_manifest(next_round(log) if log else "check", target)
    for t in extract_tasks(mod, target, batches, seed=seed, dist=dist):
        # (KernelConfig is a frozen dataclass: repeats measured once)
        picks = [scheduled(t, cfg, target.kind.name) for cfg in dict.fromkeys([DEFAULT, *configs.get(t.batch, [])])]
        write_task(out_dir, target, t, picks, t.name not in tried, carry_packed, manifest)
        say(f"round {manifest['round']}: {t.name}: {len(picks)} given configs")
    return write_manifest(out_dir, manifest)


def import_round(mod: tvm.IRModule, target, work_dir: str, results_path: str, batches=DEFAULT_BATCHES, feeds=None,
                 seed: int = 0, dist: Distribution = Distribution(), dense: bool = True) -> dict:
    """Commit a measured round (results.json beside its manifest) to the database; -> {task: best ms}."""
    from ..build_module import make_target

    target = make_target(target)
    with open(results_path) as f:
        results = json.load(f)
    with open(os.path.join(os.path.dirname(results_path), MANIFEST)) as f:
        manifest = json.load(f)
    if manifest["target"] != target_tag(target):
        raise ValueError(f"round was built for {manifest['target']}, not {target_tag(target)}")
    tasks = {t.name: t for t in all_tasks(mod, target, batches, feeds, seed, dist, dense)}
    db = open_database(work_dir)
    log = TrialLog(work_dir)
    by_id = {(r["task"], r["func"]): r for r in results["candidates"]}
    best: dict[str, float] = {}
    for cand in manifest["candidates"]:
        t = tasks.get(cand["task"])
        if t is None:
            raise ValueError(f"round's task {cand['task']} is not a task of this model (other model or batches?)")
        r = by_id.get((cand["task"], cand["func"]))
        cfg = config_of_trace(t, cand["trace"])
        source = f"offline round {manifest['round']}"
        if cand.get("default"):
            source = "default"
        if r is None or r.get("ms") is None or not r.get("ok", False):
            err = "not measured" if r is None else r.get("error") or "output differs from the default schedule's"
            log.add(t.name, cfg, None, err, source)
            continue
        sch = tvm.s_tir.Schedule(t.mod)
        tvm.s_tir.Trace.apply_json_to_schedule(cand["trace"], sch)
        secs = [1e-3 * float(x) for x in r.get("runs_ms", [r["ms"]])]
        db.commit_tuning_record(ms.database.TuningRecord(sch.trace, db.commit_workload(t.mod), secs, target,
                                                         ms.arg_info.ArgInfo.from_prim_func(t.mod["main"])))
        log.add(t.name, cfg, 1e-3 * float(r["ms"]), None, source)
        best[t.name] = min(best.get(t.name, float("inf")), float(r["ms"]))
    return best


def plain(obj):
    """A trace's JSON form (TVM containers and immediates) as plain Python for json.dump."""
    if isinstance(obj, (str, bool, int, float)) or obj is None:
        return obj
    if isinstance(obj, tvm.tirx.IntImm):
        return int(obj.value)
    if isinstance(obj, tvm.tirx.FloatImm):
        return float(obj.value)
    if isinstance(obj, dict) or hasattr(obj, "items"):
        return {str(k): plain(v) for k, v in obj.items()}
    return [plain(x) for x in obj]


def config_of_trace(task, trace_json):
    sch = tvm.s_tir.Schedule(task.mod)
    tvm.s_tir.Trace.apply_json_to_schedule(trace_json, sch)
    return candidate_config(sch.mod)


def all_tasks(mod: tvm.IRModule, target, batches, feeds, seed: int, dist: Distribution, dense: bool,
              fused: bool = True) -> list:
    """The fused kernel's tasks (if the module has one and fused is on) and, with dense, its dense layers'
    tasks."""
    tasks = extract_tasks(mod, target, batches, feeds=feeds, seed=seed, dist=dist) \
        if fused and (find_fused_call(mod) is not None or not dense) else []
    return tasks + (extract_dense_tasks(mod, target, batches) if dense else [])
