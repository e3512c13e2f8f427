"""TF's sparse and data-dependent ops, translated to recom ops (see recom_tvm.ops.defs)."""

from __future__ import annotations

import functools

import numpy as np
import tvm
from tvm import relax
from tvm.script import tirx as T

from ...ops import defs
from ...runtime.feeds import flush_denormals
from ...shapes.symbolic import as_expr, is_const_int, prove_equal, simplify
from ..context import shape_expr
from ..values import Known
from . import NotFoldable, device, known
from .array import _prod, all_true, checked_nd_indices, resolve_reshape


@device("Where")
def _where(ctx, node, ins):
    if len(ins) != 1:
        ctx.fail("Where with x/y inputs (use SelectV2)")
    cond = ctx.device(ins[0])
    k = ctx.symbols.fresh(node.name.rsplit("/", 1)[-1] + "_count", f"data-dependent size at {node.name}")
    return ctx.emit(defs.where(cond.expr), shape=[k, len(cond.shape)])


@known("Where")
def _where_known(ctx, node, ins):
    if ins[0].value.dtype == object:
        raise NotFoldable
    return Known(np.argwhere(ins[0].value).astype("int64"), "int64")


@device("Unique", "UniqueWithCounts")
def _unique(ctx, node, ins):
    """Unique (first-occurrence order, as TF) and UniqueWithCounts: how often each unique value occurs, a
    scatter-add of ones at idx."""
    x = ctx.device(ins[0])
    out_idx = node.attr("out_idx", "int32")
    var = ctx.bb.emit(defs.unique(x.expr, out_idx))
    u = _fresh(ctx, node, "count")
    y = ctx.emit(relax.TupleGetItem(var, 0), shape=[u])
    idx = ctx.emit(relax.TupleGetItem(var, 1))
    if node.op == "Unique":
        return [y, idx]
    n = x.shape[0]
    ones = relax.op.ones(shape_expr([n]), out_idx)
    count = ctx.emit(relax.op.scatter_elements(relax.op.zeros(shape_expr([u]), out_idx), idx.expr, ones, 0, "add"),
                     shape=[u])
    return [y, idx, count]


def _fresh(ctx, node, what: str):
    return ctx.symbols.fresh(f"{node.name.rsplit('/', 1)[-1]}_{what}", f"data-dependent size at {node.name}")


@device("SparseReshape")
def _sparse_reshape(ctx, node, ins):
    in_shape = ctx.known_ints(ins[1], "the input dense shape")
    target = ctx.known_ints(ins[2], "the new shape")
    unknown = [i for i, t in enumerate(target) if is_const_int(t) and int(t) == -1]
    total = _prod(in_shape)
    if len(unknown) > 1:
        ctx.fail("more than one -1 in the new shape")
    if unknown:  # as a dense Reshape's: TF's errors for a zero-sized other dim (an empty batch) and a remainder
        target = resolve_reshape(ctx, in_shape, target)
    elif not prove_equal(total, _prod(target)):
        if is_const_int(total) and is_const_int(_prod(target)):
            ctx.fail(f"cannot reshape a SparseTensor of dense shape {in_shape} to {target}")
        names = ctx.symbols_of(as_expr(total) - as_expr(_prod(target)))
        if not names or ctx._data_dependent(names):
            ctx.fail(f"cannot prove that dense shape {in_shape} and new shape {target} hold as many elements")
        # sizes fed at run time (a shape feed): checked on the host before launch, with TF's error
        ctx.assume(as_expr(total) == as_expr(_prod(target)),
                   f"{ctx.label()}: Input to reshape is a SparseTensor with {total} dense values, but the requested "
                   f"shape requires {_prod(target)}")
    out_shape = Known(np.array(target, dtype=object), "int64")
    if len(in_shape) == len(target) and all(prove_equal(a, b) for a, b in zip(in_shape, target)):
        return [ins[0], out_shape]  # unchanged: a host tensor stays one (SparseToDense checks it on the host)
    indices = ctx.device(ins[0])
    indices = ctx.match_shape(indices, [indices.shape[0], len(in_shape)])
    new_indices = ctx.emit(defs.sparse_reshape(indices.expr, shape_expr(in_shape), shape_expr(target)))
    return [new_indices, out_shape]


@device("SparseFillEmptyRows")
def _sfer(ctx, node, ins):
    indices, values = ctx.device(ins[0]), ctx.device(ins[1])
    dense_shape = ctx.known_ints(ins[2], "the dense shape")
    values = ctx.match_shape(values, [indices.shape[0]])
    default = ctx.scalar(ins[3], values.dtype)
    var = ctx.bb.emit(defs.sparse_fill_empty_rows(indices.expr, values.expr, default, shape_expr(dense_shape)))
    m = _fresh(ctx, node, "rows")
    out_idx = ctx.emit(relax.TupleGetItem(var, 0), shape=[m, indices.shape[1]])
    out_vals = ctx.emit(relax.TupleGetItem(var, 1), shape=[m])
    empty = ctx.emit(relax.TupleGetItem(var, 2))
    rev = ctx.emit(relax.TupleGetItem(var, 3))
    return [out_idx, out_vals, empty, rev]


_SEGMENT_OPS = {
    "SparseSegmentSum": "sum", "SparseSegmentMean": "mean", "SparseSegmentSqrtN": "sqrtn",
    "SparseSegmentSumWithNumSegments": "sum", "SparseSegmentMeanWithNumSegments": "mean",
    "SparseSegmentSqrtNWithNumSegments": "sqrtn",
}


@device(*_SEGMENT_OPS)
def _sparse_segment(ctx, node, ins):
    # (sparse_gradient=True, as Keras 3's Embedding over a SparseTensor sets it, changes only the gradient)
    data, indices, seg = ctx.device(ins[0], table=isinstance(ins[0], Known)), ctx.device(ins[1]), ctx.device(ins[2])
    # (ids straight into the embedding table, TF's embedding_lookup_sparse without Unique + gather as Keras 3
    # writes it: the segment reduction range-checks its indices like TF-CPU; EliminateRedundancy makes it a bag)
    seg = ctx.match_shape(seg, [indices.shape[0]])
    num, shape = -1, None
    if node.op.endswith("WithNumSegments"):
        (num,) = ctx.known_ints(ins[3], "num_segments")
        num = as_expr(num)
    else:
        shape = [_fresh(ctx, node, "segments")] + list(data.shape[1:])
    return ctx.emit(defs.sparse_segment_reduce(data.expr, indices.expr, seg.expr, num, _SEGMENT_OPS[node.op]),
                    shape=shape)


_DENSE_SEGMENT_MODES = {"SegmentSum": "sum", "SegmentMax": "max", "SegmentMean": "mean", "SegmentMin": "min",
                        "SegmentProd": "prod"}


@device(*_DENSE_SEGMENT_MODES)
def _segment_sum(ctx, node, ins):
    """Segment{Sum,Max,Mean,Min,Prod}(data, sorted segment ids) = a sparse segment reduction over every row of
    data, in order; the output has max(segment id) + 1 rows (data-dependent, as in TF)."""
    data, seg = ctx.device(ins[0]), ctx.device(ins[1])
    n = data.shape[0]
    seg = ctx.match_shape(seg, [n])
    rows = ctx.emit(relax.op.arange(0, as_expr(n), 1, "int64"))
    shape = [_fresh(ctx, node, "segments")] + list(data.shape[1:])
    return ctx.emit(defs.sparse_segment_reduce(data.expr, rows.expr, seg.expr, -1, _DENSE_SEGMENT_MODES[node.op]),
                    shape=shape)


def _boundaries(node) -> np.ndarray:
    """The boundaries as TF-CPU compares them: float32, denormals flushed to zero (TF's kernels run FTZ/DAZ;
    feeds are flushed on the host, see runtime.feeds.flush_denormals)."""
    return flush_denormals(np.asarray(node.attr("boundaries", []), dtype="float32"))


@device("Bucketize")
def _bucketize(ctx, node, ins):
    x = ctx.device(ins[0])
    boundaries = _boundaries(node)
    if boundaries.size and np.any(np.diff(boundaries) < 0):
        ctx.fail("boundaries must be sorted")
    return ctx.emit(defs.bucketize(x.expr, relax.const(boundaries, "float32")))


@known("Bucketize")
def _bucketize_known(ctx, node, ins):
    if ins[0].value.dtype == object:
        raise NotFoldable
    b = _boundaries(node)
    x = flush_denormals(np.asarray(ins[0].value))
    cmp = x.astype("float64") if x.dtype == np.float64 else x.astype("float32")
    return Known(np.searchsorted(b.astype(cmp.dtype), cmp, side="right").astype("int32"), "int32")


def _search_steps(n) -> int:
    """Halvings of a binary search over n entries: every step leaves at most half (63 for a symbolic length)."""
    return max(1, int(n).bit_length()) if is_const_int(n) else 63


@functools.cache
def _search_kernel(dtype: str, out_dtype: str, right: bool, steps: int):
    """out[r, c] = std::lower_bound (right: std::upper_bound) of x[r, c] in seq[r, :], step for step as libstdc++
    halves [first, first + len), so unsorted rows and NaN give TF-CPU's answers too."""
    floats = dtype.startswith(("float", "bfloat"))

    def goes_right(elem, x):
        """lower_bound: elem < x; upper_bound: !(x < elem), written without the negation, which TVM's simplifier
        would turn into x >= elem (false for NaN where TF's is true)."""
        if not right:
            return elem < x
        return T.Or(elem <= x, T.Or(T.isnan(elem), T.isnan(x))) if floats else elem <= x

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_seq: T.handle, var_x: T.handle, var_out: T.handle):
        rows = T.int64()
        n = T.int64()
        m = T.int64()
        seq = T.match_buffer(var_seq, (rows, n), dtype)
        x = T.match_buffer(var_x, (rows, m), dtype)
        out = T.match_buffer(var_out, (rows, m), out_dtype)
        for i, j in T.grid(rows, m):
            with T.sblock("search"):
                vi, vj = T.axis.remap("SS", [i, j])
                T.reads(seq[vi, 0:n], x[vi, vj])
                T.writes(out[vi, vj])
                st = T.alloc_buffer((2,), "int64", scope="local")  # first, len
                st[0] = T.int64(0)
                st[1] = n
                for _ in T.serial(steps):
                    if st[1] > T.int64(0):
                        half = st[1] // T.int64(2)
                        elem = seq[vi, st[0] + half]
                        if goes_right(elem, x[vi, vj]):
                            st[0] = st[0] + half + T.int64(1)
                            st[1] = st[1] - half - T.int64(1)
                        else:
                            st[1] = half
                out[vi, vj] = T.Cast(out_dtype, st[0])

    return kernel


def binary_search(ctx, seq, values, right: bool, out_dtype: str):
    """[R, M]: each values[r, c] searched in the row seq[r] ([R, N]) as TF-CPU's LowerBound / UpperBound do."""
    kernel = _search_kernel(seq.dtype, out_dtype, right, _search_steps(seq.shape[1]))
    gvar = ctx.bb.add_func(kernel, "recom_search_" + ("right" if right else "left"))
    return ctx.emit(relax.call_tir(gvar, [seq.expr, values.expr], relax.TensorType(
        [as_expr(d) for d in values.shape], out_dtype)), shape=list(values.shape))


@device("LowerBound", "UpperBound")
def _search_sorted(ctx, node, ins):
    """tf.searchsorted (side "left" / "right"): each row of values searched in its row of sorted_sequence (TF's
    python wrapper reshapes both to 2-D); leading dims must match, as TF requires."""
    seq, values = ctx.device(ins[0]), ctx.device(ins[1])
    if len(seq.shape) != 2 or len(values.shape) != 2:
        ctx.fail(f"inputs of ranks {len(seq.shape)} / {len(values.shape)} (2, as tf.searchsorted writes them)")
    values = ctx.match_shape(values, [seq.shape[0], values.shape[1]])
    return binary_search(ctx, seq, values, node.op == "UpperBound", node.attr("out_type", "int32"))


@device("SparseToDense")
def _sparse_to_dense(ctx, node, ins):
    """TF's SparseToDense (indicator columns): `default` everywhere, `values` scattered at `indices`. With
    validate_indices (TF's default) TF rejects repeated or unsorted indices: checked in the host stage, which
    needs the indices to be a feed or a host-stage value."""
    from ..values import Host

    indices, shape, values, default = ins
    dims = ctx.known_ints(shape, "the output shape")
    dtype = node.attr("T")
    if node.attr("validate_indices", True) and not isinstance(indices, Host):
        indices = _validated_on_device(ctx, node, ctx.device(indices), dims)
    elif node.attr("validate_indices", True):
        out = f"{node.name}/validated:0"
        ctx.add_host_op({"name": node.name + "/validated", "op": "ValidateSparseIndices",
                              "inputs": [{"tensor": indices.tensor}], "attrs": {"node": node.name},
                              "outputs": [out]})
        indices = ctx.host_values[out] = Host(out, indices.dtype, list(indices.shape))
    idx = ctx.device(indices)
    if not isinstance(indices, Host) and not node.attr("validate_indices", True):  # (tf.sparse.to_indicator)
        # TF-CPU refuses an index out of bounds all the same; the scatter below must not write one
        flat = idx if len(idx.shape) == 2 else ctx.emit(relax.op.reshape(idx.expr, shape_expr([idx.shape[0], 1])))
        flat = checked_nd_indices(ctx, flat, dims, f"indices out of bounds of the output shape {dims}")
        idx = flat if len(idx.shape) == 2 else ctx.emit(relax.op.reshape(flat.expr, shape_expr(idx.shape)),
                                                        shape=list(idx.shape))
    vals = ctx.device(values)
    if len(vals.shape) == 0:  # one value for every index
        vals = ctx.emit(relax.op.broadcast_to(vals.expr, shape_expr([idx.shape[0]])))
    else:  # separate feeds (no signature grouping them) have their own sizes: TF requires them equal
        vals = ctx.match_shape(vals, [idx.shape[0]])
    if len(dims) == 1:
        idx_expr = idx.expr if len(idx.shape) == 2 else relax.op.reshape(idx.expr, shape_expr([idx.shape[0], 1]))
    else:
        idx_expr = idx.expr
    base = ctx.emit(relax.op.full(shape_expr(dims), ctx.scalar(default, dtype), dtype))
    return ctx.emit(relax.op.scatter_nd(base.expr, idx_expr, vals.expr), shape=list(dims))


def _validated_on_device(ctx, node, idx, dims):
    """SparseToDense's validate_indices over indices computed in the module: every index inside the dense shape,
    strictly increasing in row-major order, else TF's InvalidArgumentError (checked where the indices are)."""
    import tvm

    if len(idx.shape) != 2 or len(dims) != 2:
        ctx.fail("validate_indices over computed indices of rank other than 2")
    n = idx.shape[0]
    cols = [ctx.emit(relax.op.reshape(relax.op.strided_slice(idx.expr, [1], [c], [c + 1]), shape_expr([n])),
                     shape=[n]) for c in (0, 1)]
    zero = relax.const(0, idx.dtype)
    ok = None
    for c, limit in zip(cols, dims):
        lim = ctx.device(Known(np.array(limit, dtype=object), idx.dtype))
        inside = relax.op.logical_and(relax.op.greater_equal(c.expr, zero), relax.op.less(c.expr, lim.expr))
        ok = inside if ok is None else relax.op.logical_and(ok, inside)
    in_range = all_true(ctx, ok)
    m = simplify(tvm.tirx.max(as_expr(n) - 1, as_expr(0)))
    heads = [ctx.match_shape_cast(ctx.emit(relax.op.strided_slice(c.expr, [0], [0], [as_expr(m)],
                                                                   assume_inbound=True)), [m]) for c in cols]
    # [1, m + 1): n - 1 entries, none (not -1) when there are no indices
    tails = [ctx.match_shape_cast(ctx.emit(relax.op.strided_slice(c.expr, [0], [1], [as_expr(m) + 1],
                                                                   assume_inbound=True)), [m]) for c in cols]
    later = relax.op.logical_or(relax.op.greater(tails[0].expr, heads[0].expr), relax.op.logical_and(
        relax.op.equal(tails[0].expr, heads[0].expr), relax.op.greater(tails[1].expr, heads[1].expr)))
    ordered = all_true(ctx, later)
    cond = ctx.emit(relax.op.logical_and(in_range.expr, ordered.expr))
    msg = tvm.ir.StringImm(f"{ctx.label()}: indices out of bounds, repeated or out of order (validate_indices)")
    return ctx.emit(relax.op.call_pure_packed("recom_tvm.check_assert", idx.expr, cond.expr, msg,
                                              ty_args=[idx.expr.ty]), shape=list(idx.shape))


@device("OneHot")
def _one_hot(ctx, node, ins):
    """OneHot: out-of-range indices (the -1 of empty slots) give the off value everywhere, as in TF."""
    indices, depth, on, off = ins
    (d,) = ctx.const_ints(depth, "the depth")
    axis = int(node.attr("axis", -1))
    dtype = node.attr("T")
    if not (isinstance(on, Known) and on.concrete and isinstance(off, Known) and off.concrete):
        ctx.fail("on / off values must be constants")
    x = ctx.device(indices)
    on_v = relax.prim_value(tvm.tirx.const(on.numpy().reshape(()).item(), dtype))
    off_v = relax.prim_value(tvm.tirx.const(off.numpy().reshape(()).item(), dtype))
    rank = len(x.shape)
    ax = axis if axis >= 0 else rank + 1 + axis
    shape = list(x.shape[:ax]) + [d] + list(x.shape[ax:])
    return ctx.emit(relax.op.one_hot(x.expr, on_v, off_v, d, axis), shape=shape)


_SEGMENT_REDUCTIONS = {"UnsortedSegmentSum": "add", "UnsortedSegmentProd": "mul", "UnsortedSegmentMax": "max",
                       "UnsortedSegmentMin": "min"}


def _segment_identity(reduction: str, dtype: str):
    """What TF writes for a segment no id reaches: 0, 1, the type's lowest (max) or highest (min) value."""
    if reduction in ("add", "mul"):
        return 0 if reduction == "add" else 1
    info = np.finfo(dtype) if np.dtype(dtype).kind == "f" else np.iinfo(dtype)
    return info.min if reduction == "max" else info.max


@device(*_SEGMENT_REDUCTIONS)
def _unsorted_segment(ctx, node, ins):
    """out[s] = the sum / product / max / min of data[i] with segment_ids[i] == s over num_segments rows (Keras'
    and tf.ragged's reductions): negative ids are dropped, as in TF; an id >= num_segments is TF's error (checked
    like a gather's index). num_segments may be fed (a size symbol; TF's error if negative). Ids of rank 2+ index
    the leading dims of data of their shape (flattened)."""
    data, seg, num = ctx.device(ins[0]), ctx.device(ins[1]), ins[2]
    (k,) = ctx.known_ints(num, "num_segments")
    if is_const_int(k) and int(k) < 0:
        ctx.fail(f"Input num_segments == {int(k)} must not be negative.")
    reduction = _SEGMENT_REDUCTIONS[node.op]
    r = len(seg.shape)
    if len(data.shape) < r:
        ctx.fail(f"segment ids of rank {r} for data of rank {len(data.shape)}")
    data = ctx.match_shape(data, list(seg.shape) + list(data.shape[r:]))
    if r != 1:  # ids [B, T] (a slot per history position): TF reduces data's leading dims of their shape as one
        n = _prod(seg.shape)
        seg = ctx.emit(relax.op.reshape(seg.expr, shape_expr([n])), shape=[n])
        data = ctx.emit(relax.op.reshape(data.expr, shape_expr([n] + list(data.shape[r:]))),
                        shape=[n] + list(data.shape[r:]))
    n = seg.shape[0]
    dtype = data.dtype
    zero_i = relax.const(0, seg.dtype)
    valid = ctx.emit(relax.op.greater_equal(seg.expr, zero_i))
    idx = ctx.emit(relax.op.where(valid.expr, seg.expr, zero_i))
    rows = ctx.emit(relax.op.arange(0, as_expr(k), 1, seg.dtype))
    idx = ctx.emit(defs.gather(rows.expr, idx.expr, 0, True, ctx.label()), shape=[n])  # == idx, or TF's error
    tail = list(data.shape[1:])
    if reduction == "add":  # a dropped id adds 0 to segment 0
        mask = valid.expr
        for _ in tail:
            mask = relax.op.expand_dims(mask, [-1])
        w = ctx.emit(relax.op.where(mask, data.expr, relax.const(0, dtype)))
        base = ctx.emit(relax.op.zeros(shape_expr([k] + tail), dtype))
        out = relax.op.scatter_nd(base.expr, relax.op.reshape(idx.expr, shape_expr([n, 1])), w.expr, "add")
        return ctx.emit(out, shape=[k] + tail)
    # other reductions: a dropped id goes to an extra segment k, sliced off after
    k_t = ctx.size_scalar(k, seg.dtype)
    spare = ctx.emit(relax.op.where(valid.expr, idx.expr, k_t))
    base = ctx.emit(relax.op.full(shape_expr([simplify(k + 1)] + tail),
                                  relax.const(_segment_identity(reduction, dtype), dtype), dtype))
    out = ctx.emit(relax.op.scatter_nd(base.expr, relax.op.reshape(spare.expr, shape_expr([n, 1])), data.expr,
                                       reduction), shape=[simplify(k + 1)] + tail)
    return ctx.emit(relax.op.strided_slice(out.expr, [0], [0], [as_expr(k)]), shape=[k] + tail)
