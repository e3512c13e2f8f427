"""A read-only view of one Relax function's dataflow: who binds what, who uses whom, through aliases."""

from __future__ import annotations

import tvm
from tvm import relax


def op_name(expr) -> str | None:
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return expr.op.name
    return None


def _key(var) -> int:
    return var.__hash__()


class DataflowView:
    def __init__(self, func: relax.Function) -> None:
        self.func = func
        self.values: dict[int, relax.Expr] = {}
        self.bindings: dict[int, relax.Binding] = {}
        self.order: list[relax.Binding] = []
        self.users: dict[int, list[relax.Binding]] = {}
        self.params = {_key(p) for p in func.params}
        for block in func.body.blocks:
            for b in block.bindings:
                self.values[_key(b.var)] = b.value
                self.bindings[_key(b.var)] = b
                self.order.append(b)
                for v in relax.analysis.free_vars(b.value):
                    self.users.setdefault(_key(v), []).append(b)
        self.outputs = {_key(v) for v in relax.analysis.free_vars(func.body.body)}

    def value(self, var) -> relax.Expr | None:
        return self.values.get(_key(var)) if isinstance(var, relax.Var) else None

    def resolve(self, expr) -> relax.Expr:
        """The defining expression behind var aliases and match_casts."""
        for _ in range(64):
            if not isinstance(expr, relax.Var):
                return expr
            v = self.values.get(_key(expr))
            if v is None:
                return expr
            expr = v
        return expr

    def root_var(self, expr):
        """The var at the end of an alias / match_cast chain (the var whose value is not a var)."""
        for _ in range(64):
            v = self.values.get(_key(expr)) if isinstance(expr, relax.Var) else None
            if not isinstance(v, relax.Var):
                return expr
            expr = v
        return expr

    def call(self, expr, name: str) -> relax.Call | None:
        """The call of op `name` defining `expr` (through aliases), else None."""
        e = self.resolve(expr)
        return e if op_name(e) == name else None

    def users_of(self, var) -> list[relax.Binding]:
        return self.users.get(_key(var), [])

    def is_param(self, var) -> bool:
        return isinstance(var, relax.Var) and _key(var) in self.params

    def aliases(self, var) -> list:
        """var and every var bound to it directly or by match_cast (transitively)."""
        out, stack = [], [var]
        while stack:
            v = stack.pop()
            out.append(v)
            for b in self.users_of(v):
                if isinstance(b.value, relax.Var) and b.value.same_as(v):
                    stack.append(b.var)
        return out

    def all_users(self, var) -> list[relax.Binding]:
        """Users of var or of any alias of it, aliases themselves excluded."""
        out = []
        for a in self.aliases(var):
            for b in self.users_of(a):
                if not (isinstance(b.value, relax.Var) and b.value.same_as(a)):
                    out.append(b)
        return out
