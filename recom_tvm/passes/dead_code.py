"""RemoveDeadCode: TVM's DeadCodeElimination, plus dead match_casts.

TVM's DCE keeps every match_cast (it may fail at run time). The importer's match_casts only bind the symbols of
data-dependent shapes; once a rewrite leaves the value unused and no live code mentions the symbols it
defines, the match_cast checks nothing TF would check, and it keeps the dead chain (and its device->host
syncs) alive. This pass removes such match_casts, then runs TVM's DCE, until nothing changes.
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx

from ._util import copy_attrs


def _symbols(ty) -> set[str]:
    names: set[str] = set()
    if isinstance(ty, relax.TensorType) and ty.shape is not None:
        dims = ty.shape.values
    elif isinstance(ty, relax.ShapeType) and ty.values is not None:
        dims = ty.values
    elif isinstance(ty, relax.TupleType):
        for f in ty.fields:
            names |= _symbols(f)
        return names
    else:
        return names
    for d in dims:
        _collect(d, names)
    return names


def _collect(e, names: set) -> None:
    if isinstance(e, tirx.Var):
        names.add(e.name)
        return
    for attr in ("a", "b", "value", "condition", "true_value", "false_value"):
        sub = getattr(e, attr, None)
        if isinstance(sub, tvm.ir.Expr) and sub is not e:
            _collect(sub, names)


def _dead_match_casts(func: relax.Function) -> set[int]:
    used: set[int] = set()
    live_symbols: set[str] = set()
    for p in func.params:
        live_symbols |= _symbols(p.ty)
    bindings = [b for block in func.body.blocks for b in block.bindings]
    for b in bindings:
        for v in relax.analysis.free_vars(b.value):
            used.add(v.__hash__())
    for v in relax.analysis.free_vars(func.body.body):
        used.add(v.__hash__())
    defined_by: dict[int, set[str]] = {}
    for b in bindings:
        if isinstance(b, relax.MatchCast):
            defined_by[b.var.__hash__()] = _symbols(b.ty) - _symbols(b.value.ty)
        else:
            live_symbols |= _symbols(b.var.ty) if b.var.__hash__() in used else set()
    live_symbols |= _symbols(func.ret_ty) if hasattr(func, "ret_ty") else set()
    dead = set()
    for b in bindings:
        if isinstance(b, relax.MatchCast) and b.var.__hash__() not in used:
            if not (defined_by[b.var.__hash__()] & live_symbols):
                dead.add(b.var.__hash__())
    return dead


@relax.expr_functor.mutator
class _Drop(relax.PyExprMutator):
    def __init__(self, mod, dead: set[int]) -> None:
        super().__init__(mod)
        self.dead = dead

    def visit_match_cast_(self, binding: relax.MatchCast) -> None:
        if binding.var.__hash__() in self.dead:
            return None
        return super().visit_match_cast_(binding)


@tvm.ir.transform.module_pass(opt_level=0, name="RemoveDeadCode")
class RemoveDeadCode:
    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        out = mod
        for _ in range(16):
            out = copy_attrs(mod, relax.transform.DeadCodeElimination()(out))
            changed = False
            for gv, func in out.functions_items():
                if not isinstance(func, relax.Function):
                    continue
                dead = _dead_match_casts(func)
                if dead:
                    mutator = _Drop(out, dead)
                    mutator.builder_.update_func(gv, mutator.visit_expr(func))
                    out = copy_attrs(out, mutator.builder_.get())
                    changed = True
            if not changed:
                break
        return out
