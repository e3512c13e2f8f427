"""CommonSubexprAcrossColumns: compute identical preprocessing and lookups once.

TVM's EliminateCommonSubexpr merges structurally equal pure calls (recom ops are pure), so two columns that
bucketize the same input with the same boundaries, or read one table with the same ids, share the work.
Identical tables were already merged into one parameter at import time (content-hashed), so calls reading
them compare equal here.
"""

from __future__ import annotations

import tvm
from tvm import relax

from ._util import copy_attrs


@tvm.ir.transform.module_pass(opt_level=0, name="CommonSubexprAcrossColumns")
class CommonSubexprAcrossColumns:
    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return copy_attrs(mod, relax.transform.EliminateCommonSubexpr(call_only=False)(mod))
