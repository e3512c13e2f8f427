"""Batch and layer normalization: FusedBatchNorm / V2 / V3.

Where they come from in serving graphs: TF1's `tf.compat.v1.layers.batch_normalization` (fused) and Keras'
BatchNormalization of 4-D inputs (inference: the moving mean and variance), and tf_keras' LayerNormalization, which
normalizes each row as one FusedBatchNormV3 in training mode over the rows reshaped to [1, rows, features, 1]
(NCHW: a "channel" per row, its statistics over the row's features).

Computed as TF-CPU's kernel (fused_batch_norm_op.cc) does, in the op's `U` type (float32; float16 inputs are cast
up and the result cast back): the mean as sum * (1 / n), the variance of the centered values (biased) likewise,
then (x - mean) * (rsqrt(variance + epsilon) * scale) + offset.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from ...shapes.symbolic import is_const_int, simplify
from ..context import shape_expr
from . import device

_CHANNEL = {"NHWC": -1, "NDHWC": -1, "NCHW": 1, "NCDHW": 1}


@device("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
def _fused_batch_norm(ctx, node, ins):
    x = ctx.device(ins[0])
    fmt = node.attr("data_format", b"NHWC")
    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
    rank = len(x.shape)
    if fmt not in _CHANNEL or rank != (5 if "D" in fmt else 4):
        ctx.fail(f"data_format {fmt} with a rank-{rank} input (NHWC / NCHW of 4-D, NDHWC / NCDHW of 5-D)")
    c = _CHANNEL[fmt] % rank
    u = node.attr("U") or "float32"
    if u != "float32":
        ctx.fail(f"U = {u} (float32 is supported)")
    eps = relax.const(np.float32(node.attr("epsilon", 1e-4)), u)
    training = bool(node.attr("is_training", True))  # (TF's default)
    xu = x if x.dtype == u else ctx.emit(relax.op.astype(x.expr, u))
    depth = x.shape[c]
    per_channel = [1] * rank
    per_channel[c] = depth

    def channel_param(v):
        p = ctx.device(v)
        if p.dtype != u:
            p = ctx.emit(relax.op.astype(p.expr, u))
        if len(p.shape) != 1:
            ctx.fail(f"a per-channel input of rank {len(p.shape)}")
        p = ctx.match_shape(p, [depth])
        return p, ctx.emit(relax.op.reshape(p.expr, shape_expr(per_channel)))

    (_, scale), (_, offset) = channel_param(ins[1]), channel_param(ins[2])
    axes = [i for i in range(rank) if i != c]
    if training:
        n = 1
        for i in axes:
            n = n * x.shape[i]
        n = simplify(n) if not isinstance(n, int) else n
        if is_const_int(n):  # TF: rest_size_inv = 1.0f / rest_size, in float
            inv = relax.const(np.float32(1.0) / np.float32(int(n)), u)
            adj = relax.const(np.float32(int(n)) / np.float32(max(int(n) - 1, 1)), u)
        else:
            count = ctx.size_scalar(n, u)
            inv = relax.op.divide(relax.const(1.0, u), count)
            adj = relax.op.divide(count, relax.op.maximum(relax.op.subtract(count, relax.const(1.0, u)),
                                                          relax.const(1.0, u)))
        mean = ctx.emit(relax.op.multiply(relax.op.sum(xu.expr, axes, True), inv))
        centered = ctx.emit(relax.op.subtract(xu.expr, mean.expr))
        var = ctx.emit(relax.op.multiply(relax.op.sum(relax.op.multiply(centered.expr, centered.expr), axes, True),
                                         inv))
        mean_c = ctx.emit(relax.op.reshape(mean.expr, shape_expr([depth])))
        var_c = ctx.emit(relax.op.reshape(var.expr, shape_expr([depth])))
        batch_var = ctx.emit(relax.op.multiply(var_c.expr, adj))  # TF's batch_variance output: unbiased
    else:
        (mean_c, mean), (var_c, var) = channel_param(ins[3]), channel_param(ins[4])
        centered = ctx.emit(relax.op.subtract(xu.expr, mean.expr))
        batch_var = var_c
    factor = ctx.emit(relax.op.multiply(relax.op.rsqrt(relax.op.add(var.expr, eps)), scale.expr))
    y = ctx.emit(relax.op.add(relax.op.multiply(centered.expr, factor.expr), offset.expr))
    if x.dtype != u:
        y = ctx.emit(relax.op.astype(y.expr, x.dtype))
    outs = [y, mean_c, batch_var, mean_c, var_c]
    if node.op == "FusedBatchNormV3":
        outs.append(ctx.emit(relax.const(np.zeros(0, np.float32), u)))  # reserve_space_3: unused on CPU
    return outs
