"""tirx PrimExpr <-> SymEngine, for the algebra TVM's analyzer does not do (polynomial expansion, cancellation).

TVM's `tvm.sym.Analyzer` canonicalizes linear forms but does not expand products of sums nor cancel common
factors through division (it cannot assume a divisor is non-zero). SymEngine does both. Every cancellation
through a symbolic divisor is returned as an *assumption* (`divisor != 0`); callers turn assumptions into
host-side checks evaluated before launch (see `recom_tvm.shapes.assertions`), so nothing is assumed silently.
"""

from __future__ import annotations

import symengine as se
import tvm
from tvm import tirx

from .symbolic import analyzer, as_expr, is_prim


class Unsupported(Exception):
    """The expression uses an operation the bridge does not translate."""


class Bridge:
    """Converts between the two worlds, remembering which tirx Var each SymEngine symbol stands for."""

    def __init__(self) -> None:
        self.vars: dict[str, tirx.Var] = {}
        self.assumptions: list = []  # tirx conditions the conversion relied on (divisors != 0)

    # ----------------------------------------------------------------------------------------- to SymEngine
    def to_se(self, e):
        if not is_prim(e):
            return se.Integer(int(e))
        if isinstance(e, tirx.IntImm):
            return se.Integer(int(e.value))
        if isinstance(e, tirx.Var):
            prev = self.vars.setdefault(e.name, e)
            if not prev.same_as(e):
                raise Unsupported(f"two different symbols named {e.name!r}")
            return se.Symbol(e.name)
        if isinstance(e, tirx.Cast):
            return self.to_se(e.value)
        if isinstance(e, tirx.Add):
            return self.to_se(e.a) + self.to_se(e.b)
        if isinstance(e, tirx.Sub):
            return self.to_se(e.a) - self.to_se(e.b)
        if isinstance(e, tirx.Mul):
            return self.to_se(e.a) * self.to_se(e.b)
        if isinstance(e, (tirx.FloorDiv, tirx.FloorMod)):
            num, den = self.to_se(e.a), self.to_se(e.b)
            if not den.is_Number:
                self.assumptions.append(tirx.NE(e.b, tirx.const(0, e.b.ty.dtype)))
            ratio = se.expand(num / den)
            q = ratio if _is_integer_poly(ratio) else se.floor(ratio)  # exact division: no floor needed
            return q if isinstance(e, tirx.FloorDiv) else num - den * q
        if isinstance(e, tirx.Min):
            return se.Min(self.to_se(e.a), self.to_se(e.b))
        if isinstance(e, tirx.Max):
            return se.Max(self.to_se(e.a), self.to_se(e.b))
        raise Unsupported(type(e).__name__)

    # --------------------------------------------------------------------------------------- from SymEngine
    def from_se(self, x) -> tvm.ir.Expr:
        if x.is_Integer:
            return tirx.const(int(x), "int64")
        if x.is_Symbol:
            return self.vars[str(x)]
        if x.is_Add:
            out = None
            for arg in x.args:
                t = self.from_se(arg)
                out = t if out is None else out + t
            return out
        if x.is_Mul:
            coeff, rest = 1, []
            for arg in x.args:
                if arg.is_Number:
                    if not arg.is_Integer:
                        raise Unsupported(f"rational coefficient in {x}")
                    coeff *= int(arg)
                else:
                    rest.append(self.from_se(arg))
            out = tirx.const(coeff, "int64")
            for t in rest:
                out = t if (coeff == 1 and out is not None and isinstance(out, tirx.IntImm)
                            and out.value == 1) else out * t
            return out
        if x.is_Pow:
            base, exp = x.args
            if exp.is_Integer and int(exp) > 0:
                b = self.from_se(base)
                out = b
                for _ in range(int(exp) - 1):
                    out = out * b
                return out
            raise Unsupported(f"power {x}")
        name = type(x).__name__
        if name == "floor":
            inner = x.args[0]
            if _is_integer_poly(inner):
                return self.from_se(inner)
            num, den = inner.as_numer_denom()
            return tirx.floordiv(self.from_se(se.expand(num)), self.from_se(se.expand(den)))
        if name in ("Min", "Max"):
            args = [self.from_se(a) for a in x.args]
            out = args[0]
            for a in args[1:]:
                out = (tirx.min if name == "Min" else tirx.max)(out, a)
            return out
        raise Unsupported(f"{name}: {x}")


def _is_integer_poly(x) -> bool:
    """A polynomial in the symbols with integer coefficients (so it is an integer for integer symbols)."""
    if x.is_Integer or x.is_Symbol:
        return True
    if x.is_Add or x.is_Mul:
        return all(_is_integer_poly(a) for a in x.args)
    if x.is_Pow:
        return _is_integer_poly(x.args[0]) and x.args[1].is_Integer and int(x.args[1]) >= 0
    return False


def simplify(e) -> tuple[tvm.ir.Expr, list]:
    """Expand and cancel with SymEngine, then let TVM's analyzer tidy up.

    Returns (expression, assumptions): conditions (divisors != 0) the result relies on. Expressions the bridge
    cannot translate come back simplified by TVM's analyzer alone, with no assumptions.
    """
    e = as_expr(e)
    b = Bridge()
    try:
        out = b.from_se(se.expand(b.to_se(e)))
    except Unsupported:
        return analyzer().simplify(e), []
    return analyzer().simplify(analyzer().canonical_simplify(out)), b.assumptions


def prove_equal(a, b) -> tuple[bool, list]:
    """(True, assumptions) if a == b for all symbol values (under the assumptions)."""
    a, b = as_expr(a), as_expr(b)
    if analyzer().can_prove_equal(a, b):
        return True, []
    br = Bridge()
    try:
        diff = se.expand(br.to_se(a) - br.to_se(b))
    except Unsupported:
        return False, []
    return diff == 0, br.assumptions
