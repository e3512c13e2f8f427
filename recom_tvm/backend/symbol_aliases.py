"""Alias symbols substituted, first in the build pipeline: TVM's CanonicalizeBindings (run inside FuseTIR on CUDA
and KillAfterLastUse on every target) would otherwise leave a symbol used after it removed the match_cast defining
it.

An alias: a symbol a match_cast defines (its first definition) as a dim the cast value already has. The importer
gives every data-dependent dim a fresh symbol (`Where_count`, ...); once recom's ops are legalized, the value has a
symbol of its own (`where_count`, from the op's lowering), and the importer's cast only renames it.

Why: CanonicalizeBindings substitutes, in the bindings after each match_cast, the values it implies for the
target's symbols, and drops the casts that become trivial. In `lv36: (Where_count, 1) = match_cast(lv35:
(where_count, 1))` it takes `Where_count -> where_count` and drops the cast; in a later check `lv42: (nnz_w,) =
match_cast(lv40: (Where_count,))` (TF: the weights as many as the ids) it takes `nnz_w -> Where_count`, not
composed with the first: every later `nnz_w` becomes `Where_count`, whose definition is gone (checked: the pass
alone, on the module KillAfterLastUse gets, returns one that is not well formed). VMShapeLower then fails:
"PrimExpr Where_count * T.int64(8) ... has not been computed" (tf.nn.embedding_lookup_sparse over ragged ids
with ragged weights, combiner mean); on CUDA, FuseTIR's own canonicalization does it first.

Here each alias is substituted in the whole function first (an alias is never used before its definition), so
the casts that rename become trivial and what TVM's pass records refers to symbols that stay defined. Only
symbols defined once in the function (not in both sides of a branch) and from a cast in the function's own
bindings are substituted; a cast whose value's dims use a symbol substituted in the same round waits for the
next round (bind_symbolic_vars substitutes simultaneously, not transitively). What is left of a match_cast is a
run-time check of symbols defined before it, or the definition of a data-dependent size.
"""

from __future__ import annotations

from collections import Counter

import tvm
from tvm import relax, tirx

from ..ir_module import map_functions

_ROUNDS = 16


def _dims(ty) -> list | None:
    if isinstance(ty, relax.TensorType):
        return None if ty.shape is None else list(ty.shape.values)
    if isinstance(ty, relax.ShapeType):
        return None if ty.values is None else list(ty.values)
    return None


def _match_casts(expr, out: list) -> None:
    """Every match_cast binding in `expr` (nested sequences and branches included)."""
    if isinstance(expr, relax.SeqExpr):
        for block in expr.blocks:
            for b in block.bindings:
                if isinstance(b, relax.MatchCast):
                    out.append(b)
                _match_casts(b.value, out)
        _match_casts(expr.body, out)
    elif isinstance(expr, relax.If):
        _match_casts(expr.true_branch, out)
        _match_casts(expr.false_branch, out)


def _definitions(func: relax.Function) -> Counter:
    """How many bindings of the function define each symbol (first appearance in a match_cast's target)."""
    casts: list = []
    _match_casts(func.body, casts)
    count: Counter = Counter()
    for b in casts:
        for v in relax.analysis.definable_tir_vars_in_type(b.ty):
            count[v] += 1
    return count


def _aliases(func: relax.Function) -> dict:
    """symbol -> the dim it renames, for the casts in the function's own bindings (one round)."""
    if not isinstance(func.body, relax.SeqExpr):
        return {}
    defined = set()
    for p in func.params:
        defined.update(relax.analysis.definable_tir_vars_in_type(p.ty))
    once = _definitions(func)
    subst: dict = {}
    for block in func.body.blocks:
        for b in block.bindings:
            if not isinstance(b, relax.MatchCast):
                continue
            src, dst = _dims(b.value.ty), _dims(b.ty)
            if src is not None and dst is not None and len(src) == len(dst):
                for s, d in zip(src, dst):
                    if not isinstance(d, tirx.Var) or d in defined or d in subst or once[d] != 1:
                        continue
                    used = tirx.analysis.undefined_vars(s) if not isinstance(s, tirx.IntImm) else []
                    if any(u.same_as(d) or u in subst for u in used):
                        continue  # itself, or a symbol this round substitutes: next round
                    subst[d] = s
            defined.update(relax.analysis.definable_tir_vars_in_type(b.ty))
    return subst


def substitute_aliases(func: relax.Function) -> relax.Function:
    """`func` with its alias symbols substituted (itself where it has none)."""
    for _ in range(_ROUNDS):
        subst = _aliases(func)
        if not subst:
            break
        func = func.bind_symbolic_vars(subst)
    return func


@tvm.transform.module_pass(opt_level=0, name="recom_tvm.SubstituteSymbolAliases")
def SubstituteSymbolAliases(mod: tvm.IRModule, _ctx) -> tvm.IRModule:  # noqa: N802 - a pass, named as TVM's
    return map_functions(mod, relax.Function, substitute_aliases)
