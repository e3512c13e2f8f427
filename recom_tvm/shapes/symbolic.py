"""Small helpers over TVM's symbolic integer expressions (tirx PrimExpr) shared by importer and passes."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import tirx

_ANALYZER = None


def analyzer() -> tvm.sym.Analyzer:
    global _ANALYZER
    if _ANALYZER is None:
        _ANALYZER = tvm.sym.Analyzer()
    return _ANALYZER


def is_prim(x) -> bool:
    """True for TIR integer/float expressions (in TVM 0.27 Relax and TIR share one Expr/Var class)."""
    return isinstance(x, tvm.ir.Expr) and isinstance(getattr(x, "ty", None), tvm.ir.PrimType)


def is_tensor_const(x) -> bool:
    """A Relax tensor constant (TVM 0.27: tvm.ir.GenericConst; IntImm is a Constant too)."""
    return isinstance(x, tvm.ir.GenericConst)


def const_array(x) -> np.ndarray:
    return x.value.numpy()


def declare_size(var) -> None:
    """Tell the analyzer a symbol is a size (>= 0), so max(0, n) and friends simplify."""
    analyzer().update(var, tvm.sym.ConstIntBound(0, tvm.sym.ConstIntBound.POS_INF), True)


def dtype_of(e) -> str:
    return str(e.ty.dtype)


def as_expr(v) -> tvm.ir.Expr:
    """Python int or PrimExpr -> int64 PrimExpr."""
    if not is_prim(v):
        return tirx.const(int(v), "int64")
    if dtype_of(v) != "int64":
        return tirx.Cast("int64", v)
    return v


def is_const_int(v) -> bool:
    if is_prim(v):
        return isinstance(v, tirx.IntImm)
    return isinstance(v, (int, np.integer, np.bool_))


def simplify(v):
    """Simplify a PrimExpr; return a Python int when it is constant."""
    if not is_prim(v):
        return int(v)
    s = analyzer().simplify(v)
    return int(s.value) if isinstance(s, tirx.IntImm) else s


def prove_equal(a, b) -> bool:
    """True when a == b holds for every value of the symbols."""
    if is_const_int(a) and is_const_int(b):
        return int(a) == int(b)
    return bool(analyzer().can_prove_equal(as_expr(a), as_expr(b)))


def const_value(v) -> int | None:
    """The integer value of v if it is (or simplifies to) a constant, else None."""
    s = simplify(v)
    return s if isinstance(s, int) else None


def dim_str(v) -> str:
    """A dim for JSON / messages: '8' for constants, the expression text otherwise."""
    c = const_value(v) if is_prim(v) or is_const_int(v) else None
    return str(c) if c is not None else str(v)
