"""Keep host calls out of CUDA graphs: each call of a packed function that runs on the host becomes a call of a
small private Relax function holding it, a call TVM's RewriteCUDAGraph never lifts into a graph.

Why: RewriteCUDAGraph takes every call of an external function (`R.call_packed`) outside `vm.builtin.*` for a
kernel launch (a library kernel in destination-passing style) and lifts it into the captured region when its
arguments are static. recom_tvm's run-time checks (recom_tvm.runtime.builtins: `recom_tvm.check_gather`,
`check_assert`, ...) run on the host: they read a status tensor with a synchronous device->host copy on the legacy
default stream and return a fresh copy of their input. Inside a capture that copy fails with
`cudaErrorStreamCaptureImplicit` (906): on the H200 corpus run, every graph build holding such a check in a
captured region failed (19 of 60 variants), and no other did. Had it been captured, a replay would skip the check
and hand back the tensor of the capture.

The planner ends a captured region at a call of a Relax function (it lifts only kernel launches and memory views),
so the check, and everything that reads its result, runs outside the graphs; the kernel that writes the status
before it and those after it are still captured. The wrapper costs one VM call per check, on the graph path only.
Runs after StaticPlanBlockMemory, right before RewriteCUDAGraph, on builds with CUDA graphs.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import relax, tirx

WRAPPER_ATTR = "recom_tvm.host_call"  # marks the wrappers (and names the packed function each one calls)

# External functions RewriteCUDAGraph already keeps out of graphs (its planner ends a region at them).
GRAPH_SAFE_PREFIXES = ("vm.builtin.",)


def is_host_call(call: relax.Call) -> bool:
    """A call of an external (packed) function that RewriteCUDAGraph would take for a kernel launch.

    recom_tvm's modules launch kernels only as PrimFunc calls (the wheel has no cuBLAS / CUTLASS offload), so every
    other external call is a host function: kept out of graphs (a library kernel wrongly kept out would only lose
    the graph's speed, a host call wrongly captured fails or skips its work)."""
    return isinstance(call.op, relax.ExternFunc) and not str(call.op.global_symbol).startswith(GRAPH_SAFE_PREFIXES)


def _is_constant(arg: relax.Expr) -> bool:
    """An argument the wrapper can hold itself (no variable in it)."""
    if isinstance(arg, (tvm.ir.StringImm, tvm.ir.expr.Constant)):  # Constant: IntImm, dtypes, tensors too
        return True
    if isinstance(arg, relax.ShapeExpr):
        return all(isinstance(v, tirx.IntImm) for v in arg.values)
    return False


def _param_type(arg: relax.Expr):
    """The wrapper's parameter type for a variable argument: its own type; a shape or scalar computed from
    symbols is passed erased (its symbols need not be definable from a parameter)."""
    if isinstance(arg, relax.ShapeExpr):
        return relax.ShapeType(ndim=len(arg.values))
    if isinstance(arg, relax.Var) or not isinstance(arg.ty, tvm.ir.PrimType):
        return arg.ty
    return tvm.ir.PrimType(arg.ty.dtype)


def host_call_wrapper(call: relax.Call) -> tuple[relax.Function, list[relax.Expr], bool]:
    """(private Relax function making `call` on its parameters, the arguments to call it with, whether its result
    has the call's exact type). Where the call's result names symbols no argument defines (the enclosing function
    binds them elsewhere), the wrapper returns the result erased to what its parameters define, and the caller
    match_casts it back."""
    variable = [(i, arg) for i, arg in enumerate(call.args) if not _is_constant(arg)]
    defined = {v: v for _, arg in variable for v in relax.analysis.definable_tir_vars_in_type(_param_type(arg))}
    params = {i: relax.Var(f"a{i}", relax.analysis.erase_to_well_defined(_param_type(arg), defined))
              for i, arg in variable}
    inner = [params.get(i, arg) for i, arg in enumerate(call.args)]
    ret = relax.analysis.erase_to_well_defined(call.ty, defined)
    exact = tvm_ffi.structural_equal(ret, call.ty)
    out = relax.Var("out", ret)
    body = relax.SeqExpr([relax.BindingBlock([relax.VarBinding(out, relax.Call(call.op, inner, call.attrs,
                                                                                 [ret], call.span))])], out)
    func = relax.Function(list(params.values()), body, ret, True).with_attr("relax.force_pure", True).with_attr(
        WRAPPER_ATTR, str(call.op.global_symbol))
    return relax.utils.copy_with_new_vars(func), [arg for _, arg in variable], exact


@relax.expr_functor.mutator
class _FenceHostCalls(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.wrapped = 0

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        if not (isinstance(binding.value, relax.Call) and is_host_call(binding.value)):
            super().visit_var_binding_(binding)
            return
        call = self.visit_expr(binding.value)
        func, args, exact = host_call_wrapper(call)
        gv = self.builder_.add_func(func, "host_" + str(call.op.global_symbol).replace(".", "_"))
        value = self.builder_.normalize(relax.Call(gv, args, span=call.span))
        var = self.visit_var_def(binding.var)
        self.builder_.emit_normalized(relax.VarBinding(var, value) if exact else relax.MatchCast(var, value, var.ty))
        self.wrapped += 1


def fence_host_calls(mod: tvm.IRModule) -> tvm.IRModule:
    """Every host call of every Relax function of `mod` made through a wrapper of its own (see the module doc)."""
    fence = _FenceHostCalls(mod)
    for gv, func in list(mod.functions_items()):
        if isinstance(func, relax.Function) and WRAPPER_ATTR not in (func.attrs or {}):
            new = fence.visit_expr(func)
            if not new.same_as(func):
                fence.builder_.update_func(gv, new)
    return fence.builder_.get() if fence.wrapped else mod


@tvm.transform.module_pass(opt_level=0, name="recom_tvm.FenceHostCalls")
def FenceHostCalls(mod: tvm.IRModule, _ctx) -> tvm.IRModule:  # noqa: N802 - a pass, named like TVM's
    return fence_host_calls(mod)
