"""Applying a tuning database: the fused kernel's best measured schedule per batch bucket."""

from __future__ import annotations

import json
import os
import warnings

import tvm

from ..ops.fused_kernel import KernelConfig
from .fused_space import TASK_ATTR, config_of
from .tasks import buckets_for, find_fused_call, kernel_key


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


def schedules_from_database(mod: tvm.IRModule, target: tvm.target.Target, database):
    """The fused kernel's ((max batch or None, KernelConfig), ...) from the database's best records, or None
    (default schedule, with a warning) when the database holds none for this model and target."""
    call = find_fused_call(mod)
    if call is None:
        return None
    db = _as_database(database)
    best = best_configs(db, kernel_key(call, target))
    if not best:
        warnings.warn("the tuning database has no records of this model's fused kernel for this target: "
                      "building with the default schedule", stacklevel=3)
        return None
    return tuple((limit, best[b][0]) for limit, b in buckets_for(best))
