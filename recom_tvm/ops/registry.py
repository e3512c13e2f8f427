"""Registering recom's own Relax operators from Python.

TVM registers Relax ops in C++; its FFI also lets us register them here (`ir.RegisterOp`) with a Python type
inference (`FInferType`) and purity. These ops carry TF's sparse semantics through the graph-level passes, which
match them by name; `legalize.LegalizeRecomOps` lowers them to TIR kernels before TVM's own pipeline.
"""

from __future__ import annotations

from collections.abc import Callable

import tvm
import tvm_ffi
from tvm import relax

PREFIX = "recom."
_REGISTERED: dict[str, tvm.ir.Op] = {}


def define_op(name: str, num_inputs: int, infer: Callable[[relax.Call], relax.Type], doc: str = "") -> tvm.ir.Op:
    """Register (once per process) and return the Relax op `recom.<name>`."""
    full = PREFIX + name
    if full in _REGISTERED:
        return _REGISTERED[full]
    if full not in tvm.ir.Op.list_op_names():
        tvm_ffi.get_global_func("ir.RegisterOp")(full, doc)
    op = tvm.ir.Op.get(full)
    op.set_num_inputs(num_inputs)
    op.set_attr("FInferType", lambda call, _bb: infer(call), plevel=20)
    op.set_attr("FPurity", True, plevel=20)
    op.set_attr("TScriptPrinterName", "Rc." + name, plevel=20)
    _REGISTERED[full] = op
    return op


def is_recom_op(expr, name: str | None = None) -> bool:
    """True if `expr` is a call of a recom op (of `name`, when given)."""
    if not isinstance(expr, relax.Call) or not isinstance(expr.op, tvm.ir.Op):
        return False
    op_name = expr.op.name
    if name is None:
        return op_name.startswith(PREFIX)
    return op_name == PREFIX + name
