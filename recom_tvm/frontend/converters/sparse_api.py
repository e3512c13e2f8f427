"""tf.sparse ops users write in serving functions, beyond what feature columns emit: SparseReorder (host stage
over feeds, else in the module), SparseTensorDenseMatMul (tf.sparse.sparse_dense_matmul: a wide model's linear
part), SparseReduceSum / SparseReduceMax (tf.sparse.reduce_sum / reduce_max), SparseConcat (tf.sparse.concat) and
the counts with a sparse output (tf.sparse.bincount) in the module. SparseFillEmptyRows, SparseToDense,
SparseReshape and the sparse segment reductions are in sparse.py; crosses in cross.py."""

from __future__ import annotations

import numpy as np
from tvm import relax, tirx

from ...ops import defs
from ...shapes.symbolic import as_expr, is_const_int, prove_equal, simplify
from ..context import shape_expr
from ..values import Host, Known
from . import device, placed
from .array import _prod, checked_nd_indices


@placed("SparseReorder")
def _sparse_reorder(ctx, node, ins):
    """Entries sorted into row-major order (stable): on the host where the indices come from a feed or a host op,
    else in the module (tf.sparse.to_indicator's indices built of computed ids)."""
    indices, values, shape = ins
    if not (isinstance(indices, Host) and isinstance(values, Host)):
        idx, vals = ctx.device(indices), ctx.device(values)
        n = idx.shape[0]
        idx = ctx.match_shape(idx, [n, len(ctx.known_ints(shape, "the dense shape"))])
        vals = ctx.match_shape(vals, [n])
        order = _row_major_order(ctx, idx, n)
        return [ctx.emit(relax.op.take(idx.expr, order.expr, axis=0), shape=list(idx.shape)),
                ctx.emit(relax.op.take(vals.expr, order.expr, axis=0), shape=[n])]
    outs = [f"{node.name}:0", f"{node.name}:1"]
    ctx.add_host_op({"name": node.name, "op": "SparseReorder", "inputs": [{"tensor": indices.tensor},
                                                                         {"tensor": values.tensor}],
                     "attrs": {}, "outputs": outs})
    idx = ctx.host_values[outs[0]] = Host(outs[0], indices.dtype, list(indices.shape))
    vals = ctx.host_values[outs[1]] = Host(outs[1], values.dtype, list(values.shape))
    return [idx, vals]


def _checked(ctx, ids, limit, what: str):
    """ids, with TF's out-of-range error (a checked gather of 0..limit-1, as unsorted_segment_sum does)."""
    n = ids.shape[0]
    rows = ctx.emit(relax.op.arange(0, as_expr(limit), 1, ids.dtype))
    return ctx.emit(defs.gather(rows.expr, ids.expr, 0, True, f"{ctx.label()} ({what})"), shape=[n])


def _inner_dim(ctx, b, k):
    """b with k rows: TF's "inner dimension does not match" error otherwise. A b of static rows (the weights, a
    constant) against an input's size k is checked on the host before launch (ctx.assume), not by a match_cast:
    a match_cast of a constant is left for TVM's KillAfterLastUse, which kills it as if it had a register and
    fails VM codegen ("Expected the object to be killed to be stored in a register ... kConstIdx")."""
    rows = b.shape[0]
    if prove_equal(rows, k):
        return b
    if is_const_int(rows) and isinstance(k, tirx.Var) and ctx._is_input_symbol(k):
        ctx.assume(k == rows, f"{ctx.label()}: Cannot multiply A and B because inner dimension does not match: "
                              f"{k.name} vs. {int(rows)}")
        return b
    return ctx.match_shape(b, [k, b.shape[1]])


@device("SparseTensorDenseMatMul")
def _sparse_dense_matmul(ctx, node, ins):
    """out[M, N] = A @ B with A sparse [M, K] (adjoint_a: A^T), B dense (adjoint_b: B^T): each entry adds
    value * B[col] to its row; rows and columns out of range raise as TF's kernel does."""
    indices, values, shape, b = ctx.device(ins[0]), ctx.device(ins[1]), ins[2], ctx.device(ins[3])
    dims = ctx.known_ints(shape, "the sparse operand's dense shape")
    if len(dims) != 2 or len(b.shape) != 2:
        ctx.fail("operands of rank other than 2")
    adj_a, adj_b = bool(node.attr("adjoint_a", False)), bool(node.attr("adjoint_b", False))
    m, k = (dims[1], dims[0]) if adj_a else (dims[0], dims[1])
    if adj_b:
        b = ctx.emit(relax.op.permute_dims(b.expr, [1, 0]))
    nnz = indices.shape[0]
    values = ctx.match_shape(values, [nnz])
    row_col = [ctx.emit(relax.op.reshape(relax.op.strided_slice(indices.expr, [1], [c], [c + 1]),
                                         shape_expr([nnz])), shape=[nnz]) for c in (0, 1)]
    rows, cols = row_col[::-1] if adj_a else row_col
    b = _inner_dim(ctx, b, k)
    rows, cols = _checked(ctx, rows, m, "row"), _checked(ctx, cols, k, "column")
    picked = ctx.emit(relax.op.take(b.expr, cols.expr, axis=0))
    scaled = ctx.emit(relax.op.multiply(picked.expr, relax.op.expand_dims(values.expr, [1])))
    base = ctx.emit(relax.op.zeros(shape_expr([m, b.shape[1]]), b.dtype))
    out = relax.op.scatter_nd(base.expr, relax.op.reshape(rows.expr, shape_expr([nnz, 1])), scaled.expr, "add")
    return ctx.emit(out, shape=[m, b.shape[1]])


@device("SparseReduceSum", "SparseReduceMax")
def _sparse_reduce(ctx, node, ins):
    """tf.sparse.reduce_sum / reduce_max: the entries scattered into the dense shape (an index outside it is TF's
    error), then reduced over the axes. Max as TF-CPU's kernel: over the entries present only (0 where a group has
    none), in row-major order over the reduced axes, each step keeping the running max unless the next value is
    not below it, so a NaN is replaced by the next value and a NaN last in its group is the result."""
    indices, values = ctx.device(ins[0]), ctx.device(ins[1])
    dims = ctx.known_ints(ins[2], "the dense shape")
    rank = len(dims)
    axes = sorted({a % rank for a in ctx.const_ints(ins[3], "the reduction axes")}) if rank else []
    keep = bool(node.attr("keep_dims", False))
    nnz = indices.shape[0]
    values = ctx.match_shape(values, [nnz])
    indices = ctx.match_shape(indices, [nnz, rank])
    indices = checked_nd_indices(ctx, indices, dims, f"indices out of bounds of the dense shape {dims}")
    out_shape = [1 if i in axes else d for i, d in enumerate(dims)] if keep else [
        d for i, d in enumerate(dims) if i not in axes]
    dtype = values.dtype
    if node.op == "SparseReduceSum":
        base = ctx.emit(relax.op.zeros(shape_expr(dims), dtype))
        dense = ctx.emit(relax.op.scatter_nd(base.expr, indices.expr, values.expr, "add"), shape=list(dims))
        return ctx.emit(relax.op.sum(dense.expr, axes, keep), shape=out_shape)
    # (floats from -inf, as TF's Eigen max reducer: [NaN, -inf] gave TVM's lowest finite float, TF -inf)
    low = -np.inf if np.dtype(dtype).kind == "f" else np.iinfo(dtype).min
    base = ctx.emit(relax.op.full(shape_expr(dims), relax.const(low, dtype), dtype))
    dense = ctx.emit(relax.op.scatter_nd(base.expr, indices.expr, values.expr, "max"), shape=list(dims))
    ones = relax.op.ones(shape_expr([nnz]), "int32")
    present = ctx.emit(relax.op.scatter_nd(relax.op.zeros(shape_expr(dims), "int32"), indices.expr, ones, "max"),
                       shape=list(dims))
    # the reduced axes last, flattened: position p in a group's row-major order
    kept = [i for i in range(rank) if i not in axes]
    group = _prod([dims[a] for a in axes])
    flat = [dims[i] for i in kept] + [group]

    def grouped(x):
        return relax.op.reshape(relax.op.permute_dims(x, kept + axes), shape_expr(flat))

    has = relax.op.greater(grouped(present.expr), relax.const(0, "int32"))
    vals = grouped(dense.expr)
    pos = relax.op.arange(0, as_expr(group), 1, "int64")
    none = relax.const(-1, "int64")
    last = relax.op.max(relax.op.where(has, pos, none), [-1], True)
    any_present = relax.op.greater_equal(last, relax.const(0, "int64"))
    after = has
    last_nan = None
    if np.dtype(dtype).kind == "f":
        last_nan = relax.op.max(relax.op.where(relax.op.logical_and(has, relax.op.isnan(vals)), pos, none),
                                [-1], True)
        after = relax.op.logical_and(has, relax.op.greater(pos, last_nan))
    red = relax.op.max(relax.op.where(after, vals, relax.const(low, dtype)), [-1], True)
    red = relax.op.where(any_present, red, relax.const(0, dtype))
    if last_nan is not None:
        red = relax.op.where(relax.op.logical_and(any_present, relax.op.equal(last_nan, last)),
                             relax.const(np.nan, dtype), red)
    red = ctx.emit(red, shape=[dims[i] for i in kept] + [1])
    return ctx.emit(relax.op.reshape(red.expr, shape_expr(out_shape)), shape=out_shape)


def _same_dim(ctx, a, b, message: str) -> None:
    """Sizes TF requires equal: refused at import when both are constants, else checked on the host before launch
    (input sizes: the batches of two sparse features)."""
    if prove_equal(a, b):
        return
    if is_const_int(a) and is_const_int(b):
        ctx.fail(message)
    ctx.assume(as_expr(a) == as_expr(b), f"{ctx.label()}: {message}")


def _row_major_order(ctx, indices, n):
    """The permutation that sorts the [n, R] indices in row-major order, ties kept in place: stable argsorts by
    each column from the last (TF sorts with std::sort, which keeps ties in place up to 16 entries; SparseTensors
    hold no repeated index)."""
    rank = int(indices.shape[1])
    order = ctx.emit(relax.op.arange(0, as_expr(n), 1, "int64"), shape=[n])
    for col in reversed(range(rank)):
        key = relax.op.take(relax.op.reshape(relax.op.strided_slice(indices.expr, [1], [col], [col + 1]),
                                             shape_expr([n])), order.expr, axis=0)
        step = ctx.emit(relax.op.argsort(key, axis=0, descending=False, dtype="int64"), shape=[n])
        order = ctx.emit(relax.op.take(order.expr, step.expr, axis=0), shape=[n])
    return order


@device("SparseConcat")
def _sparse_concat(ctx, node, ins):
    """tf.sparse.concat: the inputs' entries, each shifted along concat_dim by the sizes of the inputs before it,
    then in row-major order as TF's kernel leaves them (it sorts; segment reductions downstream read that
    order); dense shapes must match off concat_dim, as TF requires."""
    count = len(ins) // 3
    shapes = [ctx.known_ints(v, "the dense shape") for v in ins[2 * count:]]
    rank = len(shapes[0])
    axis = int(node.attr("concat_dim", 0))
    if not -rank <= axis < rank:
        ctx.fail(f"Concat dimension must be in range [{-rank}, {rank}), got {axis}")
    axis %= rank
    for k, shape in enumerate(shapes[1:], 1):
        if len(shape) != rank:
            ctx.fail(f"Ranks of all input tensors must match: expected {rank} but got {len(shape)} at position {k}")
        for d in range(rank):
            if d != axis:
                _same_dim(ctx, shapes[0][d], shape[d], f"Input shapes must match: expected {shapes[0][d]} for "
                                                       f"dimension {d} but got {shape[d]} at position {k}")
    parts, values, offset = [], [], 0
    for k in range(count):
        idx = ctx.device(ins[k])
        idx = ctx.match_shape(idx, [idx.shape[0], rank])
        values.append(ctx.match_shape(ctx.device(ins[count + k]), [idx.shape[0]]).expr)
        shift = np.zeros([1, rank], dtype=object)
        shift[0, axis] = offset
        parts.append(relax.op.add(idx.expr, ctx.device(Known(shift, "int64")).expr) if k else idx.expr)
        offset = simplify(as_expr(offset) + as_expr(shapes[k][axis]))
    n = simplify(sum((as_expr(ctx.device(v).shape[0]) for v in ins[:count]), as_expr(0)))
    indices = ctx.emit(relax.op.concat(parts, axis=0), shape=[n, rank])
    order = _row_major_order(ctx, indices, n)
    out_indices = ctx.emit(relax.op.take(indices.expr, order.expr, axis=0), shape=[n, rank])
    out_values = ctx.emit(relax.op.take(relax.op.concat(values, axis=0), order.expr, axis=0), shape=[n])
    dense = list(shapes[0])
    dense[axis] = offset
    return [out_indices, out_values, Known(np.array(dense, dtype=object), "int64")]


@device("DenseCountSparseOutput", "SparseCountSparseOutput", "RaggedCountSparseOutput")
def _count_sparse_output(ctx, node, ins):
    """tf.sparse.bincount / tf.math.bincount(axis=-1) with a sparse result: per row (batch) the (row, value) pairs
    seen with a value below maxlength, in row-major order as TF sorts them, with their counts (weight sums; 1 with
    binary_output); a negative value is TF's error. The width must be fixed: maxlength > 0 (TF's output size then,
    whatever minlength)."""
    from .array import bincount_rows
    from .ragged import _padded, _longest_row, _row_bounds

    maxlength, binary = int(node.attr("maxlength", -1)), bool(node.attr("binary_output", False))
    if maxlength <= 0:
        ctx.fail("a count whose width depends on the largest value (maxlength must be set)")
    dtype = node.attr("output_type")
    weights_v = ins[-1]
    rows = batch = None
    if node.op == "SparseCountSparseOutput":
        indices, x = ctx.device(ins[0]), ctx.device(ins[1])
        dims = ctx.known_ints(ins[2], "the dense shape")
        if len(dims) not in (1, 2):
            ctx.fail(f"a SparseTensor of rank {len(dims)} (1 or 2 is supported)")
        x = ctx.match_shape(x, [indices.shape[0]])
        if len(dims) == 2:
            rows = ctx.emit(relax.op.reshape(relax.op.strided_slice(indices.expr, [1], [0], [1]),
                                             shape_expr([x.shape[0]])), shape=[x.shape[0]])
            batch = dims[0]
            ctx.assume(as_expr(batch) >= 1, f"{ctx.label()}: Cannot allocate {batch} batches, is the dense shape too "
                                             "wide? (TF's error for a SparseTensor of no rows)")
    else:
        x = ctx.device(ins[1] if node.op == "RaggedCountSparseOutput" else ins[0])
    w = None
    if not (isinstance(weights_v, Known) and weights_v.concrete and weights_v.numpy().size == 0):
        w = ctx.match_shape(ctx.device(weights_v), list(x.shape))
    if node.op == "RaggedCountSparseOutput":  # rows padded to the longest one with maxlength (not counted)
        starts, ends, rrows = _row_bounds(ctx, ctx.device(ins[0]))
        width = _longest_row(ctx, starts, ends)
        w = None if w is None else _padded(ctx, w, starts, ends, rrows, width, relax.const(0, w.dtype))
        x = _padded(ctx, x, starts, ends, rrows, width, ctx.size_scalar(maxlength, x.dtype))
    if len(x.shape) not in (1, 2):
        ctx.fail(f"values of rank {len(x.shape)} (1 or 2 is supported)")
    message = "Input values must all be non-negative"
    counts = bincount_rows(ctx, x, maxlength, w, binary, dtype, message, rows, batch)
    seen = bincount_rows(ctx, x, maxlength, None, True, "int32", message, rows, batch)
    k = ctx.symbols.fresh(node.name.rsplit("/", 1)[-1] + "_count", f"data-dependent size at {node.name}")
    out_idx = ctx.emit(defs.where(relax.op.greater(seen.expr, relax.const(0, "int32"))),
                       shape=[k, len(counts.shape)])
    values = ctx.emit(relax.op.gather_nd(counts.expr, out_idx.expr), shape=[k])
    return [out_idx, values, Known(np.array(list(counts.shape), dtype=object), "int64")]


def _sparse_parts(ctx, ins, what: str = "the dense shape"):
    """(indices [n, rank], values [n], dense dims) of a SparseTensor's three inputs."""
    indices, values = ctx.device(ins[0]), ctx.device(ins[1])
    dims = ctx.known_ints(ins[2], what)
    n = indices.shape[0]
    return ctx.match_shape(indices, [n, len(dims)]), ctx.match_shape(values, [n]), dims


_CWISE = {"SparseDenseCwiseMul": relax.op.multiply, "SparseDenseCwiseDiv": relax.op.divide,
          "SparseDenseCwiseAdd": relax.op.add}


@device(*_CWISE)
def _sparse_dense_cwise(ctx, node, ins):
    """sp * dense, sp / dense (a SparseTensor's values scaled by a dense tensor broadcast to its dense shape, e.g.
    per-row weights [B, 1] or a scalar): each value with the dense entry at its index. The dense side broadcasts
    to the sparse one only, as in TF; an index outside the dense shape is TF's error, and so is a zero anywhere
    in a divisor."""
    indices, values, dims = _sparse_parts(ctx, ins)
    dense = ctx.device(ins[3])
    if node.op == "SparseDenseCwiseDiv" and not values.dtype.startswith("float"):
        ctx.fail(f"SparseDenseCwiseDiv of {values.dtype} (floats are supported)")
    rank, drank = len(dims), len(dense.shape)
    if drank > rank:
        ctx.fail(f"a dense side of rank {drank} above the sparse side's {rank}")
    n = indices.shape[0]
    indices = checked_nd_indices(ctx, indices, dims, "Provided indices are out-of-bounds w.r.t. dense side "
                                                     f"with broadcasted shape {dims}")
    flat = None
    for j, size in enumerate(dense.shape):
        k = rank - drank + j
        if prove_equal(size, 1):
            continue
        _same_dim(ctx, size, dims[k], f"SparseDenseBinaryOpShared broadcasts dense to sparse only; got incompatible "
                                      f"shapes: dense dim {j} = {size} vs sparse dim {k} = {dims[k]}")
        col = relax.op.reshape(relax.op.strided_slice(indices.expr, [1], [k], [k + 1]), shape_expr([n]))
        flat = col if flat is None else relax.op.add(relax.op.multiply(flat, ctx.size_scalar(size, "int64")), col)
    total = _prod(list(dense.shape))
    table = relax.op.reshape(dense.expr, shape_expr([total]))
    if flat is None:
        flat = relax.op.zeros(shape_expr([n]), "int64")
    if node.op == "SparseDenseCwiseDiv":  # TF refuses a zero anywhere in the dense side, read or not
        from .array import all_true

        nonzero = all_true(ctx, relax.op.logical_not(relax.op.equal(dense.expr, relax.const(0, dense.dtype))))
        dense = ctx.check(dense, nonzero, "SparseDenseCwiseDiv cannot divide by zero, but input dense tensor "
                                          "contains zero")
        table = relax.op.reshape(dense.expr, shape_expr([total]))
    picked = ctx.emit(relax.op.take(table, flat, axis=0), shape=[n])
    return ctx.emit(_CWISE[node.op](values.expr, picked.expr), shape=[n])


@device("SparseTensorDenseAdd")
def _sparse_tensor_dense_add(ctx, node, ins):
    """tf.sparse.add(sp, dense) (and dense + sp): the dense tensor with each value added at its index (repeated
    indices add up); shapes must match and an index outside them is TF's error."""
    indices, values, dims = _sparse_parts(ctx, ins)
    dense = ctx.device(ins[3])
    if len(dense.shape) != len(dims):
        ctx.fail(f"a dense side of rank {len(dense.shape)} and a sparse side of rank {len(dims)}")
    for d, (a, b) in enumerate(zip(dims, dense.shape)):
        _same_dim(ctx, a, b, f"Dimension {d} does not equal (no broadcasting is supported): sparse side {a} vs "
                             f"dense side {b}")
    indices = checked_nd_indices(ctx, indices, list(dense.shape), f"indices out of bounds of the dense shape")
    return ctx.emit(relax.op.scatter_nd(dense.expr, indices.expr, values.expr, "add"), shape=list(dense.shape))


@device("SparseSlice")
def _sparse_slice(ctx, node, ins):
    """tf.sparse.slice (a history cut to its first T entries): the entries with start <= index < start + size in
    every dim, shifted by start, in their order; each output dim is the overlap of the slice with the input,
    max(min(start + size, dim) - start, 0)."""
    indices, values, dims = _sparse_parts(ctx, ins)
    start = ctx.known_ints(ins[3], "the slice start")
    size = ctx.known_ints(ins[4], "the slice size")
    rank = len(dims)
    if len(start) != rank or len(size) != rank:
        ctx.fail(f"start / size of {len(start)} / {len(size)} values for a dense shape of rank {rank}")
    for v in start + size:
        if is_const_int(v) and int(v) < 0:
            ctx.fail(f"a negative slice start or size ({int(v)})")
    n = indices.shape[0]
    lo = ctx.device(Known(np.array([start], dtype=object), "int64"))
    hi = ctx.device(Known(np.array([[simplify(as_expr(s) + as_expr(z)) for s, z in zip(start, size)]],
                                   dtype=object), "int64"))
    inside = relax.op.logical_and(relax.op.greater_equal(indices.expr, lo.expr), relax.op.less(indices.expr, hi.expr))
    hit = relax.op.equal(relax.op.sum(relax.op.astype(relax.op.logical_not(inside), "int64"), [1]),
                         relax.const(0, "int64"))
    k = ctx.symbols.fresh(node.name.rsplit("/", 1)[-1] + "_count", f"data-dependent size at {node.name}")
    where = ctx.emit(defs.where(hit), shape=[k, 1])
    rows = ctx.emit(relax.op.reshape(where.expr, shape_expr([k])), shape=[k])
    out_idx = ctx.emit(relax.op.subtract(relax.op.take(indices.expr, rows.expr, axis=0), lo.expr), shape=[k, rank])
    out_vals = ctx.emit(relax.op.take(values.expr, rows.expr, axis=0), shape=[k])
    out_dims = [simplify(tirx.max(tirx.min(as_expr(s) + as_expr(z), as_expr(d)) - as_expr(s), as_expr(0)))
                for s, z, d in zip(start, size, dims)]
    return [out_idx, out_vals, Known(np.array(out_dims, dtype=object), "int64")]
