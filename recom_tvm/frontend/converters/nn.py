"""The dense tail: MatMul, BatchMatMul, Softmax."""

from __future__ import annotations

from tvm import relax

from . import device


def _t(ctx, x, flag: bool):
    if not flag:
        return x
    perm = list(range(len(x.shape)))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return ctx.emit(relax.op.permute_dims(x.expr, perm))


@device("MatMul")
def _matmul(ctx, node, ins):
    a, b = (ctx.device(v) for v in ins)
    a = _t(ctx, a, bool(node.attr("transpose_a", False)))
    b = _t(ctx, b, bool(node.attr("transpose_b", False)))
    b = ctx.match_shape(b, [a.shape[1], b.shape[1]])
    return ctx.emit(relax.op.matmul(a.expr, b.expr))


@device("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")
def _batch_matmul(ctx, node, ins):
    a, b = (ctx.device(v) for v in ins)
    a = _t(ctx, a, bool(node.attr("adj_x", False)))
    b = _t(ctx, b, bool(node.attr("adj_y", False)))
    out_dtype = node.attr("Tout") if node.op == "BatchMatMulV3" else None
    return ctx.emit(relax.op.matmul(a.expr, b.expr, out_dtype=out_dtype))


@device("Softmax", "LogSoftmax")
def _softmax(ctx, node, ins):
    x = ctx.device(ins[0])
    fn = relax.op.nn.softmax if node.op == "Softmax" else relax.op.nn.log_softmax
    return ctx.emit(fn(x.expr, axis=-1))
