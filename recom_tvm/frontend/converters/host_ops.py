"""Ops of the host stage: string work TVM cannot represent, plus what it needs (Where, GatherNd on strings).

The rules here give each output's dtype and symbolic shape; the numpy implementations live in
`recom_tvm.runtime.host_stage` so that serving hosts need no compiler.
"""

from __future__ import annotations

from tvm import tirx

from ...runtime.array_ops import IMPLS as ARRAY_IMPLS
from ...runtime.cross import IMPLS as CROSS_IMPLS
from ...runtime.host_stage import HOST_IMPLS
from ...runtime.string_ops import IMPLS as STRING_IMPLS
from ...shapes.symbolic import as_expr, is_const_int, prove_equal, simplify
from ..values import Known
from . import host
from .array import resolve_reshape


def _same(ctx, node, ins, dtype):
    return [(dtype, list(ins[0].shape))]


@host("StringToHashBucketFast")
def _hash(ctx, node, ins):
    if int(node.attr("num_buckets", 0)) <= 0:
        ctx.fail("num_buckets must be positive")
    return _same(ctx, node, ins, "int64")


@host("AsString")
def _as_string(ctx, node, ins):
    if not (ins[0].dtype.startswith("int") or ins[0].dtype.startswith("uint") or ins[0].dtype == "bool"):
        ctx.fail(f"AsString of {ins[0].dtype} (integer and bool inputs are supported)")
    if int(node.attr("width", -1)) > 0 or node.attr("fill", b"") not in (b"", ""):
        ctx.fail("AsString with width / fill")
    return _same(ctx, node, ins, "string")


@host("Identity")
def _host_identity(ctx, node, ins):
    return _same(ctx, node, ins, ins[0].dtype)


@host("ZerosLike")
def _host_zeros_like(ctx, node, ins):
    if ins[0].dtype != "string":
        ctx.fail(f"ZerosLike of {ins[0].dtype} in the host stage (strings only)")
    return _same(ctx, node, ins, "string")


@host("Cast")
def _host_cast(ctx, node, ins):
    if node.attr("DstT") == "string" or ins[0].dtype == "string":
        ctx.fail("casts to or from strings")
    return _same(ctx, node, ins, node.attr("DstT"))


@host("Equal", "NotEqual")
def _host_compare(ctx, node, ins):
    a, b = ins
    if len(a.shape) >= len(b.shape):
        shape = list(a.shape)
    else:
        shape = list(b.shape)
    small = b if shape is not b.shape else a
    if small.shape and not all(is_const_int(s) and int(s) == 1 for s in small.shape) and not all(
            prove_equal(x, y) for x, y in zip(a.shape, b.shape)):
        ctx.fail("host-stage comparison needs equal shapes or a scalar operand")
    return [("bool", shape)]


def _broadcast(ctx, shapes: list[list]) -> list:
    """The common shape of host-stage elementwise operands under numpy's (and TF's) broadcasting: dims aligned
    from the right, equal or 1."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        big = [d for d in dims if not (is_const_int(d) and int(d) == 1)]
        for d in big[1:]:
            if prove_equal(d, big[0]):
                continue
            if isinstance(d, tirx.Var) and isinstance(big[0], tirx.Var) and ctx._is_input_symbol(d) and \
                    ctx._is_input_symbol(big[0]):  # two features' batch sizes: TF requires them equal
                ctx.assume(as_expr(d) == as_expr(big[0]), f"{ctx.label()}: incompatible shapes: {d.name} != "
                                                          f"{big[0].name}")
                continue
            ctx.fail(f"host-stage elementwise op over shapes {shapes} that need not broadcast")
        out.append(big[0] if big else 1)
    return out


@host("AddV2")
def _host_add(ctx, node, ins):
    return [(ins[0].dtype, _broadcast(ctx, [list(v.shape) for v in ins]))]


@host("SelectV2")
def _host_select(ctx, node, ins):
    return [(ins[1].dtype, _broadcast(ctx, [list(v.shape) for v in ins]))]


@host("Where")
def _host_where(ctx, node, ins):
    k = ctx.symbols.fresh(node.name.rsplit("/", 1)[-1] + "_count", f"data-dependent size at {node.name}")
    return [("int64", [k, len(ins[0].shape)])]


@host("GatherNd")
def _host_gather_nd(ctx, node, ins):
    params, indices = ins
    depth = indices.shape[-1]
    if not is_const_int(depth):
        ctx.fail("GatherNd index depth must be static")
    return [(params.dtype, list(indices.shape[:-1]) + list(params.shape[int(depth):]))]


@host("GatherV2")
def _host_gather(ctx, node, ins):
    params, indices, axis = ins
    (ax,) = ctx.const_ints(axis, "the axis")
    ax %= len(params.shape)
    return [(params.dtype, list(params.shape[:ax]) + list(indices.shape) + list(params.shape[ax + 1:]))]


@host("ExpandDims")
def _host_expand_dims(ctx, node, ins):
    (axis,) = ctx.const_ints(ins[1], "the axis")
    shape = list(ins[0].shape)
    axis = axis if axis >= 0 else len(shape) + 1 + axis
    return [(ins[0].dtype, shape[:axis] + [1] + shape[axis:])]


@host("Reshape")
def _host_reshape(ctx, node, ins):
    target = resolve_reshape(ctx, list(ins[0].shape), ctx.known_ints(ins[1], "the target shape"))
    return [(ins[0].dtype, target)]


# ---------------------------------------------------------- numeric ops feeding a host op (runtime/array_ops.py)
@host("Bucketize")
def _host_bucketize(ctx, node, ins):
    b = list(node.attr("boundaries", []))
    if any(y < x for x, y in zip(b, b[1:])):
        ctx.fail("boundaries must be sorted")
    return [("int32", list(ins[0].shape))]


@host("Mul", "Sub")
def _host_arith(ctx, node, ins):
    return [(ins[0].dtype, _broadcast(ctx, [list(v.shape) for v in ins]))]


@host("Range")
def _host_range(ctx, node, ins):
    dtype = node.attr("Tidx", "int32")
    if all(isinstance(v, Known) for v in ins):
        start, limit, delta = (ctx.known_ints(v, "a Range bound")[0] for v in ins)
        if not is_const_int(delta) or int(delta) == 0:
            ctx.fail("Range with a non-constant or zero delta")
        d = int(delta)
        n = simplify(tirx.Max(as_expr(0), tirx.floordiv(as_expr(limit) - as_expr(start) + (d - 1 if d > 0 else d + 1),
                                                        as_expr(d))))
        return [(dtype, [n])]
    return [(dtype, [ctx.symbols.fresh(node.name.rsplit("/", 1)[-1] + "_len", f"data-dependent size at {node.name}")])]


@host("Tile")
def _host_tile(ctx, node, ins):
    mult = ctx.known_ints(ins[1], "the multiples")
    if len(mult) != len(ins[0].shape):
        ctx.fail("multiples of another rank than the input")
    return [(ins[0].dtype, [simplify(as_expr(d) * as_expr(m)) for d, m in zip(ins[0].shape, mult)])]


@host("Pack")
def _host_pack(ctx, node, ins):
    shape = _broadcast(ctx, [list(v.shape) for v in ins]) if ins[0].shape else []
    if any(len(v.shape) != len(shape) for v in ins):
        ctx.fail("Pack of tensors of different ranks")
    axis = int(node.attr("axis", 0))
    axis = axis if axis >= 0 else len(shape) + 1 + axis
    return [(ins[0].dtype, shape[:axis] + [len(ins)] + shape[axis:])]


@host("Transpose")
def _host_transpose(ctx, node, ins):
    perm = ctx.const_ints(ins[1], "the permutation")
    return [(ins[0].dtype, [ins[0].shape[p] for p in perm])]


@host("ConcatV2")
def _host_concat(ctx, node, ins):
    *xs, axis = ins
    (ax,) = ctx.const_ints(axis, "the axis")
    rank = len(xs[0].shape)
    ax %= rank
    shape = list(xs[0].shape)
    for v in xs[1:]:
        if len(v.shape) != rank or not all(prove_equal(a, b) for i, (a, b) in enumerate(zip(v.shape, shape))
                                           if i != ax):
            ctx.fail("ConcatV2 of mismatched shapes")
    shape[ax] = simplify(sum((as_expr(v.shape[ax]) for v in xs[1:]), as_expr(xs[0].shape[ax])))
    return [(xs[0].dtype, shape)]


@host("Squeeze")
def _host_squeeze(ctx, node, ins):
    dims = [int(d) % len(ins[0].shape) for d in (node.attr("squeeze_dims") or [])]
    shape = list(ins[0].shape)
    if not dims:
        dims = [i for i, d in enumerate(shape) if is_const_int(d) and int(d) == 1]
    for i in dims:
        if not (is_const_int(shape[i]) and int(shape[i]) == 1):
            ctx.fail(f"Squeeze of dim {i} of size {shape[i]}")
    return [(ins[0].dtype, [d for i, d in enumerate(shape) if i not in dims])]


@host("StridedSlice")
def _host_strided_slice(ctx, node, ins):
    from .array import _slice_bounds, strided_slice_spec

    x = ins[0]
    begin, end = ctx.const_ints(ins[1], "begin"), ctx.const_ints(ins[2], "end")
    strides = ctx.const_ints(ins[3], "strides")
    slices, layout = strided_slice_spec(ctx, node, len(x.shape), begin, end, strides)
    sizes = [1 if shrink else _slice_bounds(b, e, s, x.shape[d])[2] for d, (b, e, s, shrink) in enumerate(slices)]
    return [(x.dtype, [1 if item[0] == "new" else sizes[item[1]] for item in layout])]


@host("DenseBincount")
def _host_bincount(ctx, node, ins):
    x, size, weights = ins
    if len(x.shape) != 1:
        ctx.fail("DenseBincount of a rank-2 input")
    if not isinstance(size, Known):
        size = clamped_size(ctx, node.inputs[1])
    if size is None:
        n = ctx.symbols.fresh(node.name.rsplit("/", 1)[-1] + "_size", f"data-dependent size at {node.name}")
    else:
        (n,) = ctx.known_ints(size, "the size")
    return [(weights.dtype, [n])]


def clamped_size(ctx, tensor: tuple[str, int]):
    """tf.math.bincount(minlength=n, maxlength=n) (RaggedTensor.from_value_rowids) passes
    size = Minimum(n, Maximum(n, ...)), which is n: the known value of n, or None."""
    graph = ctx.graph
    node = graph.nodes[tensor[0]]
    if node.op != "Minimum":
        return None
    (a, b) = node.inputs
    inner = graph.nodes[b[0]]
    if inner.op != "Maximum" or a not in inner.inputs:
        return None
    v = ctx.values.get(a)
    return v if isinstance(v, Known) else None


@host("Cumsum")
def _host_cumsum(ctx, node, ins):
    ctx.const_ints(ins[1], "the axis")
    return [(ins[0].dtype, list(ins[0].shape))]


@host("BroadcastTo")
def _host_broadcast_to(ctx, node, ins):
    return [(ins[0].dtype, ctx.known_ints(ins[1], "the shape"))]


@host("Max", "Min")
def _host_reduce(ctx, node, ins):
    x = ins[0]
    axes = [a % max(len(x.shape), 1) for a in ctx.const_ints(ins[1], "the axes")]
    keep = bool(node.attr("keep_dims", False))
    return [(x.dtype, [1 if i in axes else d for i, d in enumerate(x.shape)] if keep else
             [d for i, d in enumerate(x.shape) if i not in axes])]


@host("Maximum", "Minimum")
def _host_minmax(ctx, node, ins):
    return [(ins[0].dtype, _broadcast(ctx, [list(v.shape) for v in ins]))]


@host("Less", "LessEqual", "Greater", "GreaterEqual")
def _host_order(ctx, node, ins):
    return [("bool", _broadcast(ctx, [list(v.shape) for v in ins]))]


missing = set(HOST_IMPLS) ^ {"StringToHashBucketFast", "AsString", "Identity", "Cast", "Equal", "NotEqual",
                              "Where", "GatherNd", "GatherV2", "Reshape", "LookupTableFind", "AddV2",
                              "SelectV2", "ValidateSparseIndices", "SparseCross", "ParseExampleV2",
                              "ExpandDims", "TFSubgraph", *STRING_IMPLS, *ARRAY_IMPLS,
                              *CROSS_IMPLS}
assert not missing, f"host rules and implementations disagree: {missing}"
