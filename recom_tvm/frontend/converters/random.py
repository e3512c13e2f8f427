"""RandomUniform where TF1 dropout reads it at inference: `tf.compat.v1.nn.dropout(x, keep_prob=kp)` with kp a
`placeholder_with_default(1.0)` keeps its mask live in the frozen graph (no cond). The mask is
`RandomUniform(shape) >= 1 - kp` (TF 2), or `floor(kp + RandomUniform(shape))` (TF 1.x graphs); the uniform values
lie in [0, 1 - eps] of their dtype, so where the rate is 0 (kp 1) the mask is all true (all ones) whatever the
draw, and it is folded. The uniform values themselves are never computed: a live dropout (another keep_prob,
fed or constant) is refused, naming the RandomUniform node, since random numbers cannot match TensorFlow's."""

from __future__ import annotations

import dataclasses

import numpy as np
from tvm import relax

from ...shapes.symbolic import prove_equal
from ..context import shape_expr
from ..values import Device, Known, Value
from . import PASSTHROUGH, device

_CHAIN = ("Mul", "Add", "AddV2")  # how tf.random.uniform scales its draw, and TF1 dropout adds keep_prob to it
_MASKS = ("GreaterEqual", "Floor")


@dataclasses.dataclass
class Uniform:
    """A RandomUniform tensor, not materialized: each entry is fl(offset + v) with v in [lo, hi] (offset: a
    scalar computed at run time, or none)."""

    node: str
    dtype: str
    shape: list
    lo: np.ndarray
    hi: np.ndarray
    offset: Value | None = None


def _refuse(ctx, name: str, why: str):
    ctx.fail(f"{why}: random numbers of RandomUniform node {name!r} cannot match TensorFlow's (only dropout's mask "
             "at keep probability 1, its inference default, is folded)")


def _check_readers(ctx, name: str) -> None:
    """Every reader of the draw, through scalings and passthroughs, ends in a dropout mask (not an output)."""
    consumers = ctx.consumers()
    todo = [name]
    while todo:
        for reader in consumers[todo.pop()]:
            op = ctx.graph.nodes[reader].op
            if (op in PASSTHROUGH or op in _CHAIN) and consumers[reader]:
                todo.append(reader)
            elif op not in _MASKS:
                _refuse(ctx, name, f"it is read by {op} node {reader!r}")


@device("RandomUniform")
def _random_uniform(ctx, node, ins):
    dtype = node.attr("dtype")
    if dtype not in ("float16", "float32", "float64"):
        ctx.fail(f"RandomUniform of {dtype}")
    _check_readers(ctx, node.name)
    dims = ctx.known_ints(ins[0], "the shape")
    # TF draws mantissa bits of [1, 2) and subtracts 1: multiples of eps in [0, 1 - eps]
    return Uniform(node.name, dtype, dims, np.zeros((), dtype), np.array(1 - np.finfo(dtype).eps, dtype))


def _scalar(ctx, u: Uniform, v: Value) -> Value:
    """v, refused unless a scalar (a keep probability, a rate, tf.random.uniform's bounds)."""
    if not all(prove_equal(d, 1) for d in (v.value.shape if isinstance(v, Known) else v.shape)):
        _refuse(ctx, u.node, "it is combined with a tensor, not a scalar")
    return v


def uniform_binary(ctx, node, ins) -> Value | Uniform:
    """Mul / Add of the draw and a scalar (an interval, or the run-time offset), or the mask GreaterEqual."""
    k = 0 if isinstance(ins[0], Uniform) else 1
    u, other = ins[k], _scalar(ctx, ins[k], ins[1 - k])
    if node.op == "GreaterEqual" and k == 0:
        return _mask(ctx, u, other)
    known = isinstance(other, Known) and other.concrete
    if node.op not in _CHAIN or u.offset is not None or (node.op == "Mul" and not known):
        _refuse(ctx, u.node, f"{node.op} node {node.name!r} is not dropout's")
    if not known:
        return dataclasses.replace(u, offset=other)
    c = np.asarray(other.numpy()).reshape(()).astype(u.dtype)
    ends = sorted([u.lo * c, u.hi * c] if node.op == "Mul" else [u.lo + c, u.hi + c])
    return dataclasses.replace(u, lo=ends[0], hi=ends[1])


def _mask(ctx, u: Uniform, threshold: Value | None) -> Device:
    """floor(draw) (threshold None) or draw >= threshold, the same at both ends of the draw's range: that value
    everywhere; else refused at import, or by a run-time check where the offset or the threshold is fed."""
    out = "bool" if threshold is not None else u.dtype
    fed = u.offset is not None or not (threshold is None or isinstance(threshold, Known) and threshold.concrete)
    if not fed:
        t = None if threshold is None else np.asarray(threshold.numpy()).reshape(()).astype(u.dtype)
        ends = [np.floor(v) if t is None else v >= t for v in (u.lo, u.hi)]
        if ends[0] != ends[1]:
            _refuse(ctx, u.node, "dropout is active here" + ("" if t is None else f" (rate {t})"))
        fill = relax.const(np.asarray(ends[0]).astype(out), out)
        return ctx.emit(relax.op.full(shape_expr(u.shape), fill, out), shape=list(u.shape))
    ends = []
    for v in (u.lo, u.hi):
        x = relax.const(v, u.dtype)
        x = x if u.offset is None else relax.op.add(ctx.scalar(u.offset, u.dtype), x)
        ends.append(relax.op.floor(x) if threshold is None else
                    relax.op.greater_equal(x, ctx.scalar(threshold, u.dtype)))
    value = ctx.emit(relax.op.broadcast_to(ends[0], shape_expr(u.shape)), shape=list(u.shape))
    same = relax.op.equal(*[relax.op.astype(e, "int8") if out == "bool" else e for e in ends])  # (no bool ==)
    return ctx.check(value, ctx.emit(same, shape=[]),
                     f"dropout is active (keep probability fed other than 1): random numbers of RandomUniform node "
                     f"{u.node!r} cannot match TensorFlow's")


def uniform_floor(ctx, node, ins) -> Device:
    return _mask(ctx, ins[0], None)
