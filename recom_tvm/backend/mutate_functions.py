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
