"""ResolveShapes: symbols that a match_cast binds to an already-known shape become that shape.

The importer gives every data-dependent dim a fresh symbol (`Where_count`, `SparseFillEmptyRows_0`, ...) bound by
`match_cast`. Once a rewrite makes such a value's shape known (say `nnz_x` after a proven filter disappears), the
symbol is an alias: this pass substitutes it everywhere, and drops match_casts whose target is provably the
value's own shape. What is left of a match_cast is a real run-time check (TF requires those shapes to agree).
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx

from ..shapes import symengine_bridge
from ._util import copy_attrs
from ..shapes.symbolic import analyzer


def _shape_dims(ty):
    if isinstance(ty, relax.TensorType):
        return None if ty.shape is None else list(ty.shape.values)
    if isinstance(ty, relax.ShapeType):
        return None if ty.values is None else list(ty.values)
    return None


def _collect_substitutions(func: relax.Function) -> dict:
    defined = set()
    for p in func.params:
        for d in _shape_dims(p.ty) or []:
            if isinstance(d, tirx.Var):
                defined.add(d.name)
    subst: dict = {}
    for block in func.body.blocks:
        for b in block.bindings:
            if not isinstance(b, relax.MatchCast):
                continue
            src = _shape_dims(b.value.ty)
            dst = _shape_dims(b.ty)
            if src is None or dst is None or len(src) != len(dst):
                for d in dst or []:
                    if isinstance(d, tirx.Var):
                        defined.add(d.name)
                continue
            for s, d in zip(src, dst):
                if isinstance(d, tirx.Var) and d.name not in defined and d.name not in {k.name for k in subst}:
                    subst[d] = s
            for d in dst:
                if isinstance(d, tirx.Var):
                    defined.add(d.name)
    return subst


def _same_shape(a, b) -> bool:
    da, db = _shape_dims(a), _shape_dims(b)
    if da is None or db is None or len(da) != len(db):
        return False
    return all(symengine_bridge.prove_equal(x, y)[0] for x, y in zip(da, db))


@relax.expr_functor.mutator
class _DropTrivialMatchCasts(relax.PyExprMutator):
    def visit_match_cast_(self, binding: relax.MatchCast) -> None:
        value = self.visit_expr(binding.value)
        if _same_shape(value.ty, binding.ty) and str(getattr(value.ty, "dtype", "")) == str(
                getattr(binding.ty, "dtype", "")):
            self.set_var_remap(binding.var, value if isinstance(value, relax.Var) else self.builder_.emit(value))
            return
        super().visit_match_cast_(binding)


@tvm.ir.transform.module_pass(opt_level=0, name="ResolveShapes")
class ResolveShapes:
    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        updates = {}
        for gv, func in mod.functions_items():
            if not isinstance(func, relax.Function):
                continue
            for _ in range(8):  # substitutions can expose more (a resolved shape feeds a later match_cast)
                subst = _collect_substitutions(func)
                if not subst:
                    break
                func = func.bind_symbolic_vars({k: analyzer().simplify(v) for k, v in subst.items()})
            updates[gv] = func
        for gv, func in updates.items():
            mod[gv] = func
        mutator = _DropTrivialMatchCasts(mod)
        for gv, func in updates.items():
            mutator.builder_.update_func(gv, mutator.visit_expr(func))
        return copy_attrs(mod, mutator.builder_.get())
