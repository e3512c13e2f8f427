"""Applying a tuning database to the dense tail: each layer's best measured config per batch bucket."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import tvm

from .dense_space import TASK_ATTR, config_of
from .dense_tail import DenseConfig, layer_key
from .tasks import buckets_for, fit_buckets, target_tag


def best_dense_configs(database) -> dict[str, dict[int, tuple[DenseConfig, float]]]:
    """{layer key: {batch: (config, seconds)}} of the fastest record (median of its runs) of every dense task in the
    database."""
    from tvm.s_tir import Schedule

    best: dict[str, dict[int, tuple[DenseConfig, float]]] = {}
    for rec in database.get_all_tuning_records():
        func = rec.workload.mod["main"]
        if func.attrs is None or TASK_ATTR not in func.attrs or not rec.run_secs:
            continue
        info = json.loads(str(func.attrs[TASK_ATTR]))
        secs = float(np.median([float(s) for s in rec.run_secs]))  # as the trial log and summary rank them
        per = best.setdefault(info["key"], {})
        if secs >= per.get(info["batch"], (None, float("inf")))[1]:
            continue
        sch = Schedule(rec.workload.mod)
        rec.trace.apply_to_schedule(sch, remove_postproc=False)
        per[info["batch"]] = (config_of(sch.mod), secs)
    return best


def buckets_of(per_batch: dict[int, tuple[DenseConfig, float]]) -> tuple:
    """((max batch or None, config), ...) between the tuned batches (edges at their geometric midpoints), at most
    MAX_BUCKETS of them (fit_buckets)."""
    from .dense_tail import MAX_BUCKETS

    return fit_buckets([(limit, per_batch[b][0]) for limit, b in buckets_for(per_batch)], MAX_BUCKETS)


def resolver(database, target: tvm.target.Target) -> Callable:
    """For the build pipeline: func -> its tuned buckets, or None (the defaults) for a layer without records."""
    from .apply import _as_database

    best = best_dense_configs(_as_database(database))
    tag = target_tag(target)

    def resolve(func, _layer):
        per = best.get(layer_key(func, tag))
        return buckets_of(per) if per else None

    return resolve
