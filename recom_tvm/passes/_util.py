"""Small helpers shared by the passes."""

from __future__ import annotations

import tvm

from ..module_spec import attach_spec, spec_of  # noqa: F401  (re-exported for the passes)


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
