"""Keep every storage of `main` alive until the caller has synchronised its stream, so that VMs serving requests
at once may each run on a CUDA stream of their own.

Why: TVM's VM frees a storage at its last use (KillAfterLastUse): the buffer goes back to the device's pooled
allocator, which every VM of the process shares and which knows nothing of streams. On one stream that is safe
(whatever the next kernel writes into the buffer is queued after the kernels that read it). With a stream per VM
it is not: a buffer freed while its kernels are still queued on one stream can be handed to another VM, whose
kernels on another stream then write it at the same time. So `main` keeps its storages instead:

    main(args) -> (outputs, (storage, storage1, ...))       # no R.memory.kill_storage left

and the runtime drops the tuple once the request's stream is synchronised (runtime/request_slots.Slot.call). The
memory a request holds grows from the storages live at once to all of them (planned storage is already shared
between the tensors whose lifetimes do not overlap, StaticPlanBlockMemory); kills of tensors stay (a tensor holds
its storage, the storage holds the memory).

The module gets a marker function, KEEP_STORAGE_ABI, whose presence tells the runtime that `main` returns the
tuple (an old export without it is called as before, on the shared stream). Declined, module unchanged, where a
storage is allocated inside a branch (R.If): the tuple could not name it. The CUDA-graph variant's dispatching
`main` is such a function, so models built with graphs keep one shared stream. Declined too above MAX_STORAGES
storages: an imported (unfused) model allocates one per op output (demo: 154, optimized 6; model E imported:
thousands), and holding all of them to the end would multiply its memory per request; such a model shares one
stream, as before.
Runs right after KillAfterLastUse.
"""

from __future__ import annotations

import tvm
from tvm import relax

from ..runtime.abi import KEEP_STORAGE_ABI  # marker function: main returns (outputs, storages)

MAX_STORAGES = 256  # more: keep TVM's frees (and one shared stream), see above
_ALLOC = tvm.ir.Op.get("relax.memory.alloc_storage")
_KILL = tvm.ir.Op.get("relax.memory.kill_storage")


def _is_call(expr, op) -> bool:
    return isinstance(expr, relax.Call) and expr.op.same_as(op)


def _nested_storage(func: relax.Function) -> bool:
    """Whether a storage is allocated inside a branch (anywhere below the function's top-level bindings)."""
    found = []

    def visit(expr):
        if isinstance(expr, relax.If):
            relax.analysis.post_order_visit(expr.true_branch, lambda e: found.append(_is_call(e, _ALLOC)))
            relax.analysis.post_order_visit(expr.false_branch, lambda e: found.append(_is_call(e, _ALLOC)))

    relax.analysis.post_order_visit(func.body, visit)
    return any(found)


def keep_storage(func: relax.Function) -> relax.Function | None:
    """`func` returning (its result, its storages), their kills removed; None where it cannot (a storage allocated
    in a branch), need not (no storage) or should not (more than MAX_STORAGES)."""
    body = func.body
    if not isinstance(body, relax.SeqExpr) or _nested_storage(func):
        return None
    storages, blocks = [], []
    for block in body.blocks:
        bindings = []
        for b in block.bindings:
            value = getattr(b, "value", None)
            if _is_call(value, _KILL):
                continue
            if isinstance(b, relax.VarBinding) and _is_call(value, _ALLOC):
                storages.append(b.var)
            bindings.append(b)
        blocks.append(relax.DataflowBlock(bindings) if isinstance(block, relax.DataflowBlock)
                      else relax.BindingBlock(bindings))
    if not storages or len(storages) > MAX_STORAGES:
        return None
    keep = relax.Var("recom_tvm_storages", relax.TupleType([s.ty for s in storages]))
    ret_ty = relax.TupleType([func.ret_ty, keep.ty])
    ret = relax.Var("recom_tvm_result", ret_ty)
    tail = [relax.VarBinding(keep, relax.Tuple(storages)), relax.VarBinding(ret, relax.Tuple([body.body, keep]))]
    if blocks and not isinstance(blocks[-1], relax.DataflowBlock):  # after ToNonDataflow: the one block
        blocks[-1] = relax.BindingBlock(list(blocks[-1].bindings) + tail)
    else:
        blocks.append(relax.BindingBlock(tail))
    new = relax.Function(func.params, relax.SeqExpr(blocks, ret), ret_ty, func.is_pure, func.attrs, func.span)
    return relax.BlockBuilder().normalize(new)  # types the new SeqExpr


def _marker() -> relax.Function:
    one = relax.prim_value(tvm.tirx.IntImm("int64", 1))
    func = relax.Function([], relax.SeqExpr([], one), tvm.ir.PrimType("int64"), True)
    return relax.BlockBuilder().normalize(func).with_attr("global_symbol", KEEP_STORAGE_ABI)


@tvm.transform.module_pass(opt_level=0, name="recom_tvm.KeepStorageUntilSync")
def KeepStorageUntilSync(mod: tvm.IRModule, _ctx) -> tvm.IRModule:  # noqa: N802 - a pass, named like TVM's
    """main returns its storages beside its outputs (see the module docstring)."""
    names = {gv.name_hint: gv for gv in mod.get_global_vars()}
    if "main" not in names or KEEP_STORAGE_ABI in names or not isinstance(mod["main"], relax.Function):
        return mod
    new = keep_storage(mod["main"])
    if new is None:
        return mod
    out = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
    out[names["main"]] = new
    out[tvm.ir.GlobalVar(KEEP_STORAGE_ABI)] = _marker()
    return out
