"""Fills with inf or NaN become broadcasts of the constant, before anything legalizes them.

TVM 0.27's legalization of `R.full` / `R.full_like` crashes on a non-finite fill value: topi.full checks
`"float" in dtype` with the call's dtype object (not a string) and raises "argument of type 'PrimType' is not
iterable" at build. Users write such fills to mask padded positions before a softmax or a max pooling
(`tf.fill(tf.shape(scores), -np.inf)`, `tf.pad(..., constant_values=-np.inf)`, a SparseToDense default of -inf):
the import gave a module that could not be built. `R.broadcast_to(const, shape)` computes the same tensor and
legalizes on every target.
"""

from __future__ import annotations

import math

import tvm
from tvm import relax

from .mutate_functions import rewrite_calls

_OPS = ("relax.full", "relax.full_like")


def _non_finite(value: relax.Expr) -> bool:
    if not isinstance(value, tvm.ir.expr.Constant):
        return False
    arr = value.value.numpy()
    return arr.size == 1 and arr.dtype.kind == "f" and not math.isfinite(float(arr.reshape(())))


def _as_broadcast(call: relax.Call, _builder) -> relax.Expr | None:
    out_ty = call.ty
    if not _non_finite(call.args[1]) or not isinstance(out_ty, relax.TensorType) or \
            not isinstance(out_ty.shape, relax.ShapeExpr):
        return None
    dtype = str(out_ty.dtype)
    value = relax.const(call.args[1].value.numpy().reshape(()).astype(dtype), dtype)
    return relax.op.broadcast_to(value, out_ty.shape)


@tvm.transform.module_pass(opt_level=0, name="recom_tvm.NonFiniteFills")
def NonFiniteFills(mod: tvm.IRModule, _ctx) -> tvm.IRModule:  # noqa: N802 - a pass, named as TVM's
    return rewrite_calls(mod, _OPS, _as_broadcast)
