"""Float max / min reductions start at -inf / +inf, as TF's, instead of TVM's lowest / highest finite value.

TVM's topi.max / topi.min start their reduction at the dtype's lowest (highest) finite value, so the max of a row
that is all -inf came back as -3.4e38 (float32; -65504 in float16, -1.8e308 in float64) where TF's Eigen reducers
start at -inf and give -inf. Users write exactly that: a max pooling over a padded behaviour history masked with
-inf (`tf.reduce_max(tf.where(mask, h, -inf), 1)`, Keras' GlobalMaxPooling1D after such a mask), where a user
with no history at all must get -inf (then a 0 / NaN downstream, as TF gives), not a huge finite number.

Every `relax.max` / `relax.min` of a float tensor becomes the same reduction written in TE with TF's starting
value; integer ones are left to TVM (their start is TF's as well). This runs after GuardEmptyReductions (which
reads the relax ops) and before TVM's LegalizeOps. NaN handling is the converters' (TF's Max of a NaN is NaN).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te, tirx

from .mutate_functions import rewrite_calls

_OPS = {"relax.max": True, "relax.min": False}  # op -> largest


def _reduction(x: te.Tensor, axes: list[int], keep: bool, largest: bool, dtype: str) -> te.Tensor:
    ndim = len(x.shape)
    red = {a: te.reduce_axis((0, x.shape[a]), f"k{a}") for a in axes}
    start = float("-inf") if largest else float("inf")
    reducer = te.comm_reducer(lambda a, b: tirx.max(a, b) if largest else tirx.min(a, b),
                              lambda t: tirx.const(start, t), name="max" if largest else "min")
    out_shape = [1 if d in red else x.shape[d] for d in range(ndim)] if keep else \
        [x.shape[d] for d in range(ndim) if d not in red]

    def body(*idx):
        it = iter(idx)
        src = []
        for d in range(ndim):
            if d in red:
                src.append(red[d])
                if keep:
                    next(it)
            else:
                src.append(next(it))
        return reducer(x(*src), axis=list(red.values()))

    return te.compute(out_shape, body, name="T_max" if largest else "T_min")


def _start_at_inf(call: relax.Call, builder) -> relax.Expr | None:
    x_ty = call.args[0].ty
    if not isinstance(x_ty, relax.TensorType) or not isinstance(x_ty.shape, relax.ShapeExpr):
        return None
    dtype = str(x_ty.dtype)
    if not (dtype.startswith("bfloat") or np.dtype(dtype).kind == "f"):
        return None
    ndim = len(x_ty.shape.values)
    if not ndim:
        return None
    axes = range(ndim) if call.attrs.axis is None else [int(a) % ndim for a in call.attrs.axis]
    largest = _OPS[call.op.name]
    return builder.call_te(_reduction, call.args[0], sorted(set(axes)), bool(call.attrs.keepdims), largest, dtype,
                           primfunc_name_hint="max" if largest else "min")


@tvm.transform.module_pass(opt_level=0, name="recom_tvm.FloatExtremaStartAtInf")
def FloatExtremaStartAtInf(mod: tvm.IRModule, _ctx) -> tvm.IRModule:  # noqa: N802 - a pass, named as TVM's
    return rewrite_calls(mod, tuple(_OPS), _start_at_inf)
