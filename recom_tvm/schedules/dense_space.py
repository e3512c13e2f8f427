"""The dense tail's tuning tasks and design space, as MetaSchedule sees them (the fused kernel's twin: fused_space).

A task is one dense layer of the model (recom_tvm.schedules.dense_tail) at one representative batch: the layer's
PrimFunc as the build pipeline makes it (recom's ops lowered, TVM's legalization and fusion), its batch fixed. A
candidate is a `DenseConfig`: the space samples each knob with `sample_categorical` and records it as an annotation
of the function's root block, so a trace (and a tuning record) fixes every decision; the builder schedules the
layer with the config the annotations spell (`instantiate`). Features for the cost model describe the config and
what it implies on the task (blocks, threads, registers, shared memory, re-reads of the weights), since the
annotated workload's loop nest is the same for every candidate.

Records of a layer apply to every build of the same model and target (`layer_key`: the layer's function with the
batch symbolic); build takes each bucket's best (dense_apply).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random

import numpy as np
import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir import Schedule
from tvm.s_tir.meta_schedule.feature_extractor import PyFeatureExtractor
from tvm.s_tir.meta_schedule.postproc import PyPostproc

from .dense_tail import (RULES, DenseConfig, DenseLayer, check_config, default_buckets, fit, layer_key, match_dense,
                         schedule)

ANN = "recom_tvm.dense_knob."
TASK_ATTR = "recom_tvm.dense_task"  # JSON: key, batch, target, K, N (what instantiation and features need)

KNOBS = {
    # (values appended, never inserted: a record's decisions are indices into these tuples)
    "cuda": {"rule": ("gemv", "matmul", "tiled"), "rows": (1, 2, 4, 8, 16, 32), "threads_n": (4, 8, 16, 32, 2),
             "vec": (1, 2, 4, 8), "threads_k": (4, 8, 16, 32, 64, 128, 256, 512), "unroll": (1, 2, 4, 8),
             "kvec": (1, 2, 4), "threads_m": (2, 4, 8, 16, 32),
             "k_block": (4, 8, 16, 32, 64, 256),  # (256: the unused default)
             "pipeline": (0, 1, 2), "split_k": (1, 2, 4, 8, 16, 32)},
    "cpu": {"rule": ("cpu",), "rows": (1, 2, 4, 6, 8), "cols": (8, 16, 32, 64, 128, 256, 512, 1024),
            "k_block": (64, 128, 256, 512, 1024), "unroll": (1, 2, 4, 8, 16), "k_outer": (0, 1), "pack": (0, 1)},
}


def knobs_for(target_kind: str) -> dict:
    return KNOBS["cuda" if target_kind == "cuda" else "cpu"]


def default_for(target_kind: str, batch: int) -> DenseConfig:
    """The default config of the bucket holding `batch` (what an untuned build runs at that batch)."""
    return next(c for lim, c in default_buckets(target_kind) if lim is None or batch <= lim)


# ------------------------------------------------------------------------------------------------------- tasks
@dataclasses.dataclass
class DenseTask:
    """One dense layer at one batch."""

    name: str
    batch: int
    key: str
    mod: tvm.IRModule  # "main": the layer at this batch, unscheduled, TASK_ATTR attached
    layer: DenseLayer
    kind: str = "dense"

    def arg_shapes(self) -> list[tuple[list[int], str]]:
        from tvm.s_tir.meta_schedule.arg_info import ArgInfo

        return [(list(int(d) for d in a.as_json()[2]), str(a.as_json()[1]))
                for a in ArgInfo.from_prim_func(self.mod["main"])]


def lowered_layers(mod: tvm.IRModule, target: tvm.target.Target) -> dict[str, tvm.tirx.PrimFunc]:
    """{name: function} of the dense layers in `mod` after the build pipeline's passes up to the dense tail's
    (the pipeline's own list on CUDA: a copy of it once missed the inlining of TF's Relu, and the tuner found no
    layer in an imported MLP)."""
    from tvm import relax

    from ..backend.pipeline import cuda_legalize_passes
    from ..ops import LegalizeRecomOps

    with target:
        lowered = LegalizeRecomOps(None)(mod)
        if target.kind.name == "cuda":
            passes = cuda_legalize_passes(target, dense=False, default_schedule=False)
        else:
            passes = [relax.transform.LegalizeOps()]
        lowered = tvm.transform.Sequential(passes)(lowered)
    return {gv.name_hint: f for gv, f in lowered.functions_items() if match_dense(f) is not None}


def dense_layers(mod: tvm.IRModule, target: tvm.target.Target, batch: int | None = None) -> list[tuple]:
    """The dense layers `recom_tvm.build` would schedule in this module, one per distinct layer: (key, function
    with the batch symbolic or, given `batch`, fixed to it)."""
    from ..backend.cuda_graph import batch_symbol
    from .tasks import target_tag

    symbolic = lowered_layers(mod, target)
    fixed = symbolic
    if batch is not None:
        sym = batch_symbol(mod["main"])
        if sym is not None:  # the same layers with B bound: static shapes for MetaSchedule
            from tvm import relax

            bound = relax.transform.BindSymbolicVars({sym.name: int(batch)}, func_name="main")(mod)
            fixed = lowered_layers(bound, target)
    out, seen = [], set()
    tag = target_tag(target)
    for name in sorted(symbolic):
        key = layer_key(symbolic[name], tag)
        a, b = match_dense(symbolic[name]), match_dense(fixed[name]) if name in fixed else None
        if key in seen or b is None or (a.k, a.n, a.transposed) != (b.k, b.n, b.transposed):
            continue  # (the same layer twice, or the bound module named its layers differently: not tuned)
        seen.add(key)
        out.append((key, fixed[name]))
    return out


def make_dense_task(func: tvm.tirx.PrimFunc, key: str, target: tvm.target.Target, batch: int) -> DenseTask:
    """`func`: the layer at this batch (static shapes)."""
    from .tasks import target_tag

    layer = match_dense(func)
    if layer.static_batch != int(batch):
        raise ValueError(f"dense task at batch {batch}: the layer's batch is {layer.batch}")
    info = {"key": key, "batch": int(batch), "target": target_tag(target), "k": layer.k, "n": layer.n}
    static = func.with_attr(TASK_ATTR, json.dumps(info)).with_attr("global_symbol", "main")
    return DenseTask(f"dense_{key[:8]}_K{layer.k}_N{layer.n}_B{batch}", int(batch), key,
                     tvm.IRModule({"main": static}), layer)


# Layers with fewer weights take a few microseconds under any schedule (the launch dominates): not worth trials.
MIN_TUNED_WEIGHTS = 1 << 14


def extract_dense_tasks(mod: tvm.IRModule, target, batches, min_weights: int | None = None) -> list[DenseTask]:
    """Every dense layer of an (optimized) module with at least `min_weights` weights (default MIN_TUNED_WEIGHTS),
    at each batch."""
    from ..build_module import make_target

    target = make_target(target)
    least = MIN_TUNED_WEIGHTS if min_weights is None else min_weights
    out = []
    for b in sorted({int(x) for x in batches}):
        for key, func in dense_layers(mod, target, b):
            layer = match_dense(func)
            if layer.k * layer.n >= least:
                out.append(make_dense_task(func, key, target, b))
    return sorted(out, key=lambda t: (t.key, t.batch))


def task_info(mod: tvm.IRModule) -> dict:
    return json.loads(str(mod["main"].attrs[TASK_ATTR]))


def is_dense_task(mod: tvm.IRModule) -> bool:
    func = mod["main"]
    return func.attrs is not None and TASK_ATTR in func.attrs


# ------------------------------------------------------------------------------------------------------- space
def _root(sch: Schedule):
    return sch.get_sblock("root")


def sample_knobs(sch: Schedule, target_kind: str, decisions: DenseConfig | None = None) -> None:
    """Sample every knob (or take `decisions`) and annotate the layer's root block with it."""
    root = _root(sch)
    for name, values in knobs_for(target_kind).items():
        fixed = None
        if decisions is not None:
            want = getattr(decisions, name)
            if want not in values:
                raise ValueError(f"{name}={want} is not in the dense design space {values}")
            fixed = values.index(want)
        if name == "rule":
            idx = sch.sample_categorical(list(range(len(values))), [1.0 / len(values)] * len(values),
                                         decision=fixed)
        else:
            idx = sch.sample_categorical(list(values), [1.0 / len(values)] * len(values), decision=fixed)
        sch.annotate(root, ANN + name, idx)


def design_space(target_kind: str):
    def space(sch: Schedule) -> None:
        sample_knobs(sch, target_kind)

    return space


def config_of(mod: tvm.IRModule) -> DenseConfig:
    """The DenseConfig a candidate's annotations spell."""
    sch = Schedule(mod)
    ann = sch.get(_root(sch)).annotations
    kind = "cuda" if task_info(mod)["target"].startswith("cuda") else "cpu"
    fields = {}
    for name, values in knobs_for(kind).items():
        if ANN + name in ann:
            v = int(ann[ANN + name])
            fields[name] = values[v] if name == "rule" else v
    return DenseConfig(**fields)


def scheduled(task: DenseTask, cfg: DenseConfig, target_kind: str) -> Schedule:
    """The task's candidate for one config (the trace fixes every knob)."""
    sch = Schedule(task.mod)
    sample_knobs(sch, target_kind, decisions=cfg)
    return sch


def instantiate(mod: tvm.IRModule, target: tvm.target.Target, name: str = "main") -> tvm.tirx.PrimFunc:
    """The kernel a candidate stands for: the task's layer scheduled with the candidate's config."""
    cfg = config_of(mod)
    func = mod["main"]
    plain = func.without_attr(TASK_ATTR)
    sch = Schedule(tvm.IRModule({"main": plain}))
    for key in list(sch.get(_root(sch)).annotations.keys()):
        if str(key).startswith(ANN):
            sch.unannotate(_root(sch), str(key))
    return schedule(sch.mod["main"], cfg, target).with_attr("global_symbol", name)


@derived_object
class ValidDenseKnobs(PyPostproc):
    """Reject configs the layer cannot run (shared memory, threads, registers)."""

    def __init__(self) -> None:
        super().__init__()

    def _initialize_with_tune_context(self, context) -> None:
        pass

    def apply(self, sch: Schedule) -> bool:
        info = task_info(sch.mod)
        layer = DenseLayer(tvm.tirx.const(info["batch"], "int64"), info["k"], info["n"], False, "float32")
        return check_config(fit(config_of(sch.mod), layer), layer) is None

    def clone(self):
        return ValidDenseKnobs()


FEATURES = ("rule_gemv", "rule_matmul", "rule_cpu", "log2_rows", "log2_threads_n", "vec", "log2_threads_k",
            "log2_unroll", "log2_cols", "log2_k_block", "k_outer", "pack", "log2_batch", "log2_k", "log2_n",
            "log2_blocks", "threads_per_block", "accumulators", "smem_kib", "weight_rereads", "waves_132",
            "log2_kvec", "loads_per_fma", "log2_split_k")


def features(cfg: DenseConfig, info: dict) -> np.ndarray:
    """One row of FEATURES for a config on a task."""
    batch, k, n = int(info["batch"]), int(info["k"]), int(info["n"])
    layer = DenseLayer(tvm.tirx.const(batch, "int64"), k, n, False, "float32")
    c = fit(cfg, layer)
    rows = c.rows
    loads = 0.0  # load instructions per FMA of a thread (x and w; kvec: x as vectors along K)
    if c.rule == "gemv":
        loads = (rows / c.kvec + (1 if c.vec in (2, 4) else c.vec)) / (rows * c.vec) if c.kvec > 1 else \
            (rows + (1 if c.vec in (2, 4) else c.vec)) / (rows * c.vec)
        blocks = math.ceil(batch / rows) * math.ceil(n / (c.threads_n * c.vec)) * c.split_k
        threads, acc = c.threads_n * c.threads_k, rows * c.vec
        smem = c.threads_k * rows * c.threads_n * c.vec * 4 / 1024
    elif c.rule == "tiled":
        loads = (rows + c.vec / min(c.vec, 4)) / (rows * c.vec)  # from shared memory, per FMA
        blocks = math.ceil(batch / (rows * c.threads_m)) * math.ceil(n / (c.threads_n * c.vec))
        threads, acc = c.threads_m * c.threads_n, rows * c.vec
        smem = (c.threads_m * rows + c.threads_n * c.vec) * c.k_block * 4 / 1024
    elif c.rule == "cpu":
        blocks = math.ceil(n / c.cols)
        threads, acc, smem = 1, rows * c.cols, 0.0
    else:  # dlight's tiles: 32 x 64 outputs, 128 threads
        rows, blocks, threads, acc, smem = 32, math.ceil(batch / 32) * math.ceil(n / 64), 128, 16, 0.0
    return np.array([c.rule == "gemv", c.rule == "matmul", c.rule == "cpu", math.log2(rows),
                     math.log2(c.threads_n), c.vec, math.log2(c.threads_k), math.log2(c.unroll), math.log2(c.cols),
                     math.log2(c.k_block), c.k_outer, c.pack, math.log2(max(batch, 1)), math.log2(k), math.log2(n),
                     math.log2(max(blocks, 1)), threads, acc, smem, math.ceil(batch / rows),
                     blocks / 132.0, math.log2(c.kvec), loads, math.log2(c.split_k)], dtype=np.float32)


@derived_object
class DenseFeatures(PyFeatureExtractor):
    def extract_from(self, context, candidates):
        out = []
        for cand in candidates:
            row = features(config_of(cand.sch.mod), task_info(cand.sch.mod))
            out.append(tvm.runtime.tensor(row[None, :]))
        return out


def make_context(task: DenseTask, target: tvm.target.Target, seed: int = 0, population: int = 64,
                 num_threads: int | None = None):
    """A dense task's MetaSchedule context: the knob space, its mutator and validity postproc, evolutionary
    search."""
    import os

    from tvm.s_tir import meta_schedule as ms

    from .fused_space import KnobMutator

    space = ms.space_generator.ScheduleFn(design_space(target.kind.name), sch_rules=[],
                                          postprocs=[ValidDenseKnobs()], mutator_probs={KnobMutator(seed): 1.0})
    search = ms.search_strategy.EvolutionarySearch(population_size=population, init_min_unmeasured=16,
                                                   genetic_num_iters=3, eps_greedy=0.1)
    return ms.TuneContext(mod=task.mod, target=target, space_generator=space, search_strategy=search,
                          task_name=task.name, rand_state=seed, num_threads=num_threads or os.cpu_count() or 1)


def cost_model(warmup: int = 16):
    from tvm.s_tir import meta_schedule as ms

    return ms.cost_model.XGBModel(extractor=DenseFeatures(), num_warmup_samples=warmup, adaptive_training=False)


def random_config(rng: random.Random, target_kind: str) -> DenseConfig:
    """A uniformly drawn point of the space (for tests)."""
    return DenseConfig(**{k: rng.choice(v) for k, v in knobs_for(target_kind).items()})


__all__ = ["DenseTask", "KNOBS", "RULES", "config_of", "dense_layers", "extract_dense_tasks", "instantiate",
           "make_context", "scheduled", "default_for"]
