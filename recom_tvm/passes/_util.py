"""Small helpers shared by the passes."""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import tirx

from ..module_spec import attach_spec, spec_of  # noqa: F401  (re-exported for the passes)
from ..shapes.symbolic import analyzer


def copy_attrs(src: tvm.IRModule, dst: tvm.IRModule) -> tvm.IRModule:
    """Carry module attributes (the serving spec) across a pass that rebuilt the module."""
    if src.attrs is None:
        return dst
    for key in src.attrs.keys():
        if dst.attrs is None or key not in dst.attrs:
            dst = dst.with_attr(key, src.attrs[key])
    return dst


def param_symbols(func) -> dict:
    """name -> tirx.Var of the symbols defined by the function's parameter types."""
    from tvm import relax, tirx

    out = {}
    for p in func.params:
        ty = p.ty
        dims = (ty.shape.values if isinstance(ty, relax.TensorType) and ty.shape is not None else
                ty.values if isinstance(ty, relax.ShapeType) and ty.values is not None else [])
        for d in dims:
            if isinstance(d, tirx.Var):
                out.setdefault(d.name, d)
    return out


def sync_input_shapes(func, spec) -> None:
    """Refresh the spec's module-input shapes from the function's parameter types (after symbol substitution)."""
    from tvm import relax

    from ..shapes.symbolic import dim_str

    by_name = {p.name: p for p in func.params}
    for inp in spec.module_inputs:
        p = by_name.get(inp["name"])
        if p is None:
            continue
        ty = p.ty
        dims = ty.values if isinstance(ty, relax.ShapeType) else ty.shape.values
        inp["shape"] = [dim_str(d) for d in dims]


# ------------------------------------------------------------- mask terms (fuse_columns, eliminate_redundancy)
def strip_simplified(e):
    """A PrimExpr simplified, without its outer casts."""
    e = analyzer().simplify(e)
    while isinstance(e, tirx.Cast):
        e = e.value
    return e


def conjuncts(e) -> list:
    """The terms of a mask expression's top-level `and`s."""
    e = strip_simplified(e)
    if isinstance(e, tirx.And):
        return conjuncts(e.a) + conjuncts(e.b)
    return [e]


def positive_test(t, x) -> bool:
    """Is t `x > 0` (or `0 < x`), x a float load?"""
    import tvm_ffi
    def zero(e) -> bool:
        e = strip_simplified(e)
        return isinstance(e, tirx.FloatImm) and e.value == 0

    if isinstance(t, tirx.GT):
        return bool(tvm_ffi.structural_equal(strip_simplified(t.a), x)) and zero(t.b)
    if isinstance(t, tirx.LT):
        return zero(t.a) and bool(tvm_ffi.structural_equal(strip_simplified(t.b), x))
    return False
