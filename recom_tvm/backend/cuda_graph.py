"""CUDA graphs for the module's kernels: a graph variant of `main` for batches up to a cap, chosen by batch.

TVM's RewriteCUDAGraph (pass-context option `relax.backend.use_cuda_graph`) lifts the kernel launches of a Relax
function that touch only *static* memory (storage planned to a constant size, and the weights: the parameters after
`num_input`) into a function the VM captures into a CUDA graph on its first call and replays afterwards
(`vm.builtin.cuda_graph.run_or_capture`, in the runtime-only wheel). Planning a constant size needs an upper bound
of the batch (`tir_var_upper_bound`), and the batch must be a capture key (`relax.rewrite_cuda_graph.
capture_symbolic_vars`): the runtime then keeps one graph per distinct batch size, all of them over the same
storage, allocated once per VM at the cap.

A request's own inputs live at a new address per request (the host stage's staging buffer), so the kernels that
read them (the fused embedding kernel, a first dense layer on a dense feed) launch as usual and write into the
static storage; everything after them (concat, the MLP) replays as one graph; the last kernel, which writes the
returned tensor, launches as usual too (the output gets fresh memory per call: a caller may hold it).

Batches above the cap run `main`'s original body (no graph: at large batches the kernels, not the launches, take the
time, and static storage at a huge batch would hold memory for nothing). So `main` becomes

    if B <= cap: return main_cuda_graph(args)      # static storage at the cap, graphs per batch size
    else:        <main's body>                       # storage from the VM's pooled allocator

Memory: the graph variant's storage (every intermediate at the cap) is held by each VM from its first call on; the
VM's pool release (CompiledModel._bound_pool: `vm.builtin.memory_manager.clear`) frees only unused pooled buffers,
never it. The weights' addresses are captured too: replacing them (CompiledModel.set_params) must start a new VM.
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx

GRAPH_FUNC = "main_cuda_graph"


def batch_symbol(func: relax.Function) -> tirx.Var | None:
    """The batch: the symbolic first dim of main's (first) output, if it has one."""
    ret = func.ret_ty
    tys = list(ret.fields) if isinstance(ret, relax.TupleType) else [ret]
    for ty in tys:
        shape = getattr(ty, "shape", None)
        values = getattr(shape, "values", None) if shape is not None else None
        if values and isinstance(values[0], tirx.Var):
            return values[0]
    return None


def add_graph_variant(mod: tvm.IRModule, max_batch: int, entry: str = "main") -> tvm.IRModule:
    """`entry` dispatching to a graph variant of itself for batches <= max_batch (unchanged if it has no
    symbolic batch). Runs on the lowered module (after CallTIRRewrite, before StaticPlanBlockMemory)."""
    if entry not in [gv.name_hint for gv in mod.get_global_vars()]:
        return mod
    main = mod[entry]
    if not isinstance(main, relax.Function):
        return mod
    batch = batch_symbol(main)
    if batch is None:
        return mod
    graph = _fresh_calls(relax.utils.copy_with_new_vars(main)).without_attr("global_symbol")
    graph = graph.with_attr("tir_var_upper_bound", {batch.name: int(max_batch)})
    graph = graph.with_attr("relax.rewrite_cuda_graph.capture_symbolic_vars", [batch.name])
    bb = relax.BlockBuilder(mod)
    gv = bb.add_func(graph, GRAPH_FUNC)
    cond = relax.prim_value(batch <= tirx.const(int(max_batch), "int64"))
    then = bb.normalize(relax.SeqExpr([], bb.normalize(relax.Call(gv, list(main.params)))))
    body = bb.normalize(relax.If(cond, then, main.body))
    bb.update_func(mod.get_global_var(entry), relax.Function(main.params, body, main.ret_ty, main.is_pure,
                                                              main.attrs, main.span))
    return bb.get()


@relax.expr_functor.mutator
class _FreshCalls(relax.PyExprMutator):
    """New Call nodes throughout: copy_with_new_vars shares the calls that reference no variable (constant-shaped
    allocations) with the original, and StaticPlanBlockMemory keys its plan by call node across functions."""

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        new = super().visit_call_(call)
        if new.same_as(call):
            new = relax.Call(call.op, call.args, call.attrs, call.ty_args, call.span)
        return new


def _fresh_calls(func: relax.Function) -> relax.Function:
    return _FreshCalls().visit_expr(func)


def graph_variant_pass(max_batch: int) -> tvm.transform.Pass:
    @tvm.transform.module_pass(opt_level=0, name="recom_tvm.AddCudaGraphVariant")
    def _pass(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return add_graph_variant(mod, max_batch)

    return _pass


def capture_builtins(executable) -> list[str]:
    """The CUDA-graph builtins an executable's VM code calls (what a graph build must contain)."""
    text = executable.as_text() if hasattr(executable, "as_text") else str(executable)
    return sorted({n for n in ("vm.builtin.cuda_graph.run_or_capture", "vm.builtin.cuda_graph.get_cached_alloc")
                   if n in text})
