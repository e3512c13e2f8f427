"""Running one counting Relax mutator over every Relax function of a module: the body of the call-rewriting passes
(a PyExprMutator subclass whose `count` says how many calls it rewrote)."""

from __future__ import annotations

import tvm
from tvm import relax


def mutate_functions(mod: tvm.IRModule, mutator_cls) -> tvm.IRModule:
    """`mutator_cls(mod)` over each Relax function; `mod` itself where nothing was rewritten (no new module, so
    passes that key caches on the module object keep them)."""
    mutator = mutator_cls(mod)
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(gv, mutator.visit_expr(func))
    return mutator.builder_.get() if mutator.count else mod


def rewrite_calls(mod: tvm.IRModule, ops, rewrite) -> tvm.IRModule:
    """Each call to one of the Relax `ops` (names, after its arguments are rewritten) replaced by
    `rewrite(call, builder)` where that returns an expression (None: left as it is)."""

    @relax.expr_functor.mutator
    class _Calls(relax.PyExprMutator):
        def __init__(self, m: tvm.IRModule) -> None:
            super().__init__(m)
            self.count = 0

        def visit_call_(self, call: relax.Call) -> relax.Expr:
            call = super().visit_call_(call)
            if not isinstance(call.op, tvm.ir.Op) or call.op.name not in ops:
                return call
            new = rewrite(call, self.builder_)
            if new is None:
                return call
            self.count += 1
            return new

    return mutate_functions(mod, _Calls)
