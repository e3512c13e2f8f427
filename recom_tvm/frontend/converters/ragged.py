"""RaggedTensor.to_tensor (RaggedTensorToTensor) in the module: what Keras' TextVectorization and
`ragged.to_tensor(shape=[None, T])` write to pad token ids (a string split and a lookup in the host stage, then the
padded [B, T] ids for an Embedding)."""

from __future__ import annotations

from tvm import relax

from ...shapes.symbolic import as_expr, is_const_int, simplify
from ..context import shape_expr
from . import device


@device("RaggedTensorToTensor")
def _ragged_to_tensor(ctx, node, ins):
    """out[r, j] = values[splits[r] + j] for j < the row's length, else default_value; rows longer than T are
    cut, as in TF. Row splits partitions of ragged_rank 1; T known when the model is compiled (Keras'
    output_sequence_length, to_tensor(shape=[None, T])) or, without it, the longest row (a data-dependent size)."""
    types = [t.decode() if isinstance(t, bytes) else str(t) for t in node.attr("row_partition_types", [])]
    if types not in (["ROW_SPLITS"], ["FIRST_DIM_SIZE", "VALUE_ROWIDS"]):
        ctx.fail(f"row partitions {types} (ragged_rank 1 by row splits, or by first dim size + value row ids, "
                 "is supported)")
    shape_v, values_v, default_v = ins[:3]
    values = ctx.device(values_v)
    if values.dtype == "string":
        ctx.fail("to_tensor of strings")
    shape = ctx.known_ints(shape_v, "the output shape")
    rank = len(values.shape) + 1
    if len(shape) == 1 and is_const_int(shape[0]) and int(shape[0]) == -1:
        shape = [-1] * rank  # no shape given
    if len(shape) != rank:
        ctx.fail(f"output shape {shape} for values of rank {len(values.shape)}")
    if not (is_const_int(shape[0]) and int(shape[0]) == -1):
        ctx.fail("a fixed number of rows in to_tensor's shape (None is supported)")
    width = shape[1]
    inner = [got if is_const_int(want) and int(want) == -1 else want for want, got in zip(shape[2:], values.shape[1:])]
    splits = ctx.device(ins[3]) if types == ["ROW_SPLITS"] else _splits_of_row_ids(ctx, ins[3], ins[4], values)
    idt = splits.dtype
    rows = simplify(as_expr(splits.shape[0]) - 1)
    nnz = values.shape[0]
    # (in bounds by construction: the sliced shapes stay `rows`, not TVM's clamped expressions)
    starts = ctx.emit(relax.op.strided_slice(splits.expr, [0], [0], [as_expr(rows)], assume_inbound=True),
                      shape=[rows])
    ends = ctx.emit(relax.op.strided_slice(splits.expr, [0], [1], [as_expr(splits.shape[0])], assume_inbound=True),
                    shape=[rows])
    if is_const_int(width) and int(width) < 0:
        width = _longest_row(ctx, starts, ends)
    cols = ctx.emit(relax.op.arange(0, as_expr(width), 1, idt), shape=[width])
    pos = ctx.emit(relax.op.add(relax.op.expand_dims(starts.expr, [1]), relax.op.expand_dims(cols.expr, [0])),
                   shape=[rows, width])
    inside = ctx.emit(relax.op.less(pos.expr, relax.op.expand_dims(ends.expr, [1])), shape=[rows, width])
    # the default sits one past the values: a padded slot (and every slot of an empty batch) reads it
    fill = relax.op.reshape(ctx.scalar(default_v, values.dtype), [1] * len(values.shape))
    default = ctx.emit(relax.op.broadcast_to(fill, shape_expr([1] + list(values.shape[1:]))))
    padded = ctx.emit(relax.op.concat([values.expr, default.expr], axis=0),
                      shape=[simplify(as_expr(nnz) + 1)] + list(values.shape[1:]))
    past = ctx.size_scalar(nnz, idt)
    where = ctx.emit(relax.op.where(inside.expr, pos.expr, past))
    out = ctx.emit(relax.op.take(padded.expr, where.expr, axis=0), shape=[rows, width] + list(values.shape[1:]))
    if inner != list(values.shape[1:]):
        out = ctx.match_shape(out, [rows, width] + inner)
    return out


def _longest_row(ctx, starts, ends):
    """to_tensor() without a row length pads to the longest row (0 for no rows): a data-dependent size, brought
    to the host as a fresh symbol (one device->host sync, as ragged code's Range(0, longest row))."""
    from .array import ints_or_sync

    idt = starts.dtype
    lengths = relax.op.subtract(ends.expr, starts.expr)
    with_zero = relax.op.concat([lengths, relax.op.zeros(shape_expr([1]), idt)], axis=0)  # never an empty max
    longest = ctx.emit(relax.op.reshape(relax.op.max(with_zero), shape_expr([1])), shape=[1])
    return ints_or_sync(ctx, longest, "the longest row")[0]


def _splits_of_row_ids(ctx, first_dim_v, row_ids_v, values):
    """Row splits from (number of rows, each value's row): what Keras' TextVectorization passes (row ids of a
    string split, non-decreasing); a row id outside [0, rows) is an error, as in TF."""
    from ...ops import defs

    (rows,) = ctx.known_ints(first_dim_v, "the number of rows")
    row_ids = ctx.device(row_ids_v)
    row_ids = ctx.match_shape(row_ids, [values.shape[0]])
    idt = row_ids.dtype
    every = ctx.emit(relax.op.arange(0, as_expr(rows), 1, idt), shape=[rows])
    row_ids = ctx.emit(defs.gather(every.expr, row_ids.expr, 0, True, ctx.label()), shape=list(row_ids.shape))
    counts = ctx.emit(relax.op.scatter_elements(relax.op.zeros(shape_expr([rows]), idt), row_ids.expr,
                                                relax.op.ones(shape_expr(list(row_ids.shape)), idt), 0, "add"),
                      shape=[rows])
    ends = ctx.emit(relax.op.cumsum(counts.expr, axis=0, dtype=idt), shape=[rows])
    return ctx.emit(relax.op.concat([relax.op.zeros(shape_expr([1]), idt), ends.expr], axis=0),
                    shape=[simplify(as_expr(rows) + 1)])
