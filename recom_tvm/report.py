"""Counting what a model is made of: TF ops in the graph, Relax ops after import, kernels after lowering."""

from __future__ import annotations

from collections import Counter

import tvm
from tvm import relax

# Bookkeeping, not computation: excluded from TF op counts.
_TF_FREE = {"Const", "Identity", "NoOp", "Placeholder", "IdentityN", "StopGradient"}


def tf_op_counts(graph, nodes=None) -> Counter:
    """Op types of a frozen graph's compute nodes (or of `nodes`), bookkeeping excluded."""
    names = graph.order if nodes is None else nodes
    return Counter(graph.nodes[n].op for n in names if graph.nodes[n].op not in _TF_FREE)


def relax_op_counts(mod: tvm.IRModule, func: str = "main") -> Counter:
    """Relax calls in `func` by op (call_tir counted by callee), match_cast / tuple plumbing excluded."""
    counts: Counter = Counter()

    def visit(expr):
        if isinstance(expr, relax.Call):
            op = expr.op
            if isinstance(op, tvm.ir.Op):
                name = op.name
                if name in ("relax.call_tir", "relax.call_dps_packed"):
                    name = f"call_tir:{expr.args[0].name_hint}"
                elif name == "relax.call_pure_packed":
                    name = f"packed:{expr.args[0].global_symbol}"
                counts[name] += 1

    relax.analysis.post_order_visit(mod[func], visit)
    return counts


def lowered(mod: tvm.IRModule) -> tvm.IRModule:
    """recom ops and Relax ops lowered to call_tir (before TVM's operator fusion)."""
    from .ops import LegalizeRecomOps

    return relax.transform.LegalizeOps()(LegalizeRecomOps()(mod))


def kernel_launches(mod: tvm.IRModule, func: str = "main") -> int:
    """call_tir sites once lowered: kernel launches per inference before TVM's operator fusion."""
    return sum(v for k, v in relax_op_counts(lowered(mod), func).items() if k.startswith("call_tir:"))


def device_syncs(mod: tvm.IRModule, func: str = "main") -> int:
    """Device->host copies that learn a size or check an error (tensor_to_shape, check callbacks), once lowered."""
    c = relax_op_counts(lowered(mod), func)
    return c.get("relax.tensor_to_shape", 0) + sum(v for k, v in c.items() if k.startswith("packed:"))


def column_op_counts(mod: tvm.IRModule, func: str = "main") -> dict[str, int]:
    """{column: Relax calls in its subgraph}: the backward slice from the concat input holding the column's
    output to the function's inputs (everything TF's column scope became; host-stage ops not included)."""
    from .passes.dataflow import DataflowView, op_name
    from .passes.identify_columns import identify_columns

    view = DataflowView(mod[func])

    def backward(var) -> set:
        seen, stack = set(), [var]
        while stack:
            v = stack.pop()
            if isinstance(v, relax.Var) and v not in seen and view.value(v) is not None:
                seen.add(v)
                stack.extend(relax.analysis.free_vars(view.value(v)))
        return seen

    slices = []  # the slice of each concat input
    for b in view.order:
        if op_name(b.value) == "relax.concat":
            fields = b.value.args[0].fields if isinstance(b.value.args[0], relax.Tuple) else []
            slices += [backward(f) for f in fields]
    out = {}
    for col in identify_columns(mod, func):
        own = [s for s in slices if col.var in s] or [backward(col.var)]
        out[col.name] = sum(isinstance(view.value(v), relax.Call) for v in min(own, key=len))
    return out
