"""Ops of the host stage: string work TVM cannot represent, plus what it needs (Where, GatherNd on strings).

The rules here give each output's dtype and symbolic shape; the numpy implementations live in
`recom_tvm.runtime.host_stage` so that serving hosts need no compiler.
"""

from __future__ import annotations

from ...runtime.host_stage import HOST_IMPLS
from ...shapes.symbolic import is_const_int, prove_equal
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
    """The common shape of host-stage elementwise operands: equal shapes, or scalars."""
    full = [s for s in shapes if s]
    out = full[0] if full else []
    for s in full[1:]:
        if len(s) != len(out) or not all(prove_equal(x, y) for x, y in zip(s, out)):
            ctx.fail("host-stage elementwise op needs equal shapes or scalar operands")
    return list(out)


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


missing = set(HOST_IMPLS) ^ {"StringToHashBucketFast", "AsString", "Identity", "Cast", "Equal", "NotEqual",
                              "Where", "GatherNd", "GatherV2", "Reshape", "LookupTableFind", "AddV2",
                              "SelectV2", "ValidateSparseIndices", "SparseCross", "ParseExampleV2",
                              "ExpandDims", "TFSubgraph"}
assert not missing, f"host rules and implementations disagree: {missing}"
