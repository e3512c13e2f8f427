"""Inline the bool intermediates of fused functions into their consumers, before any schedule sees them.

The importer writes TF's Relu as `where(x < 0, 0, x)` (NaN stays NaN, as in TF; TVM's max drops it), so after
FuseOps a dense layer is matmul, add, `less` into a bool buffer [B, N], then `where` reading it. Both schedulers of
dense layers stay away from functions that load a bool buffer: TVM 0.27's CUDA codegen vectorizes such a load as
`float2 v = make_ushort2(...)`, which nvcc rejects (a tf.cond predicate read by a matmul's epilogue). Every
TF-imported MLP layer therefore fell to dlight's generic reduction rule: one block per output, weights read
column-strided, 1.8 ms for model E's second layer at B = 32 on an H200 (the dense tail's gemv takes microseconds).

Inlined, the comparison is an expression inside the select (`Select(x < 0, 0, x)`): no bool buffer, nothing for
the codegen to vectorize as a bool load. A bool buffer the function cannot inline (a parameter such as a tf.cond
predicate, a value several consumers read at other indices) stays, and so do the guards against it.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import tirx
from tvm.s_tir import Schedule, ScheduleError

from ..ir_module import map_functions

SKIP_ATTRS = ("tirx.is_scheduled", "recom_tvm.fused")


def loads_bool(func: tirx.PrimFunc) -> bool:
    """True if the function loads from a bool buffer (a walk over its loads: printing it as text, as this once
    did, cost seconds per large function)."""
    found = []
    tvm_ffi.structural_walk(func.body, [(tvm.ir.expr.TensorLoad, lambda n: found.append(n)
                                         if str(n.source.dtype) == "bool" else None)], order="post")
    return bool(found)


def inline_bool_intermediates(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """`func` with every spatial block that writes a bool intermediate inlined into its consumers (the same
    function where there is none or none can be inlined)."""
    if func.attrs is not None and any(k in func.attrs for k in SKIP_ATTRS):
        return func
    if not loads_bool(func):
        return func
    try:
        sch = Schedule(func)
        root = sch.get_sblock("root")
    except Exception:  # noqa: BLE001 - not a schedulable function: left as it is
        return func
    inlined, progress = 0, True
    while progress:  # inlining changes the block list: start over after each success
        progress = False
        for block in sch.get_child_blocks(root):
            stmt = sch.get(block)
            if len(stmt.writes) != 1 or str(stmt.writes[0].source.dtype) != "bool" or any(v.iter_type != tirx.IterVar.DataPar for v in stmt.iter_vars):
                continue
            try:
                sch.compute_inline(block)
            except ScheduleError:  # an output of the function, or not inlinable into its consumers
                continue
            inlined += 1
            progress = True
            break
    return sch.mod["main"] if inlined else func


@tvm.transform.module_pass(opt_level=0, name="recom_tvm.InlineBoolIntermediates")
class InlineBoolIntermediates:
    """Every PrimFunc of the module through `inline_bool_intermediates` (before the dense tail and dlight)."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return map_functions(mod, tirx.PrimFunc, inline_bool_intermediates)
