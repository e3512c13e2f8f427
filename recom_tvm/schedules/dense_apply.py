"""Applying a tuning database to the dense tail: each layer's best measured config per batch bucket."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import tvm

from .dense_space import TASK_ATTR, config_of
from .dense_tail import DenseConfig, layer_key
from .tasks import buckets_for, fit_buckets, target_tag


def _records(database):
    """(layer key, batch, config, median seconds) of every measured dense record of the database."""
    from tvm.s_tir import Schedule

    for rec in database.get_all_tuning_records():
        func = rec.workload.mod["main"]
        if func.attrs is None or TASK_ATTR not in func.attrs or not rec.run_secs:
            continue
        info = json.loads(str(func.attrs[TASK_ATTR]))
        secs = float(np.median([float(s) for s in rec.run_secs]))  # as the trial log and summary rank them
        sch = Schedule(rec.workload.mod)
        rec.trace.apply_to_schedule(sch, remove_postproc=False)
        yield info["key"], info["batch"], config_of(sch.mod), secs


def best_dense_configs(database, measured: dict | None = None) -> dict[str, dict[int, tuple[DenseConfig, float]]]:
    """{layer key: {batch: (config, seconds)}} of the fastest record (median of its runs) of every dense task in the
    database. measured: a dict that gets {layer key: {batch: [every config measured]}}."""
    best: dict[str, dict[int, tuple[DenseConfig, float]]] = {}
    for key, batch, cfg, secs in _records(database):
        if measured is not None:
            measured.setdefault(key, {}).setdefault(batch, []).append(cfg)
        per = best.setdefault(key, {})
        if secs < per.get(batch, (None, float("inf")))[1]:
            per[batch] = (cfg, secs)
    return best


def against_defaults(per_batch: dict[int, tuple[DenseConfig, float]], measured: dict[int, list], layer,
                     target_kind: str) -> tuple[dict[int, tuple[DenseConfig, float | None]], list[int]]:
    """The database's best config per batch where the round also measured today's default config of that batch (the
    record beat it or is it), else that default: a record only shows it beat what its round measured, and the
    defaults move (split-K and the tiled GEMM came after model E's rounds: its records would have replaced a 26 us
    default with a 36 us gemv at B = 1). -> (per batch, the batches whose records were set aside)."""
    from .dense_space import default_for
    from .dense_tail import fit

    out, stale = {}, []
    for batch, (cfg, secs) in per_batch.items():
        # records keep their configs as given, and fit makes a config the layer's schedule: compare fitted
        default = fit(default_for(target_kind, batch), layer)
        if default.knobs() in [fit(c, layer).knobs() for c in measured.get(batch, [])]:
            out[batch] = (cfg, secs)
        else:
            out[batch] = (default, None)
            stale.append(batch)
    return out, sorted(stale)


def buckets_of(per_batch: dict[int, tuple[DenseConfig, float]]) -> tuple:
    """((max batch or None, config), ...) between the tuned batches (edges at their geometric midpoints), at most
    MAX_BUCKETS of them (fit_buckets)."""
    from .dense_tail import MAX_BUCKETS

    return fit_buckets([(limit, per_batch[b][0]) for limit, b in buckets_for(per_batch)], MAX_BUCKETS)


def resolver(database, target: tvm.target.Target) -> Callable:
    """For the build pipeline: func -> its tuned buckets, or None (the defaults) for a layer without records or
    whose records never competed with today's defaults (against_defaults)."""
    from .. import config
    from .apply import _as_database

    measured: dict = {}
    best = best_dense_configs(_as_database(database), measured)
    tag = target_tag(target)

    def resolve(func, layer):
        key = layer_key(func, tag)
        per = best.get(key)
        if not per:
            return None
        per, stale = against_defaults(per, measured.get(key, {}), layer, target.kind.name)
        if stale:
            config.log(f"dense layer (K={layer.k}, N={layer.n}): the database's records at B = "
                       f"{', '.join(map(str, stale))} were not measured against today's default there: default kept")
        if len(stale) == len(per):
            return None
        return buckets_of(per)

    return resolve
