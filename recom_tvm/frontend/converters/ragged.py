"""Ragged tensors in the module: RaggedTensor.to_tensor (RaggedTensorToTensor: what Keras' TextVectorization and
`ragged.to_tensor(shape=[None, T])` write to pad token ids after a string split and a lookup in the host stage),
RaggedTensor.to_sparse (RaggedTensorToSparse) and a per-row bincount (RaggedBincount: Keras' multi_hot / count)."""

from __future__ import annotations

import numpy as np
from tvm import relax

from ...shapes.symbolic import as_expr, is_const_int, simplify
from ..context import shape_expr
from ..values import Known
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
    starts, ends, rows = _row_bounds(ctx, splits)
    if is_const_int(width) and int(width) < 0:
        width = _longest_row(ctx, starts, ends)
    out = _padded(ctx, values, starts, ends, rows, width, ctx.scalar(default_v, values.dtype))
    if inner != list(values.shape[1:]):
        out = ctx.match_shape(out, [rows, width] + inner)
    return out


def _row_bounds(ctx, splits):
    """(starts, ends, rows) of a row-splits vector."""
    rows = simplify(as_expr(splits.shape[0]) - 1)
    # (in bounds by construction: the sliced shapes stay `rows`, not TVM's clamped expressions)
    starts = ctx.emit(relax.op.strided_slice(splits.expr, [0], [0], [as_expr(rows)], assume_inbound=True),
                      shape=[rows])
    ends = ctx.emit(relax.op.strided_slice(splits.expr, [0], [1], [as_expr(splits.shape[0])], assume_inbound=True),
                    shape=[rows])
    return starts, ends, rows


def _slots(ctx, starts, ends, rows, width):
    """(pos, inside), both [rows, width]: the value index slot (r, j) reads, starts[r] + j, and whether it lies
    before the row's end."""
    cols = ctx.emit(relax.op.arange(0, as_expr(width), 1, starts.dtype), shape=[width])
    pos = ctx.emit(relax.op.add(relax.op.expand_dims(starts.expr, [1]), relax.op.expand_dims(cols.expr, [0])),
                   shape=[rows, width])
    inside = ctx.emit(relax.op.less(pos.expr, relax.op.expand_dims(ends.expr, [1])), shape=[rows, width])
    return pos, inside


def _padded(ctx, values, starts, ends, rows, width, fill_scalar):
    """[rows, width, ...]: each row's values from the left, `fill_scalar` after its end; rows longer than width
    are cut."""
    idt = starts.dtype
    nnz = values.shape[0]
    pos, inside = _slots(ctx, starts, ends, rows, width)
    # the fill sits one past the values: a padded slot (and every slot of an empty batch) reads it
    fill = relax.op.reshape(fill_scalar, [1] * len(values.shape))
    default = ctx.emit(relax.op.broadcast_to(fill, shape_expr([1] + list(values.shape[1:]))))
    padded = ctx.emit(relax.op.concat([values.expr, default.expr], axis=0),
                      shape=[simplify(as_expr(nnz) + 1)] + list(values.shape[1:]))
    past = ctx.size_scalar(nnz, idt)
    where = ctx.emit(relax.op.where(inside.expr, pos.expr, past))
    return ctx.emit(relax.op.take(padded.expr, where.expr, axis=0), shape=[rows, width] + list(values.shape[1:]))


@device("RaggedTensorToSparse")
def _ragged_to_sparse(ctx, node, ins):
    """RaggedTensor.to_sparse() of ragged_rank 1 over a vector of values (the migration path from ragged features
    to embedding_lookup_sparse): indices = (row, position in the row) in row-major order, the values as they
    are, dense_shape = (rows, longest row). The longest row and the index count are data-dependent sizes."""
    if int(node.attr("RAGGED_RANK", len(ins) - 1)) != 1:
        ctx.fail(f"ragged_rank {node.attr('RAGGED_RANK')} (1 is supported)")
    splits, values = ctx.device(ins[0]), ctx.device(ins[1])
    if len(values.shape) != 1:
        ctx.fail(f"values of rank {len(values.shape)} (1 is supported)")
    from ...ops import defs

    starts, ends, rows = _row_bounds(ctx, splits)
    width = _longest_row(ctx, starts, ends)
    _, inside = _slots(ctx, starts, ends, rows, width)
    k = ctx.symbols.fresh(node.name.rsplit("/", 1)[-1] + "_count", f"data-dependent size at {node.name}")
    where = ctx.emit(defs.where(inside.expr), shape=[k, 2])
    indices = ctx.match_shape(where, [values.shape[0], 2])  # one index per value (splits end at the value count)
    dense_shape = ctx.device(Known(np.array([rows, width], dtype=object), "int64"))
    return [indices, values, dense_shape]


@device("RaggedBincount")
def _ragged_bincount(ctx, node, ins):
    """Counts (weight sums, or 1 with binary_output) of each value in [0, size) per row of a ragged tensor
    (Keras 3 StringLookup / IntegerLookup with output_mode multi_hot / count over split tokens): the rows padded
    to the longest one with `size` (ignored, as values >= size are), then a per-row bincount. A negative value
    is TF's InvalidArgumentError."""
    from .array import bincount_rows

    splits_v, values_v, size_v, weights_v = ins
    splits, values = ctx.device(splits_v), ctx.device(values_v)
    if len(values.shape) != 1:
        ctx.fail(f"values of rank {len(values.shape)} (1 is supported)")
    (size,) = ctx.known_ints(size_v, "the size")
    if is_const_int(size) and int(size) < 0:
        ctx.fail(f"size ({int(size)}) must be non-negative")
    starts, ends, rows = _row_bounds(ctx, splits)
    width = _longest_row(ctx, starts, ends)
    ids = _padded(ctx, values, starts, ends, rows, width, ctx.size_scalar(size, values.dtype))
    w = None
    if not (isinstance(weights_v, Known) and weights_v.concrete and weights_v.numpy().size == 0):
        weights = ctx.match_shape(ctx.device(weights_v), list(values.shape))
        w = _padded(ctx, weights, starts, ends, rows, width, relax.const(0, weights.dtype))
    return bincount_rows(ctx, ids, size, w, bool(node.attr("binary_output", False)), node.attr("T"),
                         "Input must be non-negative")


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


@device("RaggedGather")
def _ragged_gather(ctx, node, ins):
    """tf.gather of whole rows of a ragged tensor (ragged_rank 1, a vector of row indices): what tf.concat of
    ragged tensors along axis 1 writes (the rows of both, interleaved, regathered). Output row i is params row
    indices[i]; each output value finds its row by a binary search in the output's row ends. The value count is
    a data-dependent size (one device->host sync). Indices outside the rows and malformed splits are TF's
    errors."""
    if len(ins) != 3:
        ctx.fail(f"ragged_rank {len(ins) - 2} (1 is supported)")
    from .array import ints_or_sync
    from .sparse import binary_search

    from ...ops import defs

    splits, values, indices = (ctx.device(v) for v in ins)
    if len(indices.shape) != 1:
        ctx.fail(f"indices of rank {len(indices.shape)} (1 is supported)")
    starts, ends, rows = _row_bounds(ctx, splits)
    idt = splits.dtype
    ok = relax.op.logical_and(relax.op.less_equal(starts.expr, ends.expr), relax.op.logical_and(
        relax.op.greater_equal(starts.expr, relax.const(0, idt)),
        relax.op.less_equal(ends.expr, ctx.size_scalar(values.shape[0], idt))))
    lengths = ctx.emit(relax.op.subtract(ends.expr, starts.expr), shape=[rows])
    lengths = ctx.check(lengths, ctx.emit(ok, shape=[rows]), "Ragged splits must be non-negative, sorted and not "
                                                             "point past values")
    m = indices.shape[0]
    picked = ctx.emit(defs.gather(lengths.expr, indices.expr, 0, True, ctx.label()), shape=[m])
    first = ctx.emit(relax.op.take(starts.expr, indices.expr, axis=0, mode="clip"), shape=[m])
    out_ends = ctx.emit(relax.op.cumsum(picked.expr, axis=0, dtype=idt), shape=[m])
    zero = relax.op.zeros(shape_expr([1]), idt)
    out_splits = ctx.emit(relax.op.concat([zero, out_ends.expr], axis=0), shape=[simplify(as_expr(m) + 1)])
    total = ctx.emit(relax.op.strided_slice(out_splits.expr, [0], [as_expr(m)], [as_expr(m) + 1],
                                            assume_inbound=True), shape=[1])
    (count,) = ints_or_sync(ctx, total, "the value count")
    pos = ctx.emit(relax.op.arange(0, as_expr(count), 1, idt), shape=[count])
    row = binary_search(ctx, ctx.emit(relax.op.reshape(out_ends.expr, shape_expr([1, m])), shape=[1, m]),
                        ctx.emit(relax.op.reshape(pos.expr, shape_expr([1, count])), shape=[1, count]), True, idt)
    row = ctx.emit(relax.op.reshape(row.expr, shape_expr([count])), shape=[count])
    row_start = relax.op.subtract(relax.op.take(out_ends.expr, row.expr, axis=0, mode="clip"),
                                  relax.op.take(picked.expr, row.expr, axis=0, mode="clip"))
    src = relax.op.add(relax.op.take(first.expr, row.expr, axis=0, mode="clip"),
                       relax.op.subtract(pos.expr, row_start))
    out_values = ctx.emit(relax.op.take(values.expr, src, axis=0, mode="clip"),
                          shape=[count] + list(values.shape[1:]))
    return [out_splits, out_values]


@device("RaggedRange")
def _ragged_range(ctx, node, ins):
    """tf.ragged.range (what ragged * dense broadcasting writes to repeat a row's value over its entries): row r
    holds starts[r], starts[r] + deltas[r], ... below limits[r] (above, for a negative delta); scalars broadcast
    to the rows. Row sizes as TF's kernel computes them (0 for an empty range); a delta of 0 is TF's error. The
    values are laid out as to_sparse lays out a ragged tensor: (row, position) slots of a [rows, longest row]
    grid, in row-major order."""
    from ...ops import defs
    from .array import all_true

    starts, limits, deltas = (ctx.device(v) for v in ins)
    dtype = starts.dtype
    if not dtype.startswith("int"):
        ctx.fail(f"RaggedRange of {dtype} (integers are supported)")
    split_t = node.attr("Tsplits", "int64")
    ranks = [len(v.shape) for v in (starts, limits, deltas)]
    if max(ranks) > 1:
        ctx.fail(f"inputs of ranks {ranks} (vectors or scalars)")
    vecs = [v for v in (starts, limits, deltas) if len(v.shape) == 1]
    rows = vecs[0].shape[0] if vecs else 1
    vecs = ctx.unify(vecs) if vecs else vecs

    def as_rows(v):
        if len(v.shape) == 1:
            return ctx.match_shape(v, [rows]).expr
        return relax.op.broadcast_to(relax.op.reshape(v.expr, shape_expr([1])), shape_expr([rows]))

    s, lim, d = (as_rows(v) for v in (starts, limits, deltas))
    zero, one = relax.const(0, dtype), relax.const(1, dtype)
    pos = relax.op.greater(d, zero)
    # ceil(|limit - start| / |delta|) where the range runs the delta's way, else 0 (integer division)
    up = relax.op.floor_divide(relax.op.subtract(relax.op.add(relax.op.subtract(lim, s), d), one),
                               relax.op.where(pos, d, one))
    down = relax.op.floor_divide(relax.op.subtract(relax.op.subtract(relax.op.subtract(s, lim), d), one),
                                 relax.op.where(pos, one, relax.op.negative(d)))
    size = relax.op.maximum(relax.op.where(pos, up, down), zero)
    nonzero = all_true(ctx, relax.op.not_equal(d, zero))
    sizes = ctx.check(ctx.emit(relax.op.astype(size, split_t), shape=[rows]), nonzero, "Requires delta != 0")
    ends = ctx.emit(relax.op.cumsum(sizes.expr, axis=0, dtype=split_t), shape=[rows])
    splits = ctx.emit(relax.op.concat([relax.op.zeros(shape_expr([1]), split_t), ends.expr], axis=0),
                      shape=[simplify(as_expr(rows) + 1)])
    begins, ends, _ = _row_bounds(ctx, splits)
    width = _longest_row(ctx, begins, ends)
    _, inside = _slots(ctx, begins, ends, rows, width)
    k = ctx.symbols.fresh(node.name.rsplit("/", 1)[-1] + "_count", f"data-dependent size at {node.name}")
    slots = ctx.emit(defs.where(inside.expr), shape=[k, 2])
    row = relax.op.reshape(relax.op.strided_slice(slots.expr, [1], [0], [1]), shape_expr([k]))
    col = relax.op.astype(relax.op.reshape(relax.op.strided_slice(slots.expr, [1], [1], [2]), shape_expr([k])),
                          dtype)
    values = relax.op.add(relax.op.take(s, row, axis=0), relax.op.multiply(col, relax.op.take(d, row, axis=0)))
    return [splits, ctx.emit(values, shape=[k])]
