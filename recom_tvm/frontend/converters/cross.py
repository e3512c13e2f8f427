"""SparseCross (crossed_column) in the host stage: the crosses are hashed from the raw feature values (strings
and ints), which live on the host; the output SparseTensor's dense_shape becomes symbolic sizes of the module."""

from __future__ import annotations

import numpy as np

from ...shapes.symbolic import is_prim
from ..values import Host, Known, host_input
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
    n = int(node.attr("N", 0))
    if not node.attr("hashed_output", False):  # strings joined by "_X_", as tf.sparse.cross does with its sep
        return _cross(ctx, node, ins, "SparseCrossV2", {"N": n, "sep": "_X_", "n_dense": len(ins) - 3 * n},
                      "string")
    return _cross(ctx, node, ins, "SparseCross", {"N": n, "num_buckets": int(node.attr("num_buckets", 0)),
                                                  "hash_key": int(node.attr("hash_key", 0))}, "int64")


@placed("SparseCrossV2")
def _sparse_cross_v2(ctx, node, ins):
    """tf.sparse.cross: the features of each cross joined by the separator (integers in decimal)."""
    n = int(node.attr("N", 0))
    sep = _const_scalar(ctx, ins[-1], "the separator")
    sep = sep.decode("latin-1") if isinstance(sep, bytes) else str(sep)
    return _cross(ctx, node, ins[:-1], "SparseCrossV2", {"N": n, "sep": sep, "n_dense": len(ins) - 1 - 3 * n},
                  "string")


@placed("SparseCrossHashed")
def _sparse_cross_hashed(ctx, node, ins):
    """SparseCrossHashed: the first column's hash FingerprintCat64'd with the others' (strong: SipHash(salt))."""
    n = int(node.attr("N", 0))
    dense = ins[3 * n:-3]
    strong = bool(_const_scalar(ctx, ins[-2], "strong_hash"))
    if strong and any(v.dtype != "string" for v in dense):
        ctx.fail("strong_hash over dense integer inputs (TF's kernel reads the integer as an address)")
    salt = ctx.const_ints(ins[-1], "the salt")
    return _cross(ctx, node, ins[:-3], "SparseCrossHashed", {
        "N": n, "n_dense": len(dense), "num_buckets": int(_const_scalar(ctx, ins[-3], "num_buckets")),
        "strong_hash": strong, "salt": salt}, "int64")


def _const_scalar(ctx, v, what: str):
    if not (isinstance(v, Known) and v.concrete and v.numpy().size == 1):
        ctx.fail(f"{what} must be a constant")
    return v.numpy().reshape(-1)[0].item() if hasattr(v.numpy().reshape(-1)[0], "item") else v.numpy().reshape(-1)[0]


def _cross(ctx, node, ins, op: str, attrs: dict, dtype: str):
    """Put a cross in the host stage: its inputs host tensors or constants (a dense_shape known as sizes is read
    from the feed carrying it, or computed on the host); the output's dense_shape becomes sizes of the module."""
    n = attrs["N"]
    inputs = []
    for i, v in enumerate(ins):
        if (inp := host_input(v)) is not None:
            inputs.append(inp)
        elif isinstance(v, Known) and (tensor := _feed_tensor(ctx, node, i)) is not None:  # a dense_shape
            inputs.append({"tensor": tensor})
        elif isinstance(v, Known):  # sizes computed in the graph (a bucketized column's [B, 1])
            inputs.append({"tensor": ctx.host_known(v)})
        else:
            ctx.fail(f"input {i} is computed on the device; {node.op} runs in the host stage on feeds")
    shapes = ins[2 * n:3 * n]
    first = shapes[0].value.reshape(-1)[0] if n and isinstance(shapes[0], Known) else None
    if first is None and len(ins) > 3 * n and ins[3 * n].shape:
        first = ins[3 * n].shape[0]  # no sparse input: the first dense input's batch
    batch = first if first is not None and (is_prim(first) or isinstance(first, (int, np.integer))) else \
        ctx.symbols.fresh("cross_batch", f"batch of {node.name}")
    count = ctx.symbols.fresh("nnz_cross", f"number of crosses of {node.name}")
    width = ctx.symbols.fresh("cross_width", f"most crosses in a row of {node.name}")
    outs = [f"{node.name}:{k}" for k in range(3)]
    ctx.add_host_op({"name": node.name, "op": op, "inputs": inputs, "attrs": attrs, "outputs": outs})
    idx = ctx.host_values[outs[0]] = Host(outs[0], "int64", [count, 2])
    vals = ctx.host_values[outs[1]] = Host(outs[1], dtype, [count])
    shape = ctx.shape_feed_input(outs[2], "int64", [batch, width], source="host")
    return [idx, vals, shape]
