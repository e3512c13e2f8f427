"""Applying a tuning database: the fused kernel's best measured schedule per batch bucket."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings

import tvm

from ..ops.fused_kernel import KernelConfig
from .fused_space import TASK_ATTR, config_of
from .tasks import buckets_for, find_fused_call, fit_buckets, kernel_key


def _as_database(database):
    if isinstance(database, (str, os.PathLike)):
        from .tune import open_database

        if not os.path.isdir(database):
            raise FileNotFoundError(f"no tuning work_dir at {database}")
        return open_database(str(database))
    return database


def best_configs(database, key: str) -> dict[int, tuple[KernelConfig, float]]:
    """{batch: (config, seconds)} of the fastest record of kernel `key` at each tuned batch."""
    from tvm.s_tir import Schedule

    best: dict[int, tuple[KernelConfig, float]] = {}
    for rec in database.get_all_tuning_records():
        func = rec.workload.mod["main"]
        if func.attrs is None or TASK_ATTR not in func.attrs:
            continue
        info = json.loads(str(func.attrs[TASK_ATTR]))
        if info["key"] != key or not rec.run_secs:
            continue
        secs = sum(float(s) for s in rec.run_secs) / len(rec.run_secs)
        if secs >= best.get(info["batch"], (None, float("inf")))[1]:
            continue
        sch = Schedule(rec.workload.mod)
        rec.trace.apply_to_schedule(sch, remove_postproc=False)
        best[info["batch"]] = (config_of(sch.mod), secs)
    return best


def tuned_configs(database, call, target: tvm.target.Target) -> dict[int, tuple[KernelConfig, float]]:
    """best_configs of this fused kernel. A kernel reading an int32 packed input has its own records (its key
    names the dtype); where it has none but the same kernel over the int64 layout has, those knobs are used
    (every config computes the same on either layout) with a warning: their timings were measured on int64."""
    best = best_configs(database, kernel_key(call, target))
    if best or call.packed_dtype == "int64":
        return best
    best = best_configs(database, kernel_key(dataclasses.replace(call, packed_dtype="int64"), target))
    if best:
        warnings.warn("the tuning database has records of this model's fused kernel for the int64 packed input "
                      f"only; using them for its {call.packed_dtype} build (re-tune for records of this layout, or "
                      "build with recom_tvm.config.packed_dtype = 'int64' to match them)", stacklevel=3)
    return best


def schedules_from_database(mod: tvm.IRModule, target: tvm.target.Target, database):
    """The fused kernel's ((max batch or None, KernelConfig), ...) from the database's best records, or None
    (default schedule, with a warning) when the database holds none for this model and target."""
    call = find_fused_call(mod)
    if call is None:
        return None
    db = _as_database(database)
    best = tuned_configs(db, call, target)
    if not best:
        warnings.warn("the tuning database has no records of this model's fused kernel for this target: "
                      "building with the default schedule", stacklevel=3)
        return None
    from ..ops.fused_kernel import MAX_BUCKETS

    return fit_buckets([(limit, best[b][0]) for limit, b in buckets_for(best)], MAX_BUCKETS)
