"""SparseCross (crossed_column) in the host stage: the crosses are hashed from the raw feature values (strings
and ints), which live on the host; the output SparseTensor's dense_shape becomes symbolic sizes of the module."""

from __future__ import annotations

import numpy as np

from ...shapes.symbolic import is_prim
from ..values import Host, Known
from . import placed


def _feed_tensor(ctx, node, i: int) -> str | None:
    """The placeholder or host-stage tensor behind input i (through Identity): the host stage has its value at
    run time (a dense_shape the importer otherwise keeps as symbolic sizes)."""
    src, idx = node.inputs[i]
    for _ in range(16):
        n = ctx.graph.nodes[src]
        if n.op in ("Placeholder", "PlaceholderWithDefault") or f"{src}:{idx}" in ctx.host_outputs:
            return f"{src}:{idx}"
        if n.op != "Identity" or not n.inputs:
            return None
        src, idx = n.inputs[0]
    return None


@placed("SparseCross")
def _sparse_cross(ctx, node, ins):
    if not node.attr("hashed_output", False):
        ctx.fail("SparseCross without hashed_output (string crosses; crossed_column hashes)")
    n = int(node.attr("N", 0))
    inputs = []
    for i, v in enumerate(ins):
        if isinstance(v, Host):
            inputs.append({"tensor": v.tensor})
        elif isinstance(v, Known) and v.concrete:
            arr = v.numpy()
            if v.dtype == "string":
                arr = np.array([b.decode("latin-1") if isinstance(b, bytes) else str(b) for b in arr.reshape(-1)],
                               dtype=object).reshape(arr.shape)
            inputs.append({"const": arr.tolist(), "dtype": v.dtype})
        elif isinstance(v, Known) and (tensor := _feed_tensor(ctx, node, i)) is not None:  # a dense_shape
            inputs.append({"tensor": tensor})
        elif isinstance(v, Known):  # sizes computed in the graph (a bucketized column's [B, 1])
            inputs.append({"tensor": ctx.host_known(v)})
        else:
            ctx.fail(f"input {i} is computed on the device; SparseCross runs in the host stage on feeds")
    shapes = ins[2 * n:3 * n]
    first = shapes[0].value.reshape(-1)[0] if n and isinstance(shapes[0], Known) else None
    batch = first if first is not None and (is_prim(first) or isinstance(first, (int, np.integer))) else \
        ctx.symbols.fresh("cross_batch", f"batch of {node.name}")
    count = ctx.symbols.fresh("nnz_cross", f"number of crosses of {node.name}")
    width = ctx.symbols.fresh("cross_width", f"most crosses in a row of {node.name}")
    outs = [f"{node.name}:{k}" for k in range(3)]
    ctx.add_host_op({"name": node.name, "op": "SparseCross", "inputs": inputs,
                          "attrs": {"N": n, "num_buckets": int(node.attr("num_buckets", 0)),
                                    "hash_key": int(node.attr("hash_key", 0))}, "outputs": outs})
    idx = ctx.host_values[outs[0]] = Host(outs[0], "int64", [count, 2])
    vals = ctx.host_values[outs[1]] = Host(outs[1], "int64", [count])
    shape = ctx.shape_feed_input(outs[2], "int64", [batch, width], source="host")
    return [idx, vals, shape]
