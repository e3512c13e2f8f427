"""The one gather a partitioned embedding lookup becomes (frontend/partitioned.py rewrites the graph's partition +
per-shard gathers + stitch into RecomPartitionedGather)."""

from __future__ import annotations

import numpy as np
from tvm import relax

from ...ops import defs
from ...shapes.symbolic import prove_equal
from ..partitioned import OP, shard_offsets
from ..values import Known
from . import device


@device(OP)
def _partitioned_gather(ctx, node, ins):
    """out[m] = shard_{p[m]}[new[m]] as one checked gather from the shards stacked in order (one table parameter,
    as the fused kernel reads tables): row offset[p[m]] + new[m]. A shard number outside [0, N) or a row outside
    its shard is TF's InvalidArgumentError (DynamicPartition's / the shard gather's), never a row of another
    shard."""
    new_v, part_v, count_v, ids_v, *shard_vs = ins
    if not all(isinstance(s, Known) and s.concrete for s in shard_vs):
        ctx.fail("a partitioned embedding lookup whose shards are not constants (freeze the variables)")
    shards = [s.numpy() for s in shard_vs]
    if any(s.ndim < 1 or s.shape[1:] != shards[0].shape[1:] or s.dtype != shards[0].dtype for s in shards):
        ctx.fail(f"shards of different row shapes or dtypes: {[(s.shape, str(s.dtype)) for s in shards]}")
    new, part = ctx.device(new_v), ctx.device(part_v)
    if len(new.shape) != 1 or len(part.shape) != 1:
        ctx.fail("partitioned ids of rank other than 1")
    part = ctx.match_shape(part, list(new.shape))
    (count,) = ctx.known_ints(count_v, "the number of ids")
    if not prove_equal(count, new.shape[0]):
        ctx.fail(f"the positions stitched ({count}) are not the ids partitioned ({new.shape[0]})")
    table = ctx.device(Known(np.concatenate(shards, axis=0), str(shards[0].dtype)), table=True)
    rows = np.array([s.shape[0] for s in shards], np.int64)
    offsets = shard_offsets(rows)
    n = len(shards)
    label = f"{ctx.label()} (a partitioned lookup over {n} shards)"
    if node.attr("ids_are_rows", False):  # the div layout, checked for every id at import: the ids are the rows
        ids = ctx.match_shape(ctx.device(ids_v), list(new.shape))
        return ctx.emit(defs.gather(table.expr, ids.expr, 0, True, label),
                        shape=list(new.shape) + list(table.shape[1:]))
    p64 = ctx.emit(relax.op.astype(part.expr, "int64"))
    shard = ctx.emit(defs.gather(relax.const(np.arange(n, dtype=np.int64), "int64"), p64.expr, 0, True,
                                 f"{label}: partitions"), shape=list(new.shape))
    first = ctx.emit(relax.op.take(relax.const(offsets, "int64"), shard.expr, axis=0), shape=list(new.shape))
    size = ctx.emit(relax.op.take(relax.const(rows, "int64"), shard.expr, axis=0), shape=list(new.shape))
    new64 = ctx.emit(relax.op.astype(new.expr, "int64"))
    inside = ctx.emit(relax.op.logical_and(relax.op.greater_equal(new64.expr, relax.const(0, "int64")),
                                           relax.op.less(new64.expr, size.expr)))
    row = ctx.emit(relax.op.where(inside.expr, relax.op.add(first.expr, new64.expr), relax.const(-1, "int64")))
    return ctx.emit(defs.gather(table.expr, row.expr, 0, True, label),
                    shape=list(new.shape) + list(table.shape[1:]))
