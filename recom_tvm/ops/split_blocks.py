"""Split dataflow blocks after each binding that learns a size at run time (a match_cast defining new symbolic vars
from a device->host sync), so nothing that uses the size can be moved above it.

TVM 0.27's FuseOps re-sorts a dataflow block by its variables' dependencies only; a kernel whose output size is a
symbol bound by an earlier match_cast depends on it through the symbol, not a variable, and could be emitted before
the size is known ("... has not been computed" in VMShapeLower; seen building ragged and Where graphs for CUDA).
Block boundaries are kept by FuseOps."""

from __future__ import annotations

import tvm
from tvm import relax

from ..ir_module import map_functions


@relax.expr_functor.mutator
class _Remap(relax.PyExprMutator):
    def __init__(self, remap: dict) -> None:
        super().__init__()
        self.remap = remap

    def visit_var_(self, var):
        return self.remap.get(var, var)

    def visit_dataflow_var_(self, var):
        return self.remap.get(var, var)


def _cut_points(block: relax.DataflowBlock, known: set[str]) -> list[int]:
    """Indices of bindings after which the block is cut (match_casts defining symbols not yet known)."""
    cuts = []
    for i, b in enumerate(block.bindings):
        names = {v.name for v in relax.analysis.definable_tir_vars_in_type(b.var.ty)}
        if isinstance(b, relax.MatchCast) and names - known:
            cuts.append(i)
        known |= names
    return cuts


def split_function(func: relax.Function) -> relax.Function:
    """func with each dataflow block cut after its size-learning match_casts; DataflowVars used across a cut
    become Vars."""
    if not isinstance(func.body, relax.SeqExpr):
        return func
    known = {v.name for p in func.params for v in relax.analysis.definable_tir_vars_in_type(p.ty)}
    blocks = []
    remap: dict = {}
    mutator = _Remap(remap)
    changed = False
    for block in func.body.blocks:
        if not isinstance(block, relax.DataflowBlock):
            for b in block.bindings:
                known |= {v.name for v in relax.analysis.definable_tir_vars_in_type(b.var.ty)}
            blocks.append(block if not remap else relax.BindingBlock([_rebind(b, mutator, remap, False)
                                                                       for b in block.bindings]))
            continue
        cuts = _cut_points(block, known)
        if not cuts or cuts == [len(block.bindings) - 1]:
            blocks.append(block if not remap else relax.DataflowBlock([_rebind(b, mutator, remap, False)
                                                                       for b in block.bindings]))
            continue
        changed = True
        chunk_of, c = [], 0
        for i in range(len(block.bindings)):
            chunk_of.append(c)
            if i in cuts:
                c += 1
        defined_in = {b.var: chunk_of[i] for i, b in enumerate(block.bindings)}
        crossing = set()
        for i, b in enumerate(block.bindings):
            for v in relax.analysis.free_vars(b.value):
                if v in defined_in and defined_in[v] < chunk_of[i] and isinstance(v, relax.DataflowVar):
                    crossing.add(v)
        chunks: list[list] = [[] for _ in range(c + 1)]
        for i, b in enumerate(block.bindings):
            chunks[chunk_of[i]].append(_rebind(b, mutator, remap, b.var in crossing))
        blocks += [relax.DataflowBlock(ch) for ch in chunks if ch]
    if not changed:
        return func
    body = relax.SeqExpr(blocks, mutator.visit_expr(func.body.body))
    return relax.Function(func.params, body, func.ret_ty, func.is_pure, func.attrs, func.span)


def _rebind(b, mutator, remap, to_var: bool):
    value = mutator.visit_expr(b.value)
    var = b.var
    if to_var:
        new = relax.Var(var.name, var.ty)
        remap[var] = new
        var = new
    if isinstance(b, relax.MatchCast):
        return relax.MatchCast(var, value, b.var.ty)
    return relax.VarBinding(var, value)


@tvm.ir.transform.module_pass(opt_level=0, name="SplitDataflowAtSizes")
class SplitDataflowAtSizes:
    """Run before TVM's pipeline (FuseOps) in build; a module without run-time sizes is returned unchanged."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return map_functions(mod, relax.Function, split_function)
