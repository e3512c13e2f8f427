"""The tensors one request allocates on the device, as size expressions the runtime evaluates (memory report)."""

from __future__ import annotations

import tvm
from tvm import relax

from .shapes.assertions import to_ast


def workspace_entries(mod: tvm.IRModule) -> list[dict]:
    """{"shape": [AST], "dtype"} of main's tensor inputs (but parameters) and of every tensor it binds."""
    func = mod["main"]
    nparams = len(func.params)
    num_input = int(func.attrs["num_input"]) if func.attrs is not None and "num_input" in func.attrs else nparams
    out: list[dict] = []

    def add(ty) -> None:
        if isinstance(ty, relax.TupleType):
            for f in ty.fields:
                add(f)
        elif isinstance(ty, relax.TensorType) and ty.shape is not None and str(ty.dtype) not in ("", "void"):
            try:
                out.append({"shape": [to_ast(d) for d in ty.shape.values], "dtype": str(ty.dtype)})
            except ValueError:  # a size the runtime cannot evaluate: left out (the report says "upper bound")
                pass

    for p in func.params[:num_input]:
        add(p.ty)

    def visit(e) -> None:
        if isinstance(e, relax.SeqExpr):
            for block in e.blocks:
                for b in block.bindings:
                    value = getattr(b, "value", None)  # a match_cast only re-types an existing tensor
                    if isinstance(b, relax.VarBinding) and isinstance(value, relax.Call):
                        add(b.var.ty)

    visit(func.body)
    return out
