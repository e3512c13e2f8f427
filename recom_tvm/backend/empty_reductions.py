"""Reductions over extents that may be empty return TF's identity instead of unwritten memory.

TVM lowers a reduction's initial value into its reduction loop (it runs at the first iteration), so summing zero
elements leaves the output as it was allocated: R.sum of an empty tensor reads back garbage on llvm and CUDA. TF
gives the reduction's identity: 0 (sum), 1 (prod), -inf / the type's lowest (max), +inf / its highest (min), NaN
for a float mean (0 for an int one). Empty extents are ordinary here: a request of batch 0, a bag with no ids, a
feature with no values; the importer's own checks (`sum(bad) == 0`) read such sums too.

Every sum / prod / max / min / mean / variance whose reduced extent is not provably >= 1 becomes
`where(extent > 0, reduction, identity)`; an integer mean becomes its sum divided by max(count, 1) (TVM's divides
by zero: SIGFPE); provably non-empty ones are left alone. A matmul is a sum over its contracted dim, so one whose
contracted size may be 0 is guarded the same way: TF's zeros (an einsum summing over the batch, `bi,bi->`, read
back inf / garbage at B = 0; a dense layer's constant K is never guarded).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, tirx

from ..ops.legalize import _Lowerer
from ..shapes.symbolic import analyzer, as_expr
from .mutate_functions import mutate_functions

_OPS = ("relax.sum", "relax.prod", "relax.max", "relax.min", "relax.mean", "relax.variance", "relax.matmul")


def _identity(op: str, dtype: str):
    """TF's value of the reduction over nothing, or None where it has none we can write (bool max / min)."""
    if op in ("relax.sum", "relax.matmul"):
        return 0
    if op == "relax.prod":
        return 1
    dt = np.dtype(dtype)
    if op in ("relax.mean", "relax.variance"):
        return float("nan") if dt.kind == "f" else 0
    if dt.kind == "f":
        return float("-inf") if op == "relax.max" else float("inf")
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return int(info.min) if op == "relax.max" else int(info.max)
    return None


def _reduced_extent(call: relax.Call):
    """The number of elements each output reduces over (a PrimExpr), or None where the input's shape is unknown."""
    ty = call.args[0].ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None or not isinstance(ty.shape, relax.ShapeExpr):
        return None
    dims = list(ty.shape.values)
    if call.op.name == "relax.matmul":  # the contracted dim: a's last
        return as_expr(dims[-1]) if dims else None
    axes = call.attrs.axis
    picked = range(len(dims)) if axes is None else [int(a) % max(len(dims), 1) for a in axes]
    extent = tirx.const(1, "int64")
    for a in picked:
        extent = extent * as_expr(dims[a])
    return extent


@relax.expr_functor.mutator
class _Guard(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.lower = _Lowerer(self.builder_)
        self.count = 0

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.Op) or call.op.name not in _OPS:
            return call
        out_ty = call.ty
        if not isinstance(out_ty, relax.TensorType):
            return call
        extent = _reduced_extent(call)
        ident = _identity(call.op.name, str(out_ty.dtype))
        if extent is None or ident is None or analyzer().can_prove(extent >= 1):
            return call
        n = self.builder_.emit(relax.op.reshape(self.lower.shape_tensor([extent]), []))
        some = self.builder_.emit(relax.op.greater(n, relax.const(0, "int64")))
        if call.op.name == "relax.mean" and np.dtype(str(out_ty.dtype)).kind in "iu":
            # TVM's integer mean divides by the count: over nothing, a division by zero (SIGFPE). TF's: the sum
            # divided by the count, truncated; 0 over nothing
            self.count += 1
            x, dtype = call.args[0], str(out_ty.dtype)
            total = self.builder_.emit(relax.op.sum(x, call.attrs.axis, call.attrs.keepdims))
            total = self.builder_.emit(relax.op.where(some, total, relax.const(0, str(total.ty.dtype))))
            count = relax.op.astype(relax.op.maximum(n, relax.const(1, "int64")), str(total.ty.dtype))
            return relax.op.astype(relax.op.divide(total, count), dtype)
        self.count += 1
        value = self.builder_.emit(call)
        return relax.op.where(some, value, relax.const(ident, str(out_ty.dtype)))  # (scalars broadcast)


@tvm.transform.module_pass(opt_level=0, name="recom_tvm.GuardEmptyReductions")
def GuardEmptyReductions(mod: tvm.IRModule, _ctx) -> tvm.IRModule:  # noqa: N802 - a pass, named as TVM's
    return mutate_functions(mod, _Guard)
