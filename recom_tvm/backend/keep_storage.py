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
tuple (an old export without it is called as before, on the shared stream). A branch (R.If: the CUDA-graph build's
dispatch on the batch) returns (result, its storages) from each side, unpacked after it (the sides' tuples differ:
R.Any there), and a function main calls that allocates (the graph variant, `main_cuda_graph`: its output's storage;
its intermediates are per-VM static storage already) returns its own pair, so graph builds get a stream per VM too
(2026-12-07; before, they shared the default stream). Declined, module unchanged, where a storage is allocated
where no binding names it, where such a callee has another caller, and above MAX_STORAGES storages: an imported
(unfused) model allocates one per op output (demo: 154, optimized 6; model E imported: thousands), and holding all
of them to the end would multiply its memory per request; such a model shares one stream, as before.
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


def _allocates(expr, pairs=()) -> bool:
    """Whether a storage is allocated anywhere in expr, or a function in `pairs` called."""
    found = []
    relax.analysis.post_order_visit(expr, lambda e: found.append(
        _is_call(e, _ALLOC) or (isinstance(e, relax.Call) and isinstance(e.op, relax.GlobalVar) and
                                e.op.name_hint in pairs)))
    return any(found)


def _unpack(bb: relax.BlockBuilder, var: relax.Var, value: relax.Expr) -> tuple[list, relax.Var]:
    """Bindings that evaluate `value` (a pair: result, storages) and bind its result to `var` -> (bindings,
    the storages' var)."""
    value = bb.normalize(value)
    pair = relax.Var(var.name + "_kept", value.ty)
    first = bb.normalize(relax.TupleGetItem(pair, 0))
    second = bb.normalize(relax.TupleGetItem(pair, 1))
    kept = relax.Var(var.name + "_storages", second.ty)
    return [relax.VarBinding(pair, value), relax.VarBinding(var, first), relax.VarBinding(kept, second)], kept


def _keep_seq(bb: relax.BlockBuilder, seq: relax.SeqExpr, pairs: dict) -> tuple[relax.SeqExpr, int] | None:
    """seq returning (its result, (its storages...)) -> (that SeqExpr, how many storages it allocates), or None
    where a storage is allocated somewhere this cannot name. Storages allocated at its top level are kept (their
    kills removed); a branch (R.If: the CUDA-graph dispatch) is kept the same way on each side and unpacked, as is
    a call of a function in `pairs` (name -> the GlobalVar of its version that returns its storages)."""
    storages, blocks, count = [], [], 0
    for block in seq.blocks:
        bindings = []
        for b in block.bindings:
            value = getattr(b, "value", None)
            if _is_call(value, _KILL):
                continue
            if isinstance(b, relax.VarBinding) and _is_call(value, _ALLOC):
                storages.append(b.var)
                count += 1
            elif isinstance(b, relax.VarBinding) and isinstance(value, relax.If) and _allocates(value, pairs):
                sides = [_keep_seq(bb, branch, pairs) for branch in (value.true_branch, value.false_branch)]
                if None in sides:
                    return None
                more, kept = _unpack(bb, b.var, relax.If(value.cond, sides[0][0], sides[1][0]))
                bindings += more
                storages.append(kept)
                count += max(sides[0][1], sides[1][1])
                continue
            elif isinstance(b, relax.VarBinding) and isinstance(value, relax.Call) and \
                    isinstance(value.op, relax.GlobalVar) and value.op.name_hint in pairs:
                more, kept = _unpack(bb, b.var, relax.Call(pairs[value.op.name_hint], value.args, value.attrs,
                                                           value.ty_args, value.span))
                bindings += more
                storages.append(kept)
                continue
            elif value is not None and _allocates(value, pairs):
                return None
            bindings.append(b)
        blocks.append(relax.DataflowBlock(bindings) if isinstance(block, relax.DataflowBlock)
                      else relax.BindingBlock(bindings))
    if _allocates(seq.body, pairs):
        return None
    keep = relax.Tuple(storages)
    tail = [relax.VarBinding(relax.Var("recom_tvm_storages", bb.normalize(keep).ty), keep)]
    result = relax.Tuple([seq.body, tail[0].var])
    tail.append(relax.VarBinding(relax.Var("recom_tvm_result", bb.normalize(result).ty), result))
    if blocks and not isinstance(blocks[-1], relax.DataflowBlock):  # after ToNonDataflow: the one block
        blocks[-1] = relax.BindingBlock(list(blocks[-1].bindings) + tail)
    else:
        blocks.append(relax.BindingBlock(tail))
    return relax.SeqExpr(blocks, tail[1].var), count


def keep_storage(func: relax.Function, pairs: dict | None = None) -> relax.Function | None:
    """`func` returning (its result, its storages), their kills removed; None where it cannot (a storage allocated
    where no binding names it), need not (no storage) or should not (more than MAX_STORAGES). pairs: functions
    `func` calls, by name, that return (result, storages) already -> their GlobalVars."""
    body = func.body
    bb = relax.BlockBuilder()
    kept = _keep_seq(bb, body, dict(pairs or {})) if isinstance(body, relax.SeqExpr) else None
    if kept is None or (not kept[1] and not pairs) or kept[1] > MAX_STORAGES:
        return None
    seq = kept[0]
    new = relax.Function(func.params, seq, seq.body.ty, func.is_pure, func.attrs, func.span)
    return bb.normalize(new)  # types the new SeqExpr


def _callees(func: relax.Function) -> list[str]:
    """The names of the global functions `func` calls directly."""
    names = []

    def visit(e):
        if isinstance(e, relax.Call) and isinstance(e.op, relax.GlobalVar) and e.op.name_hint not in names:
            names.append(e.op.name_hint)

    relax.analysis.post_order_visit(func.body, visit)
    return names


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
    changed = {}  # name -> (new GlobalVar, function): the CUDA-graph variant main dispatches to keeps its own
    called_elsewhere = None  # what the other functions call (once a callee needs it)
    for name in _callees(mod["main"]):
        callee = mod[names[name]]
        if isinstance(callee, relax.Function) and _allocates(callee.body):
            if called_elsewhere is None:
                called_elsewhere = {n for g, f in mod.functions_items() if g.name_hint != "main" and
                                    isinstance(f, relax.Function) for n in _callees(f)}
            new = keep_storage(callee)
            if new is None or name in called_elsewhere:
                return mod  # (another caller would see the old return type)
            gv = tvm.ir.GlobalVar(name)
            relax.expr._update_type(gv, new.ty)  # (a fresh GlobalVar: calls of it normalize to the pair)
            changed[name] = (gv, new)
    new = keep_storage(mod["main"], {name: gv for name, (gv, _) in changed.items()})
    if new is None:
        return mod
    funcs = {gv: f for gv, f in mod.functions_items() if gv.name_hint not in changed}
    funcs.update({gv: f for gv, f in changed.values()})
    out = tvm.IRModule(funcs, attrs=mod.attrs)
    out[names["main"]] = new
    out[tvm.ir.GlobalVar(KEEP_STORAGE_ABI)] = _marker()
    return out
