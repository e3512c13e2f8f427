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
from ._util import attach_spec, copy_attrs, param_symbols, spec_of, sync_input_shapes
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
    first_cast: dict = {}  # value var -> the dims its first match_cast gave it
    for block in func.body.blocks:
        for b in block.bindings:
            if not isinstance(b, relax.MatchCast):
                continue
            src = _shape_dims(b.value.ty)
            dst = _shape_dims(b.ty)
            if src is None and dst is not None and isinstance(b.value, relax.Var):
                # the same unknown-shaped value cast twice (two TF nodes reading one Where): one set of symbols
                prev = first_cast.setdefault(b.value, dst)
                if prev is not dst and len(prev) == len(dst):
                    src = prev
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
    """Also drops reshapes to the shape the tensor already has."""

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        value = binding.value
        if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name == "relax.reshape" \
                and isinstance(binding.var, relax.DataflowVar):
            src = self.visit_expr(value.args[0])
            if isinstance(src, relax.Var) and _same_shape(src.ty, binding.var.ty):
                self.set_var_remap(binding.var, src)
                return None
        return super().visit_var_binding_(binding)

    def visit_match_cast_(self, binding: relax.MatchCast) -> None:
        value = self.visit_expr(binding.value)
        if _same_shape(value.ty, binding.ty) and str(getattr(value.ty, "dtype", "")) == str(
                getattr(binding.ty, "dtype", "")):
            self.set_var_remap(binding.var, value if isinstance(value, relax.Var) else self.builder_.emit(value))
            return
        super().visit_match_cast_(binding)


def _asserted_equal_inputs(spec, func) -> dict:
    """Input symbols the host asserts equal (e.g. two features' batch sizes meeting in a concat): b -> a, every
    dropped symbol mapped to its class's one kept symbol.

    A union-find, so the result does not depend on the assertions' order: with a map built greedily, `u == t`
    then `t == q` left u -> t and t -> q, and bind_symbolic_vars (simultaneous, not transitive) put `t` back
    where `u` was: two batch symbols in one concat (a write_slice whose in-place output is [t, w] and its
    input [q, w], rejected by TVM's call_tir_inplace check at build time)."""
    if spec is None:
        return {}
    syms = param_symbols(func)
    parent: dict[str, str] = {}

    def root(n: str) -> str:
        while parent.get(n, n) != n:
            n = parent[n]
        return n

    for a in spec.assertions:
        e = a["expr"]
        if e[0] == "eq" and e[1][0] == "var" and e[2][0] == "var":
            drop, keep = e[1][1], e[2][1]  # the concat's reference symbol stays
            if drop in syms and keep in syms and root(drop) != root(keep):
                parent[root(drop)] = root(keep)
    return {name: syms[root(name)] for name in parent if root(name) != name}


def _rename(assertions: list[dict], names: dict[str, str]) -> list[dict]:
    """Rename merged symbols in host assertions; equalities that became `a == a` are dropped (the runtime
    checks that every input agrees on a shared symbol)."""
    def ren(ast):
        if ast[0] == "var":
            return ["var", names.get(ast[1], ast[1])]
        if ast[0] == "int":
            return ast
        return [ast[0]] + [ren(a) for a in ast[1:]]

    out = []
    for a in assertions:
        e = ren(a["expr"])
        if e[0] == "eq" and e[1] == e[2]:
            continue
        out.append({**a, "expr": e})
    return out


@tvm.ir.transform.module_pass(opt_level=0, name="ResolveShapes")
class ResolveShapes:
    """Also merges input symbols the host asserts equal, so one batch symbol serves the whole model."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        spec = spec_of(mod)
        updates = {}
        for gv, func in mod.functions_items():
            if not isinstance(func, relax.Function):
                continue
            merged = _asserted_equal_inputs(spec, func)
            if merged:
                func = func.bind_symbolic_vars(merged)
                sync_input_shapes(func, spec)
                spec.assertions = _rename(spec.assertions, {k: v.name for k, v in merged.items()})
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
        out = mutator.builder_.get()
        if spec is not None:
            out = attach_spec(out, spec)
        return copy_attrs(mod, out)
