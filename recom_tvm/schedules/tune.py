"""`recom_tvm.tune`: MetaSchedule over the fused embedding kernel's design space and the dense tail's (every MLP
layer), one task per kernel and representative batch.

    db = recom_tvm.tune(mod, target="cuda", work_dir="tuning", trials=128)           # local GPU
    db = recom_tvm.tune(mod, "cuda", "tuning", 128, runner=recom_tvm.schedules.rpc_runner(
             "tuning", tracker="tracker-host:9190", key="h100"))                       # GPU nodes
    model = recom_tvm.build(mod, "cuda", params, database=db)                           # best per bucket

XGBoost cost models (on `KnobFeatures` for the fused kernel, `DenseFeatures` for the dense layers: one search per
kind), evolutionary search, one JSON database in work_dir (with every measured trial in order in
work_dir/trials.jsonl). The default schedule of every task is measured first, so the summary says what tuning bought.
GPU nodes the tuning host cannot reach: `recom_tvm.schedules.offline`.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

from ..ops.fused_kernel import DEFAULT
from ..runtime.synthetic import Distribution
from .builder import local_builder
from .fused_space import KnobFeatures, KnobMutator, ValidKnobs, config_of, design_space, sample_knobs
from .dense_space import extract_dense_tasks
from .tasks import DEFAULT_BATCHES, FusedTask, extract_tasks, find_fused_call

TRIALS_LOG = "trials.jsonl"


def say(msg: str) -> None:
    print(f"[recom_tvm.tune] {msg}", file=sys.stderr, flush=True)


def make_context(task: FusedTask, target: tvm.target.Target, seed: int = 0, population: int = 128,
                 num_threads: int | None = None) -> ms.TuneContext:
    """A task's MetaSchedule context: our design space (ScheduleFn, knob mutator, validity postproc) and
    evolutionary search."""
    kind = target.kind.name
    space = ms.space_generator.ScheduleFn(design_space(kind), sch_rules=[], postprocs=[ValidKnobs()],
                                          mutator_probs={KnobMutator(seed): 1.0})
    search = ms.search_strategy.EvolutionarySearch(population_size=population, init_min_unmeasured=16,
                                                   genetic_num_iters=3, eps_greedy=0.1)
    return ms.TuneContext(mod=task.mod, target=target, space_generator=space, search_strategy=search,
                          task_name=task.name, rand_state=seed, num_threads=num_threads or os.cpu_count() or 1)


def cost_model(warmup: int = 16) -> ms.cost_model.XGBModel:
    """XGBoost on KnobFeatures; random scores until `warmup` records (the first round explores)."""
    return ms.cost_model.XGBModel(extractor=KnobFeatures(), num_warmup_samples=warmup, adaptive_training=False)


def scheduled(task, cfg=None, target_kind: str = "cuda") -> tvm.s_tir.Schedule:
    """The task's schedule for one config (the trace fixes every knob); default: the task's default config."""
    if is_dense(task):
        from . import dense_space

        return dense_space.scheduled(task, cfg or dense_space.default_for(target_kind, task.batch), target_kind)
    sch = tvm.s_tir.Schedule(task.mod)
    sample_knobs(sch, target_kind, decisions=cfg or DEFAULT)
    return sch


def is_dense(task) -> bool:
    return getattr(task, "kind", "fused") == "dense"


def default_of(task, target_kind: str):
    """The config an untuned build runs for the task."""
    if is_dense(task):
        from .dense_space import default_for

        return default_for(target_kind, task.batch)
    return DEFAULT


def candidate_config(mod: tvm.IRModule):
    """The config (KernelConfig or DenseConfig) a candidate's annotations spell."""
    from . import dense_space

    return dense_space.config_of(mod) if dense_space.is_dense_task(mod) else config_of(mod)


def context_for(task, target: tvm.target.Target, seed: int = 0) -> ms.TuneContext:
    if is_dense(task):
        from . import dense_space

        return dense_space.make_context(task, target, seed)
    return make_context(task, target, seed)


def cost_model_for(kind: str, warmup: int = 16):
    if kind == "dense":
        from . import dense_space

        return dense_space.cost_model(warmup)
    return cost_model(warmup)


class TrialLog:
    """work_dir/trials.jsonl: every measured candidate, in order (the database keeps only the best first)."""

    def __init__(self, work_dir: str) -> None:
        self.path = os.path.join(work_dir, TRIALS_LOG)

    def add(self, task: str, cfg, seconds: float | None, error: str | None = None, source: str = "") -> None:
        rec = {"task": task, "config": cfg.to_json(), "ms": None if seconds is None else 1e3 * seconds,
               "error": error, "source": source, "time": time.time()}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def read(self) -> list[dict]:
        if not os.path.exists(self.path):
            return []
        with open(self.path) as f:
            return [json.loads(line) for line in f if line.strip()]


def median_seconds(result) -> float | None:
    if result.error_msg is not None or not result.run_secs:
        return None
    return float(np.median([float(s) for s in result.run_secs]))


@derived_object
class Progress(PyMeasureCallback):
    """Log each measured candidate and print one line per round of a task."""

    def __init__(self, tasks: list[FusedTask], log: TrialLog, quiet: bool = False) -> None:
        super().__init__()
        self.tasks, self.log, self.quiet = tasks, log, quiet
        self.best: dict[str, float] = {}
        self.count: dict[str, int] = {}

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        name = self.tasks[task_id].name
        for cand, b, r in zip(measure_candidates, builder_results, runner_results):
            sec = median_seconds(r) if b.error_msg is None else None
            err = b.error_msg or r.error_msg
            self.log.add(name, candidate_config(cand.sch.mod), sec,
                         None if err is None else str(err).splitlines()[-1][:200],
                         "search")
            self.count[name] = self.count.get(name, 0) + 1
            if sec is not None:
                self.best[name] = min(self.best.get(name, float("inf")), sec)
        if not self.quiet:
            best = self.best.get(name)
            say(f"{name}: {self.count.get(name, 0)} trials, best {1e3 * best:.4f} ms" if best else
                f"{name}: {self.count.get(name, 0)} trials, none ran yet")


def measure_configs(tasks: list, configs, target, builder, runner, database, log: TrialLog,
                    source: str) -> list[float | None]:
    """Build and run one config per task through the given builder / runner; commit the records."""
    kind = target.kind.name
    schs = [scheduled(t, c, kind) for t, c in zip(tasks, configs)]
    args = [ms.arg_info.ArgInfo.from_prim_func(t.mod["main"]) for t in tasks]
    built = builder.build([ms.builder.BuilderInput(s.mod, target) for s in schs])
    dev_type = "cuda" if target.kind.name == "cuda" else "cpu"
    inputs = [ms.runner.RunnerInput(b.artifact_path, dev_type, a) for b, a in zip(built, args)
              if b.error_msg is None]
    results = iter(f.result() for f in runner.run(inputs)) if inputs else iter(())
    out = []
    for t, s, b, a, c in zip(tasks, schs, built, args, configs):
        if b.error_msg is not None:
            log.add(t.name, c, None, str(b.error_msg).splitlines()[-1][:200], source)
            out.append(None)
            continue
        r = next(results)
        sec = median_seconds(r)
        log.add(t.name, c, sec, None if r.error_msg is None else str(r.error_msg).splitlines()[-1][:200], source)
        if sec is not None:
            database.commit_tuning_record(ms.database.TuningRecord(
                s.trace, database.commit_workload(t.mod), [sec], target, a))
        out.append(sec)
        if b.artifact_path and os.path.exists(b.artifact_path):
            os.remove(b.artifact_path)
    return out


def open_database(work_dir: str) -> ms.database.JSONDatabase:
    os.makedirs(work_dir, exist_ok=True)
    return ms.database.JSONDatabase(path_workload=os.path.join(work_dir, "database_workload.json"),
                                    path_tuning_record=os.path.join(work_dir, "database_tuning_record.json"))


def tune(mod: tvm.IRModule, target="cuda", work_dir: str = "recom_tvm_tuning", trials: int = 64, runner="local",
         batches=DEFAULT_BATCHES, feeds=None, dist: Distribution = Distribution(), trials_per_iter: int = 16,
         seed: int = 0, builder=None, quiet: bool = False, dense: bool = True) -> ms.database.JSONDatabase:
    """Tune the optimized module's fused embedding kernel and (dense=True) every layer of its dense tail; returns
    the database `recom_tvm.build` takes.

    trials: candidates measured per batch size (task); runner: "local" (this machine's device), or a MetaSchedule
    runner (`rpc_runner` for GPU nodes behind an RPC tracker); batches: the representative batch sizes, one
    task each (build dispatches by batch bucket between them); feeds: a function batch -> TF-style feeds to
    measure on the model's own inputs (default: synthetic requests drawn from `dist`).
    """
    from ..build_module import make_target
    from .runners import local_runner, save_task_inputs

    target = make_target(target)
    t0 = time.perf_counter()
    tasks = extract_tasks(mod, target, batches, feeds=feeds, seed=seed, dist=dist) \
        if find_fused_call(mod) is not None or not dense else []
    dense_tasks = extract_dense_tasks(mod, target, batches) if dense else []
    if not tasks and not dense_tasks:
        raise ValueError("the module has neither a fused embedding kernel nor a dense layer to tune")
    save_task_inputs(work_dir, tasks)
    db = open_database(work_dir)
    log = TrialLog(work_dir)
    builder = builder or local_builder()
    if runner == "local":
        runner = local_runner(work_dir)
    if target.kind.name == "cuda" and isinstance(runner, ms.runner.LocalRunner) and not tvm.cuda(0).exist:
        raise RuntimeError("the local runner with target cuda needs a GPU on this machine; for GPU nodes behind an "
                           "RPC tracker use rpc_runner(...) (recom-tvm tune --runner rpc), for nodes this host cannot "
                           "reach offline rounds (recom_tvm.schedules.offline, recom-tvm tune --offline-export)")
    every = tasks + dense_tasks
    say(f"{len(tasks)} fused-kernel and {len(dense_tasks)} dense-layer task(s) at batch "
        f"{', '.join(str(b) for b in sorted({t.batch for t in every}))} for {target_tag_of(target)}; "
        f"{trials} trials each; work_dir {work_dir}")
    kind = target.kind.name
    defaults = measure_configs(every, [default_of(t, kind) for t in every], target, builder, runner, db, log,
                               "default")
    for t, d in zip(every, defaults):
        say(f"{t.name}: default schedule " + (f"{1e3 * d:.4f} ms" if d is not None else "FAILED"))
    for group, model_kind in ((tasks, "fused"), (dense_tasks, "dense")):  # one search (and cost model) per kind
        if not group:
            continue
        contexts = [context_for(t, target, seed + i) for i, t in enumerate(group)]
        callbacks = [ms.measure_callback.AddToDatabase(), ms.measure_callback.RemoveBuildArtifact(),
                     ms.measure_callback.UpdateCostModel(), Progress(group, log, quiet)]
        ms.tune_tasks(tasks=contexts, task_weights=[1.0] * len(group), work_dir=work_dir,
                      max_trials_global=trials * len(group), max_trials_per_task=trials,
                      num_trials_per_iter=min(trials_per_iter, trials), builder=builder, runner=runner, database=db,
                      cost_model=cost_model_for(model_kind), measure_callbacks=callbacks,
                      task_scheduler="round-robin")
    summary = summarize(work_dir, every)
    say(f"done in {time.perf_counter() - t0:.0f}s")
    for row in summary["tasks"]:
        say(format_row(row))
    return db


def target_tag_of(target) -> str:
    from .tasks import target_tag

    return target_tag(target)


def summarize(work_dir: str, tasks: list) -> dict:
    """Per task: default and best time, the best config, trials measured and the trial that found the best.
    Written to work_dir/summary.json."""
    rows = []
    trials = TrialLog(work_dir).read()
    for t in tasks:
        mine = [r for r in trials if r["task"] == t.name]
        ok = [(i, r) for i, r in enumerate(mine) if r["ms"] is not None]
        default = next((r["ms"] for r in mine if r["source"] == "default" and r["ms"] is not None), None)
        if not ok:
            rows.append({"task": t.name, "batch": t.batch, "trials": len(mine), "default_ms": default})
            continue
        i, best = min(ok, key=lambda x: x[1]["ms"])
        rows.append({"task": t.name, "batch": t.batch, "trials": len(mine), "default_ms": default,
                     "best_ms": best["ms"], "best_config": best["config"], "best_at_trial": i + 1,
                     "speedup": None if not default else default / best["ms"],
                     "failed": sum(r["ms"] is None for r in mine)})
    out = {"tasks": rows}
    with open(os.path.join(work_dir, "summary.json"), "w") as f:
        json.dump(out, f, indent=1)
    return out


def format_row(row: dict) -> str:
    if "best_ms" not in row:
        return f"{row['task']}: no successful trial of {row['trials']}"
    d = row["default_ms"]
    return (f"{row['task']} (B={row['batch']}): default {d:.4f} ms -> best {row['best_ms']:.4f} ms "
            f"({row['speedup']:.2f}x) found at trial {row['best_at_trial']} of {row['trials']}; "
            f"{json.dumps(row['best_config'])}" if d else
            f"{row['task']} (B={row['batch']}): best {row['best_ms']:.4f} ms at trial {row['best_at_trial']}")


__all__ = ["tune", "make_context", "cost_model", "measure_configs", "open_database", "summarize", "TrialLog"]
