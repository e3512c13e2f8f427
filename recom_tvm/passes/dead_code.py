"""RemoveDeadCode: drop bindings nothing live reads, dead match_casts included.

TVM's DeadCodeElimination keeps every match_cast (it may fail at run time). The importer's match_casts only
bind the symbols of data-dependent shapes; once a rewrite leaves such a value unused and no live code mentions
the symbols it defines, the match_cast checks nothing TF would check, and it keeps the dead chain (and its
device->host syncs) alive. One reverse liveness sweep handles both; the function is rebuilt from the kept
bindings directly (no re-normalization), so the pass stays linear on models with tens of thousands of ops.
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx

from ..shapes.symbolic import is_prim
from ._util import copy_attrs


def _collect(e, names: set) -> None:
    if isinstance(e, tirx.Var):
        names.add(e.name)
        return
    for attr in ("a", "b", "value", "condition", "true_value", "false_value"):
        sub = getattr(e, attr, None)
        if sub is not None and sub is not e and is_prim(sub):
            _collect(sub, names)


def _type_symbols(ty, names: set) -> None:
    if isinstance(ty, relax.TensorType) and ty.shape is not None:
        for d in ty.shape.values:
            _collect(d, names)
    elif isinstance(ty, relax.ShapeType) and ty.values is not None:
        for d in ty.values:
            _collect(d, names)
    elif isinstance(ty, relax.TupleType):
        for f in ty.fields:
            _type_symbols(f, names)


def _value_symbols(value, names: set) -> None:
    """Symbols a binding's value mentions outside its operands' types (ShapeExpr / PrimValue arguments)."""
    stack = [value]
    while stack:
        e = stack.pop()
        if isinstance(e, relax.ShapeExpr):
            for d in e.values:
                _collect(d, names)
        elif is_prim(e):
            _collect(e, names)
        elif isinstance(e, relax.Call):
            stack.extend(e.args)
            for t in getattr(e, "ty_args", None) or []:
                _type_symbols(t, names)
        elif isinstance(e, relax.Tuple):
            stack.extend(e.fields)
        elif isinstance(e, relax.TupleGetItem):
            stack.append(e.tuple_value)


def remove_dead(func: relax.Function) -> tuple[relax.Function, int]:
    """(function without dead bindings, number removed)."""
    used_vars = {v.__hash__() for v in relax.analysis.free_vars(func.body.body)}
    used_syms: set = set()
    _type_symbols(func.ret_ty, used_syms)
    _value_symbols(func.body.body, used_syms)
    kept_blocks, removed = [], 0
    for block in reversed(list(func.body.blocks)):
        kept = []
        for b in reversed(list(block.bindings)):
            live = b.var.__hash__() in used_vars or not isinstance(block, relax.DataflowBlock)
            if not live and isinstance(b, relax.MatchCast):
                defined: set = set()
                _type_symbols(b.ty, defined)
                live = bool(defined & used_syms)
            if not live:
                removed += 1
                continue
            kept.append(b)
            for v in relax.analysis.free_vars(b.value):
                used_vars.add(v.__hash__())
            _type_symbols(b.var.ty, used_syms)
            _value_symbols(b.value, used_syms)
            if isinstance(b, relax.MatchCast):
                _type_symbols(b.value.ty, used_syms)
        kept.reverse()
        cls = relax.DataflowBlock if isinstance(block, relax.DataflowBlock) else relax.BindingBlock
        kept_blocks.append(cls(kept))
    if not removed:
        return func, 0
    kept_blocks.reverse()
    body = relax.BlockBuilder().normalize(relax.SeqExpr(kept_blocks, func.body.body))
    return relax.Function(func.params, body, func.ret_ty, func.is_pure, func.attrs, func.span), removed


@tvm.ir.transform.module_pass(opt_level=0, name="RemoveDeadCode")
class RemoveDeadCode:
    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        updates = {}
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                new, removed = remove_dead(func)
                if removed:
                    updates[gv] = new
        if not updates:
            return mod
        out = tvm.IRModule(dict(mod.functions_items()))
        for gv, func in updates.items():
            out[gv] = func
        return copy_attrs(mod, out)
