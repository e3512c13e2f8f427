"""Split-K's partial sums as a tensor Relax plans, not a workspace the kernel's host side allocates.

A dense layer whose batch bucket splits K over blocks (recom_tvm.schedules.dense_tail, `split_k`) stores each block's
sum of its K chunk to a global [split_k, B, N] buffer, which a second kernel adds up. Left inside the PrimFunc, that
buffer is allocated by the kernel's host side on every call (TVMBackendAllocWorkspace), which a CUDA-graph capture
must not do (no cudaMalloc while a stream captures; a captured address must stay the layer's for every replay):
graph builds dropped the split, and model E's 8,152 x 1,024 layer at B = 1 ran 34 us instead of 26 (H100).

Every split bucket serves batches up to its limit, so its buffer has a constant bound (split_k x limit x N
elements: 1 MiB for E's 1,024-wide layers under the defaults). LiftPartialSums makes the buckets' buffers views
(DeclBuffer) of one extra, last output parameter of that size, `partial_sums`, and gives every call_tir of the
layer the extra output (the layer's result is item 0). Relax's memory planning then gives it static storage like
any intermediate: a graph captures its address, and the storage is reused after the call. A split bucket without a
limit (a tuned record splitting K for every batch) has no bound: that layer keeps its workspace (and a graph build
schedules it without the split, recom_tvm.backend.pipeline.dense_tail_pass).
"""

from __future__ import annotations

import math

import tvm
import tvm_ffi
from tvm import relax, tirx
from tvm.ir.expr import Call
from tvm.s_tir.stmt import SBlock

PARAM = "partial_sums"
_CALL_TIR = tvm.ir.Op.get("relax.call_tir")


def workspace_buffers(func: tirx.PrimFunc) -> list[tuple[tirx.Var, int, tuple | None]]:
    """The global buffers a dispatched layer allocates itself (split-K's partial sums), each with the index of the
    bucket holding it and that bucket's bound (batch var, limit; None: the last bucket, unbounded). The buckets are
    dense_tail.dispatch's chain `if tvm_thread_invariant(B <= limit): ... else: ...`."""
    body = func.body.block.body if hasattr(func.body, "block") else func.body
    branches = []
    while isinstance(body, tirx.IfThenElse):
        cond = body.condition.args[0] if isinstance(body.condition, Call) else body.condition
        bound = (cond.a, int(cond.b)) if isinstance(cond, tirx.LE) and isinstance(cond.b, tirx.IntImm) else None
        branches.append((bound, body.then_case))
        body = body.else_case
    branches.append((None, body))
    found = []
    for i, (bound, stmt) in enumerate(branches):
        tvm_ffi.structural_walk(stmt, [(SBlock, lambda b, i=i, bound=bound: found.extend(
            (buf, i, bound) for buf in b.alloc_buffers if buf.scope() == "global"))], order="post")
    return found


def _elements(shape, bound) -> int | None:
    """The most elements `shape` has at any batch of its bucket (1 to the limit); None where a dim is not a function
    of the batch alone."""
    var, limit = bound

    def ev(e, batch):
        if isinstance(e, tirx.IntImm):
            return int(e.value)
        if isinstance(e, tirx.Var):
            if not e.same_as(var):
                raise ValueError(e)
            return batch
        ops = {tirx.Add: lambda a, b: a + b, tirx.Sub: lambda a, b: a - b, tirx.Mul: lambda a, b: a * b,
               tirx.FloorDiv: lambda a, b: a // b, tirx.FloorMod: lambda a, b: a % b, tirx.Min: min, tirx.Max: max}
        if type(e) not in ops:
            raise ValueError(e)
        return ops[type(e)](ev(e.a, batch), ev(e.b, batch))

    try:
        return max(math.prod(ev(d, b) for d in shape) for b in range(1, limit + 1))
    except ValueError:
        return None


def lift_workspace(func: tirx.PrimFunc) -> tuple[tirx.PrimFunc, int, str] | None:
    """`func` with its global buffers (all in bounded buckets) as views of one extra last parameter ->
    (function, the parameter's elements, its dtype); None if there are none or one cannot be bounded."""
    found = workspace_buffers(func)
    buckets = [i for _, i, _ in found]
    if not found or any(bound is None for _, _, bound in found) or len(set(buckets)) != len(buckets):
        return None  # (two buffers of one bucket would need offsets: dense_tail's split makes one)
    dtypes = {str(buf.dtype) for buf, _, _ in found}
    sizes = [_elements(buf.shape, bound) for buf, _, bound in found]
    if len(dtypes) != 1 or any(s is None for s in sizes):
        return None
    dtype, total = dtypes.pop(), max(sizes)
    ws = tirx.decl_buffer((total,), dtype, PARAM, scope="global", layout=None)  # as the layers' own parameters
    lifted = [buf for buf, _, _ in found]

    def block(b):
        gone = [x for x in b.alloc_buffers if any(x.same_as(g) for g in lifted)]
        if not gone:
            return b
        keep = [x for x in b.alloc_buffers if not any(x.same_as(g) for g in gone)]
        # every bucket's view starts at the parameter's start: the buckets never run together
        views = [tirx.DeclBuffer(g, data=tirx.buffer_data(ws)) for g in gone]
        return SBlock(b.iter_vars, b.reads, b.writes, b.name_hint, tirx.SeqStmt(views + [b.body]), b.init, keep,
                      b.match_buffers, b.annotations)

    body = tvm_ffi.structural_map(func.body, [(SBlock, block)])
    return tirx.PrimFunc(list(func.params) + [ws], body, func.ret_type, func.attrs, func.span), total, dtype


@relax.expr_functor.mutator
class _ExtraOutput(relax.PyExprMutator):
    """call_tir(gv, args, out) -> call_tir(gv', args, [out, partial sums])[0] for the lifted layers (gv': the
    layer's new GlobalVar, typed with its extra parameter)."""

    def __init__(self, mod: tvm.IRModule, lifted: dict) -> None:
        super().__init__(mod)
        self.lifted = lifted  # {old GlobalVar: (new GlobalVar, elements, dtype)}

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not (call.op.same_as(_CALL_TIR) and call.args[0] in self.lifted):
            return call
        gv, total, dtype = self.lifted[call.args[0]]
        out = call.ty_args[0]
        outs = list(out.fields) if isinstance(out, relax.TupleType) else [out]
        both = self.builder_.emit(relax.call_tir(gv, list(call.args[1].fields),
                                                 outs + [relax.TensorType([total], dtype)]), "with_partial_sums")
        if len(outs) == 1:
            return relax.TupleGetItem(both, 0)
        return relax.Tuple([relax.TupleGetItem(both, i) for i in range(len(outs))])


def _only_called_by_call_tir(mod: tvm.IRModule) -> set:
    """GlobalVars that every Relax function of `mod` reaches only as call_tir's callee (one reached any other way
    keeps its signature)."""
    seen, called = {}, {}

    def visit(e):
        if isinstance(e, tvm.ir.GlobalVar):
            seen[e] = seen.get(e, 0) + 1
        elif isinstance(e, relax.Call) and e.op.same_as(_CALL_TIR):
            called[e.args[0]] = called.get(e.args[0], 0) + 1

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return {gv for gv, n in called.items() if seen.get(gv) == n}


def lift_partial_sums(mod: tvm.IRModule) -> tvm.IRModule:
    """Every dispatched layer of `mod` whose global buffers can be bounded gets them as an output (module doc)."""
    from ..schedules.dense_tail import DENSE_ATTR

    callees = _only_called_by_call_tir(mod)
    updates = {}
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc) and func.attrs is not None and DENSE_ATTR in func.attrs and gv in callees:
            got = lift_workspace(func)
            if got is not None:
                updates[gv] = got
    if not updates:
        return mod
    from .. import config

    config.log(f"split-K partial sums planned by Relax: {', '.join(sorted(gv.name_hint for gv in updates))}")
    # new GlobalVars (the builder types them): a GlobalVar keeps the type of the function it was made for, and the
    # call's arity is checked against it once call_tir is lowered
    mutator = _ExtraOutput(tvm.IRModule({gv: f for gv, f in mod.functions_items() if gv not in updates},
                                        attrs=mod.attrs), {})
    for gv, (func, total, dtype) in updates.items():
        mutator.lifted[gv] = (mutator.builder_.add_func(func, gv.name_hint), total, dtype)
    out = mutator.builder_.get()
    for gv, func in list(out.functions_items()):
        if isinstance(func, relax.Function):
            new = mutator.visit_expr(func)
            if not new.same_as(func):
                mutator.builder_.update_func(gv, new)
    return mutator.builder_.get()


@tvm.transform.module_pass(opt_level=0, name="recom_tvm.LiftPartialSums")
def LiftPartialSums(mod: tvm.IRModule, _ctx) -> tvm.IRModule:  # noqa: N802 - a pass, named like TVM's
    return lift_partial_sums(mod)
