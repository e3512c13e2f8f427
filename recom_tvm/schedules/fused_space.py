"""The fused embedding kernel's design space, as MetaSchedule sees it.

The kernel is a template (recom_tvm.ops.fused_kernel) whose schedule is a `KernelConfig`. The space samples each
knob with `sample_categorical` and records it as an annotation of the kernel's block, so a trace (and a tuning
record) fixes every decision; `config_of` reads them back and the builder instantiates the template with them.
Knobs are data: one table, one sampling function. Because the template's loop nest does not change under
annotations, TVM's per-store features would be the same for every candidate: `KnobFeatures` describes a candidate
by its knobs and what they imply for the task's batch instead, and `KnobMutator` re-samples one knob (MetaSchedule's
own mutators only know tiling / unrolling / thread-binding decisions).
"""

from __future__ import annotations

import json
import math
import random

import numpy as np
import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir import Schedule
from tvm.s_tir.meta_schedule.feature_extractor import PyFeatureExtractor
from tvm.s_tir.meta_schedule.mutator import PyMutator
from tvm.s_tir.meta_schedule.postproc import PyPostproc

from ..ops.fused_kernel import DEFAULT, KernelConfig, check_config, column_classes, num_units

BLOCK = "fused_embedding"
ANN = "recom_tvm.knob."
TASK_ATTR = "recom_tvm.task"  # JSON: key, batch, meta, width, bounds count (what instantiation needs)

# knob -> candidate values (KernelConfig fields; booleans as 0 / 1). The default config is one point of the space.
# New values and knobs go at the end: a trace records decisions as indices into these tuples.
KNOBS: dict[str, tuple[int, ...]] = {
    "threads": (32, 64, 128, 256, 512),
    "vec": (4, 2, 1, 8),
    "rows": (1, 2, 4, 8),
    "unroll": (1, 2, 4),
    "heavy_first": (1, 0),
    "interleave": (0, 1),
    "smem_bounds": (0, 1),
    "stage_meta": (0, 1),
    "search_once": (0, 1),
    "group": (1, 2, 4),
    "linear_search": (0, 16),
}
# (KernelConfig.occupancy is not searched: on E it traded 58 registers and 43% occupancy for 40 registers, 62% and
# spills to local memory, 30.2 -> 31.6 us at B = 512; H100, 2026-12-07)
GPU_ONLY = ("smem_bounds",)  # no meaning on llvm: fixed to the default there, so no two candidates coincide


def knobs_for(target_kind: str) -> dict[str, tuple[int, ...]]:
    if target_kind == "cuda":
        return dict(KNOBS)
    return {k: v if k not in GPU_ONLY else (int(getattr(DEFAULT, k)),) for k, v in KNOBS.items()}


def sample_knobs(sch: Schedule, target_kind: str, decisions: KernelConfig | None = None) -> None:
    """Sample every knob (or take `decisions`) and annotate the kernel's block with it."""
    blk = sch.get_sblock(BLOCK)
    for name, values in knobs_for(target_kind).items():
        fixed = None
        if decisions is not None:
            want = int(getattr(decisions, name))
            if want not in values:
                raise ValueError(f"{name}={want} is not in the design space {values}")
            fixed = values.index(want)
        v = sch.sample_categorical(list(values), [1.0 / len(values)] * len(values), decision=fixed)
        sch.annotate(blk, ANN + name, v)


def design_space(target_kind: str):
    """The ScheduleFn body for this target."""

    def space(sch: Schedule) -> None:
        sample_knobs(sch, target_kind)

    return space


def config_of(mod: tvm.IRModule) -> KernelConfig:
    """The KernelConfig a scheduled task module's annotations spell (knobs not annotated keep the default)."""
    sch = Schedule(mod)
    ann = sch.get(sch.get_sblock(BLOCK)).annotations
    fields = {}
    for name in KNOBS:
        if ANN + name in ann:
            v = int(ann[ANN + name])
            fields[name] = bool(v) if isinstance(getattr(DEFAULT, name), bool) else v
    return KernelConfig(**{**DEFAULT.to_json(), **fields})


def task_info(mod: tvm.IRModule) -> dict:
    return json.loads(str(mod["main"].attrs[TASK_ATTR]))


def _classes(info: dict):
    return column_classes(np.asarray(info["meta"], dtype=np.int64))


@derived_object
class KnobMutator(PyMutator):
    """Re-sample one knob of the trace to another of its values."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.rng = random.Random(seed)

    def _initialize_with_tune_context(self, context) -> None:
        pass

    def apply(self, trace, _rand_state):
        insts = [i for i in trace.insts if i.kind.name == "SampleCategorical" and len(i.attrs[0]) > 1]
        if not insts:
            return None
        inst = self.rng.choice(insts)
        n = len(inst.attrs[0])
        current = int(trace.decisions[inst])
        new = self.rng.choice([d for d in range(n) if d != current])
        return trace.with_decision(inst, new, remove_postproc=True)

    def clone(self):
        return KnobMutator(self.rng.randrange(1 << 30))


@derived_object
class ValidKnobs(PyPostproc):
    """Reject knob combinations the task cannot run (too few threads for its widest column, boundaries that do not
    fit in shared memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.gpu = False

    def _initialize_with_tune_context(self, context) -> None:
        self.gpu = context.target is not None and context.target.kind.name == "cuda"

    def apply(self, sch: Schedule) -> bool:
        info = task_info(sch.mod)
        return check_config(config_of(sch.mod), _classes(info), info["max_bounds"], self.gpu) is None

    def clone(self):
        out = ValidKnobs()
        out.gpu = self.gpu
        return out


FEATURES = ("log2_threads", "vec", "rows", "unroll", "heavy_first", "interleave", "smem_bounds", "log2_batch",
            "log2_blocks", "blocks_per_sm_wave", "thread_use", "log2_bags_per_block", "lanes_per_bag", "stage_meta",
            "search_once", "group", "linear_search")


def features(cfg: KernelConfig, info: dict, classes=None) -> np.ndarray:
    """One row of FEATURES for a config on a task."""
    classes = classes if classes is not None else _classes(info)
    batch = int(info["batch"])
    blocks = num_units(cfg, classes, batch)
    cols = sum(k.count for k in classes) or 1
    use, bags, lanes = 0.0, 0.0, 0.0
    for k in classes:
        la = -(-max(k.dim, 1) // cfg.vec)
        grp = max(1, min(cfg.group, cfg.threads // la, k.count))
        bpp = cfg.threads // (la * grp)
        use += k.count * (bpp * la * grp) / cfg.threads
        bags += k.count * bpp * (1 if k.multi else cfg.rows)
        lanes += k.count * la
    return np.array([math.log2(cfg.threads), cfg.vec, cfg.rows, cfg.unroll, int(cfg.heavy_first), int(cfg.interleave),
                     int(cfg.smem_bounds), math.log2(max(batch, 1)), math.log2(max(blocks, 1)),
                     blocks / (132.0 * max(1, 2048 // cfg.threads)), use / cols, math.log2(max(bags / cols, 1.0)),
                     lanes / cols, int(cfg.stage_meta), int(cfg.search_once), cfg.group,
                     cfg.linear_search], dtype=np.float32)


@derived_object
class KnobFeatures(PyFeatureExtractor):
    """Features for the XGBoost cost model: the knobs and what they imply on the task (blocks launched, waves of a
    132-SM GPU, thread utilisation, bags per block)."""

    def extract_from(self, context, candidates):
        out, cache = [], {}
        for cand in candidates:
            info = task_info(cand.sch.mod)
            classes = cache.setdefault(info["key"], _classes(info))
            row = features(config_of(cand.sch.mod), info, classes)
            out.append(tvm.runtime.tensor(row[None, :]))
        return out
