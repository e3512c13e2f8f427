"""Lower recom ops to TIR kernel calls, before TVM's own LegalizeOps.

Data-dependent sizes follow one pattern: a kernel counts, `R.tensor_to_shape` brings the count to the host (a
device->host sync on GPUs), `match_cast` binds it to a fresh symbolic var, and a second kernel fills an output of
that size. The optimized pipeline removes these ops; this lowering keeps the unoptimized module exact.
"""

from __future__ import annotations

from collections.abc import Callable

import tvm
from tvm import relax, te, tirx

from ..shapes.symbolic import as_expr, declare_size, prove_equal
from . import kernels
from .registry import PREFIX, is_recom_op

I64 = "int64"
CHECK_GATHER_FUNC = "recom_tvm.check_gather"
CHECK_SEGMENTS_FUNC = "recom_tvm.check_segments"
CHECK_GATHER_ND_FUNC = "recom_tvm.check_gather_nd"


def _dt(expr) -> str:
    return str(expr.ty.dtype)


def _dims(expr) -> list:
    return list(expr.ty.shape.values)


def _prod(vals):
    out = tirx.const(1, I64)
    for v in vals:
        out = out * v
    return out


class _Lowerer:
    """Holds the BlockBuilder and de-duplicates kernels added to the module."""

    def __init__(self, bb: relax.BlockBuilder, kernel_buckets=None) -> None:
        self.bb = bb
        self.kernel_buckets = kernel_buckets  # the fused kernel's schedules per batch bucket (build's database)
        self._gvars: dict[tuple, tvm.ir.GlobalVar] = {}

    def kernel(self, factory, *key) -> tvm.ir.GlobalVar:
        k = (factory.__name__, *key)
        if k not in self._gvars:
            name = "recom_" + "_".join([factory.__name__, *[str(x) for x in key]])
            self._gvars[k] = self.bb.add_func(factory(*key), name)
        return self._gvars[k]

    def emit(self, expr, name: str = "") -> relax.Var:
        return self.bb.emit(expr, name)

    def call(self, factory, key: tuple, args: list, out_ty):
        return self.emit(relax.call_tir(self.kernel(factory, *key), args, out_ty))

    def sync_count(self, count_tensor, name: str) -> tirx.Var:
        """Bring a [1] int64 count to the host and bind it to a fresh symbolic var."""
        shape = self.emit(relax.op.tensor_to_shape(count_tensor))
        var = tirx.Var(name, I64)
        declare_size(var)
        self.bb.match_cast(shape, relax.ShapeType([var]))
        return var

    def shape_tensor(self, values) -> relax.Var:
        """An int64 tensor holding (possibly symbolic) integer expressions."""
        vals = [as_expr(v) for v in values]

        def build(values):  # values are passed (not captured) so call_te forwards their symbols
            def body(i):
                e = tirx.const(0, I64)
                for j, v in enumerate(values):
                    e = tirx.Select(i == j, v, e)
                return e

            return te.compute((len(values),), body, name="shape_tensor")

        return self.bb.emit_te(build, vals, primfunc_name_hint="recom_shape_tensor")

    def flat(self, x) -> relax.Var:
        dims = _dims(x)
        if len(dims) == 1:
            return x
        return self.emit(relax.op.reshape(x, [_prod(dims)]))


def _lower_where(lw: _Lowerer, call):
    cond = call.args[0]
    dims, dtype = _dims(cond), _dt(cond)
    flat = lw.flat(cond)
    cnt = lw.call(kernels.count_nonzero, (dtype,), [flat], relax.TensorType([1], I64))
    k = lw.sync_count(cnt, "where_count")
    dims_t = lw.shape_tensor(dims)
    return relax.call_tir(lw.kernel(kernels.where_fill, dtype), [flat, dims_t],
                          relax.TensorType([k, len(dims)], I64))


def _lower_sparse_reshape(lw: _Lowerer, call):
    indices, in_shape, new_shape = call.args
    n = _dims(indices)[0]
    in_t = lw.shape_tensor(list(in_shape.values))
    out_t = lw.shape_tensor(list(new_shape.values))
    return relax.call_tir(lw.kernel(kernels.sparse_reshape), [indices, in_t, out_t],
                          relax.TensorType([n, len(new_shape.values)], I64))


def _lower_sfer(lw: _Lowerer, call):
    indices, values, default, dense_shape = call.args
    n, rank = _dims(indices)
    b = dense_shape.values[0]
    vdtype = _dt(values)
    counts = lw.call(kernels.row_counts, (), [indices], relax.TensorType([b], I64))
    is_empty = lw.emit(relax.op.equal(counts, relax.const(0, I64)))
    n_empty = lw.call(kernels.count_nonzero, ("bool",), [is_empty], relax.TensorType([1], I64))
    e = lw.sync_count(n_empty, "empty_rows")
    m = n + e
    out = lw.emit(relax.call_tir(
        lw.kernel(kernels.sfer_fill, vdtype), [indices, values, default, counts],
        [relax.TensorType([m, rank], I64), relax.TensorType([m], vdtype), relax.TensorType([b], "bool"),
         relax.TensorType([n], I64), relax.TensorType([b], I64)]))
    return relax.Tuple([relax.TupleGetItem(out, i) for i in range(4)])


def _lower_unique(lw: _Lowerer, call):
    x, out_idx = call.args
    n = _dims(x)[0]
    dtype, idx_dtype = _dt(x), out_idx.value
    if dtype.startswith("int") or dtype.startswith("uint"):
        cap = 2 * n + 1  # load factor <= 1/2
        out = lw.emit(relax.call_tir(
            lw.kernel(kernels.unique_hash, dtype, idx_dtype), [x],
            [relax.TensorType([n], dtype), relax.TensorType([n], idx_dtype), relax.TensorType([1], I64),
             relax.TensorType([cap], dtype), relax.TensorType([cap], I64)]))
        u = lw.sync_count(lw.emit(relax.TupleGetItem(out, 2)), "unique_count")
        y = lw.call(kernels.copy_prefix, (dtype,), [lw.emit(relax.TupleGetItem(out, 0))],
                    relax.TensorType([u], dtype))
        return relax.Tuple([y, relax.TupleGetItem(out, 1)])
    first = lw.call(kernels.first_occurrence, (dtype,), [x], relax.TensorType([n], I64))
    cnt = lw.call(kernels.count_firsts, (), [first], relax.TensorType([1], I64))
    u = lw.sync_count(cnt, "unique_count")
    out = lw.emit(relax.call_tir(
        lw.kernel(kernels.unique_fill, dtype, idx_dtype), [x, first],
        [relax.TensorType([u], dtype), relax.TensorType([n], idx_dtype), relax.TensorType([n], I64)]))
    return relax.Tuple([relax.TupleGetItem(out, 0), relax.TupleGetItem(out, 1)])


def _lower_segment_reduce(lw: _Lowerer, call):
    data, ind, seg, num_segments, mode = call.args
    dims = _dims(data)
    inner = dims[1:]
    data2 = data if len(dims) == 2 else lw.emit(relax.op.reshape(data, [dims[0], _prod(inner)]))
    width = _dims(data2)[1]
    derived = isinstance(num_segments, tirx.IntImm) and num_segments.value < 0
    # TF-CPU checks the inputs (they may be fed by the user): indices inside data's rows, segment ids >= 0,
    # increasing and < num_segments; its InvalidArgumentError before anything reads them
    num = tirx.const(-1, I64) if derived else as_expr(num_segments)
    status = lw.call(kernels.segment_check, (_dt(ind), _dt(seg)),
                     [ind, seg, relax.prim_value(as_expr(dims[0])), relax.prim_value(num)],
                     relax.TensorType([3], I64))
    seg = lw.emit(relax.op.call_pure_packed(
        CHECK_SEGMENTS_FUNC, seg, status, tvm.ir.StringImm(f"segment reduction ({mode.value})"),
        relax.prim_value(as_expr(dims[0])), relax.prim_value(num), ty_args=[seg.ty]))
    if derived:
        cnt = lw.call(kernels.last_segment_plus_one, (_dt(seg),), [seg], relax.TensorType([1], I64))
        s = lw.sync_count(cnt, "num_segments")
    else:
        s = num_segments
    out = lw.call(kernels.segment_reduce, (_dt(data), _dt(ind), _dt(seg), mode.value),
                  [data2, ind, seg], relax.TensorType([s, width], _dt(data)))
    if len(dims) == 2:
        return out
    return relax.op.reshape(out, [s] + inner)


def _lower_gather_nd(lw: _Lowerer, call, label: str):
    """relax.gather_nd with TF-CPU's index check (TVM's reads out of bounds): indices whose last dim is static."""
    data, indices = call.args
    idims, ddims = _dims(indices), _dims(data)
    depth = idims[-1] if idims else None
    if not isinstance(depth, tirx.IntImm) or int(call.attrs.batch_dims) != 0 or int(depth) > len(ddims):
        return call
    depth = int(depth)
    flat = lw.emit(relax.op.reshape(indices, [_prod(idims[:-1]), depth]))
    limits = lw.shape_tensor(ddims[:depth])
    status = lw.call(kernels.gather_nd_check, (_dt(indices), depth), [flat, limits], relax.TensorType([3], I64))
    checked = lw.emit(relax.op.call_pure_packed(
        CHECK_GATHER_ND_FUNC, indices, status, flat, tvm.ir.StringImm(label),
        relax.ShapeExpr([as_expr(d) for d in ddims]), ty_args=[indices.ty]))
    return relax.op.gather_nd(data, checked, 0)


def _lower_bucketize(lw: _Lowerer, call):
    x, boundaries = call.args
    cmp_dtype = "float64" if _dt(x) == "float64" else "float32"

    def build(xt, bt):
        nb = bt.shape[0]

        def body(*idx):
            k = te.reduce_axis((0, nb), name="k")
            v = xt(*idx).astype(cmp_dtype)
            # upper_bound: count of boundaries b with !(v < b); NaN lands in the last bucket, as in TF.
            return te.sum(tirx.Select(v < bt[k].astype(cmp_dtype), tirx.const(0, "int32"),
                                      tirx.const(1, "int32")), axis=k)

        return te.compute(xt.shape, body, name="bucketize")

    return lw.bb.call_te(build, x, boundaries, primfunc_name_hint="recom_bucketize")


def _lower_write_slice(lw: _Lowerer, call):
    out, value, offset = call.args
    width, dim = int(_dims(out)[1]), int(_dims(value)[1])
    gvar = lw.kernel(kernels.write_slice, _dt(out), width, dim, int(offset.value))
    return relax.call_tir_inplace(gvar, [out, value], [0], out.ty)


def _lower_table_find(lw: _Lowerer, call):
    x, keys, values, default = call.args
    m = int(_dims(keys)[0])
    steps = max(1, int(m).bit_length() + 1)
    dims = _dims(x)
    flat = lw.flat(x) if len(dims) != 1 else x
    if len(dims) == 0:
        flat = lw.emit(relax.op.reshape(x, [1]))
    d = lw.emit(relax.op.reshape(default, [1]))
    out = lw.call(kernels.table_find, (_dt(x), _dt(values), steps), [flat, keys, values, d],
                  relax.TensorType([_prod(dims)], _dt(values)))
    return relax.op.reshape(out, dims)


def _lower_gather(lw: _Lowerer, call):
    params, indices, axis, check, label = call.args
    axis = int(axis.value)
    if int(check.value):
        limit = _dims(params)[axis]
        flat = lw.flat(indices) if len(_dims(indices)) != 1 else indices
        if len(_dims(indices)) == 0:
            flat = lw.emit(relax.op.reshape(indices, [1]))
        status = lw.call(kernels.index_range_check, (_dt(indices),), [flat, relax.prim_value(limit)],
                         relax.TensorType([3], I64))
        indices = lw.emit(relax.op.call_pure_packed(
            CHECK_GATHER_FUNC, indices, status, tvm.ir.StringImm(label.value), relax.prim_value(limit),
            ty_args=[indices.ty]))
    return relax.op.take(params, indices, axis=axis, mode="clip")  # in range after the check; clip keeps TVM quiet


def _lower_embedding_bag(lw: _Lowerer, call):
    table, ids, rows, mask, num_bags, mode, check, label, weights = call.args
    masked = len(_dims(mask)) > 0
    if not masked:  # a scalar True: pass a 1-element mask the kernel never reads
        mask = lw.emit(relax.op.reshape(mask, [1]))
    weighted = len(_dims(weights)) > 0
    if not weighted:  # the scalar 1: likewise
        weights = lw.emit(relax.op.reshape(weights, [1]))
    width = _dims(table)[1]
    if int(check.value):
        limit = _dims(table)[0]
        status = lw.call(kernels.masked_range_check, (_dt(ids),), [ids, mask, relax.prim_value(limit)],
                         relax.TensorType([3], I64))
        ids = lw.emit(relax.op.call_pure_packed(
            CHECK_GATHER_FUNC, ids, status, tvm.ir.StringImm(label.value), relax.prim_value(limit),
            ty_args=[ids.ty]))
    return relax.call_tir(lw.kernel(kernels.embedding_bag, _dt(table), _dt(ids), _dt(rows), mode.value, masked,
                                    weighted),
                          [table, ids, rows, mask, weights], relax.TensorType([num_bags, width], _dt(table)))


def _const_meta(meta) -> list:
    from ..shapes.symbolic import const_array

    return const_array(meta).tolist()


def _lower_fused_embedding(lw: _Lowerer, call):
    from . import fused_kernel

    packed, meta, bounds, tables, sizes, width = call.args
    target = tvm.target.Target.current(allow_none=True)
    gpu = target is not None and target.kind.name == "cuda"
    m = _const_meta(meta)
    (batch,) = sizes.values
    buckets = lw.kernel_buckets or ((None, fused_kernel.default_config(m)),)
    gvar = lw.bb.add_func(fused_kernel.fused_embedding(m, int(width.value), gpu, buckets,
                                                       packed_dtype=str(packed.ty.dtype)),
                          f"recom_fused_embedding_{len(m)}")
    return relax.call_tir(gvar, [packed, meta, bounds, tables], relax.TensorType([batch, width], "float32"))


def _lower_hash_strings(lw: _Lowerer, call):
    from .fingerprint_tir import hash_packed_func

    packed, num_buckets, strings, region, text = call.args
    target = tvm.target.Target.current(allow_none=True)
    kind = "cuda" if target is not None and target.kind.name == "cuda" else "llvm"
    segments = int(num_buckets.ty.shape.values[0])
    gvar = lw.bb.add_func(hash_packed_func(kind, segments, int(region.value), str(packed.ty.dtype)),
                          f"recom_hash_strings_{segments}")
    # in place: the packed input is the request's own staging copy, read by nothing but the fused kernel after
    return relax.call_tir_inplace(gvar, [packed, num_buckets, text, relax.prim_value(strings.values[0])], [0],
                                  packed.ty)


LOWERINGS: dict[str, Callable] = {
    PREFIX + "where": _lower_where,
    PREFIX + "sparse_reshape": _lower_sparse_reshape,
    PREFIX + "sparse_fill_empty_rows": _lower_sfer,
    PREFIX + "unique": _lower_unique,
    PREFIX + "sparse_segment_reduce": _lower_segment_reduce,
    PREFIX + "bucketize": _lower_bucketize,
    PREFIX + "table_find": _lower_table_find,
    PREFIX + "write_slice": _lower_write_slice,
    PREFIX + "gather": _lower_gather,
    PREFIX + "embedding_bag": _lower_embedding_bag,
    PREFIX + "fused_embedding": _lower_fused_embedding,
    PREFIX + "hash_strings": _lower_hash_strings,
}


@relax.expr_functor.mutator
class _Mutator(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, kernel_buckets=None) -> None:
        super().__init__(mod)
        self.lowerer = _Lowerer(self.builder_, kernel_buckets)
        self.values: dict = {}  # the function being lowered: var -> bound value (before lowering)

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        original = call
        call = super().visit_call_(call)
        if isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.gather_nd" and \
                not _where_coordinates_of(self.values, original.args[1], original.args[0]):
            return _lower_gather_nd(self.lowerer, call, f"GatherNd of {original.args[0]}")
        if isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.nn.relu" and \
                str(call.args[0].ty.dtype).startswith("float"):
            return self.builder_.call_te(_relu_keeping_nan, call.args[0], primfunc_name_hint="relu")
        if is_recom_op(call):
            lower = LOWERINGS.get(call.op.name)
            if lower is None:
                raise NotImplementedError(f"no lowering for {call.op.name}")
            return lower(self.lowerer, call)
        return call


def _where_coordinates_of(values: dict, indices, data) -> bool:
    """Are the indices Where(m)'s coordinates with m of data's shape (in range by construction: no check)?"""
    for _ in range(16):
        v = values.get(indices.__hash__()) if isinstance(indices, relax.Var) else None
        if v is None:
            return False
        if isinstance(v, relax.Var):
            indices = v
            continue
        if isinstance(v, relax.Call) and is_recom_op(v) and v.op.name == PREFIX + "where":
            m = v.args[0]
            if m.ty.shape is None or data.ty.shape is None:
                return False
            md, dd = list(m.ty.shape.values), list(data.ty.shape.values)
            return len(md) <= len(dd) and all(prove_equal(a, b) for a, b in zip(md, dd))
        return False
    return False


def _relu_keeping_nan(x: te.Tensor) -> te.Tensor:
    """TF's Relu: NaN stays NaN (TVM's max(x, 0) becomes LLVM / CUDA fmax, which returns 0 for NaN)."""
    zero = tirx.const(0, x.dtype)
    return te.compute(x.shape, lambda *i: tirx.Select(x(*i) < zero, zero, x(*i)), name="relu")


@tvm.ir.transform.module_pass(opt_level=0, name="LegalizeRecomOps")
class LegalizeRecomOps:
    """Replace every recom op by calls to its TIR kernels (same kernels for llvm and CUDA), and Relu by one that
    keeps NaN as TF's does.

    kernel_buckets: the fused embedding kernel's schedules, ((max batch or None, KernelConfig), ...) ascending
    (recom_tvm.schedules.apply picks them from a tuning database); default: one default schedule."""

    def __init__(self, kernel_buckets=None) -> None:
        self.kernel_buckets = tuple(kernel_buckets) if kernel_buckets else None

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        mutator = _Mutator(mod, self.kernel_buckets)
        for gvar, func in mod.functions_items():
            if isinstance(func, relax.Function):
                mutator.values = {b.var.__hash__(): b.value for block in func.body.blocks for b in block.bindings}
                mutator.builder_.update_func(gvar, mutator.visit_expr(func))
        return mutator.builder_.get()
