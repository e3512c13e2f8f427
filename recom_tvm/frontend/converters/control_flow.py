"""Conditionals: Switch / Merge (TF1 `tf.cond`, asserts' guards, and `If` / `StatelessIf` lowered by
frontend/functions.py), Assert, and CheckNumerics (an assert on the values).

Which tensors are live is decided by frontend/liveness.py. A predicate known when the model is compiled folds
the conditional: only the taken branch is converted. Otherwise both branches are computed (so they must be free
of side effects and of run-time errors: `check_speculatable`) and the Merge selects on the predicate. Asserts
inside a branch are checked on the host only when their branch is taken (`unless_guarded`).
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from ...shapes.symbolic import prove_equal
from ..values import Device, Host, Known
from . import device, placed
from .math import broadcast_pair

# ops that may run although their branch is not taken: no side effects, no run-time errors (a checked gather,
# an integer division by zero and the host stage are not)
SPECULATABLE = {
    "Identity", "IdentityN", "StopGradient", "Snapshot", "PreventGradient", "EnsureShape", "Switch", "Merge",
    "Add", "AddV2", "Sub", "Mul", "RealDiv", "DivNoNan", "Maximum", "Minimum", "Pow", "SquaredDifference",
    "Less", "LessEqual", "Greater", "GreaterEqual", "Equal", "NotEqual", "LogicalAnd", "LogicalOr", "LogicalNot",
    "Neg", "Abs", "Exp", "Log", "Log1p", "Sqrt", "Rsqrt", "Square", "Reciprocal", "Sign", "Floor", "Ceil",
    "Relu", "Relu6", "Elu", "Selu", "LeakyRelu", "Sigmoid", "Tanh", "Softplus", "Softsign", "Erf", "Erfc",
    "Softmax", "LogSoftmax", "Cast", "Select", "SelectV2", "ZerosLike", "OnesLike", "Fill", "BiasAdd", "MatMul",
    "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum", "Sum", "Mean", "Max", "Min", "Prod", "All",
    "Any", "Reshape", "ExpandDims", "Squeeze", "Transpose", "ConcatV2", "Concat", "Pack", "Unpack", "Split",
    "SplitV", "Tile", "BroadcastTo", "Shape", "ShapeN", "Size", "Rank", "Const", "Cumsum", "Cumprod", "L2Loss",
    "Sin", "Cos", "Tan", "Atan", "Atan2", "Round", "Rint", "Expm1", "Xdivy", "Xlogy", "ReverseV2", "Invert",
    "BitwiseAnd", "BitwiseOr", "BitwiseXor", "ClipByValue",
}


def check_speculatable(ctx, node, ins) -> None:
    """A node in a branch of a conditional whose predicate is only known at run time is computed whichever
    branch is taken: refuse ops that have effects or can fail (ops on values known at import are folded)."""
    from . import KNOWN

    if node.op in KNOWN and ins and all(isinstance(v, Known) for v in ins):
        return
    if node.op not in SPECULATABLE:
        ctx.fail(f"it sits in a branch of a conditional (tf.cond / Switch) whose predicate is only known at run "
                 f"time, so both branches would be computed, and {node.op} can fail or has effects there; "
                 "make the predicate a constant (e.g. training=False) when exporting")


def _guard_active(ctx, guards) -> Device:
    """A bool scalar: every (predicate, branch) guard holds."""
    active = None
    for key, branch in sorted(guards, key=str):
        pred = ctx.liveness.preds[key]
        p = ctx.device(pred)
        if p.shape:
            p = ctx.emit(relax.op.reshape(p.expr, []))
        p = p if branch else ctx.emit(relax.op.logical_not(p.expr))
        active = p if active is None else ctx.emit(relax.op.logical_and(active.expr, p.expr))
    return active


def unless_guarded(ctx, cond: Device, guards) -> Device:
    """An Assert's condition inside a branch: it holds when true or when its branch is not taken."""
    active = _guard_active(ctx, guards)
    return ctx.emit(relax.op.logical_or(cond.expr, relax.op.logical_not(active.expr)))


@placed("Switch", "RefSwitch")
def _switch(ctx, node, ins):
    # liveness.py marks the untaken output dead (known predicate) or both guarded; the data passes unchanged
    return [ins[0], ins[0]]


@placed("Merge", "RefMerge")
def _merge(ctx, node, ins):
    live = ctx.live_inputs
    if len(live) == 1:
        i = live[0][0]
        return [ins[i], Known(np.array(i, dtype="int32"), "int32")]
    if len(live) != 2:
        ctx.fail(f"{len(live)} live inputs of a Merge on predicates only known at run time (2 are supported)")
    (i, ga), (j, gb) = live
    ga, gb = ga or frozenset(), gb or frozenset()
    split = [(k, b) for k, b in ga - gb if (k, not b) in gb]
    if len(split) != 1:
        ctx.fail("the inputs of this Merge are not the two branches of one conditional")
    key, branch_a = split[0]
    t, f = (i, j) if branch_a else (j, i)
    vt, vf = ins[t], ins[f]
    if isinstance(vt, Known) and isinstance(vf, Known) and vt.concrete and vf.concrete and \
            vt.dtype == vf.dtype and np.array_equal(vt.numpy(), vf.numpy()):
        value = vt
    else:
        if isinstance(vt, Host) or isinstance(vf, Host):
            ctx.fail("a conditional on a predicate only known at run time selects between host-stage (string) "
                     "values")
        a, b = ctx.device(vt), ctx.device(vf)
        if len(a.shape) != len(b.shape):
            ctx.fail(f"the branches return tensors of different ranks ({len(a.shape)} and {len(b.shape)})")
        if not all(prove_equal(x, y) for x, y in zip(a.shape, b.shape)):
            b = ctx.match_shape(b, a.shape)  # TF allows branches of different shapes; a select does not
        a, b = broadcast_pair(ctx, a, b)
        pred = _guard_active(ctx, {(key, True)})
        value = ctx.emit(relax.op.where(pred.expr, a.expr, b.expr))
    pred = _guard_active(ctx, {(key, True)})
    index = ctx.emit(relax.op.where(pred.expr, relax.const(t, "int32"), relax.const(f, "int32")))
    return [value, index]


@placed("Assert")
def _assert(ctx, node, ins):
    # checked on the host before the outputs return (importer._guard); it has no outputs
    return []


@device("CheckNumerics", "CheckNumericsV2")
def _check_numerics(ctx, node, ins):
    """tf.debugging.check_numerics / assert_all_finite on a served tensor: the tensor, once every value is finite;
    a NaN or an inf is TF's InvalidArgumentError with the op's message (a run-time check: one device->host sync)."""
    x = ctx.device(ins[0])
    if not x.dtype.startswith(("float", "bfloat")):
        ctx.fail(f"CheckNumerics of {x.dtype}")
    msg = node.attr("message", b"")
    msg = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
    ok = ctx.emit(relax.op.isfinite(x.expr), shape=list(x.shape))
    return ctx.check(x, ok, f"{msg} : Tensor had NaN or Inf values")
