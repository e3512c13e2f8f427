"""The symbols the module's device allocations are sized by, recorded at build for the runtime's pool bound.

TVM's pooled allocator caches every freed buffer by its (page-rounded) size and never gives them back, so the
runtime releases the cache after config.pool_max_shapes distinct request sizes (CompiledModel._bound_pool). What
makes a size distinct is what the allocations depend on: for a fused model only the batch (its packed input's
length and string count, which differ in nearly every request, size no allocation: the staging buffer is the
slot's own). Keying on every argument's shape released the cache every 64 requests in production, each release a
cudaFree of every cached buffer and new cudaMallocs after it.

Collected after KillAfterLastUse (every allocation is an `R.memory.alloc_storage` of a planned size by then), over
every Relax function of the module.
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx

_ALLOC = tvm.ir.Op.get("relax.memory.alloc_storage")


def allocation_symbols(mod: tvm.IRModule) -> list[str] | None:
    """Names of the symbolic variables in the sizes of the module's storage allocations, sorted; None where a size
    is not a shape expression (unknown here: the runtime keys on every argument's shape then)."""
    names: set[str] = set()
    unknown = []

    def visit(e) -> None:
        if isinstance(e, relax.Call) and e.op.same_as(_ALLOC):
            if not isinstance(e.args[0], relax.ShapeExpr):
                unknown.append(e)
                return
            for v in e.args[0].values:
                names.update(var.name for var in tirx.analysis.undefined_vars(v))

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func.body, visit)
    return None if unknown else sorted(names)


def record_allocation_symbols(sink: dict) -> tvm.transform.Pass:
    """A pass leaving the module as it is and writing allocation_symbols(mod) to sink["symbols"]."""

    @tvm.transform.module_pass(opt_level=0, name="recom_tvm.RecordAllocationSymbols")
    def _pass(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        sink["symbols"] = allocation_symbols(mod)
        return mod

    return _pass
