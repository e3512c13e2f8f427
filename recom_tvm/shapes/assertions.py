"""tirx conditions -> the JSON assertions the runtime checks before launch (recom_tvm.runtime.assertions)."""

from __future__ import annotations

from tvm import tirx

from .symbolic import is_prim

_BIN = {tirx.Add: "add", tirx.Sub: "sub", tirx.Mul: "mul", tirx.FloorDiv: "floordiv", tirx.FloorMod: "floormod",
        tirx.Min: "min", tirx.Max: "max", tirx.EQ: "eq", tirx.NE: "ne", tirx.LT: "lt", tirx.LE: "le",
        tirx.GT: "gt", tirx.GE: "ge", tirx.And: "and", tirx.Or: "or"}


def to_ast(e) -> list:
    if not is_prim(e):
        return ["int", int(e)]
    if isinstance(e, tirx.IntImm):
        return ["int", int(e.value)]
    if isinstance(e, tirx.Var):
        return ["var", e.name]
    if isinstance(e, tirx.Cast):
        return to_ast(e.value)
    if isinstance(e, tirx.Not):
        return ["not", to_ast(e.a)]
    for cls, name in _BIN.items():
        if isinstance(e, cls):
            return [name, to_ast(e.a), to_ast(e.b)]
    raise ValueError(f"cannot express {e} as a host-side assertion")


def assertion(cond, message: str) -> dict:
    return {"expr": to_ast(cond), "message": message}
