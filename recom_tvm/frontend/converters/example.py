"""ParseExampleV2 (a serving signature over serialized tf.Examples) in the host stage: protobuf parsing has no
place on the device. Its sparse outputs become host tensors (rows sorted by construction) with their dense_shape
as symbolic sizes; its dense outputs host tensors of [B, *shape]."""

from __future__ import annotations

import numpy as np

from ..values import Host, Known
from . import placed

_SUPPORTED = ("string", "float32", "int64")


def _keys(ctx, v, what: str) -> list[str]:
    if not (isinstance(v, Known) and v.concrete):
        ctx.fail(f"{what} must be constants")
    return [k.decode() if isinstance(k, bytes) else str(k) for k in v.numpy().reshape(-1).tolist()]


@placed("ParseExampleV2")
def _parse_example(ctx, node, ins):
    serialized, _names, sparse_keys, dense_keys, ragged_keys = ins[:5]
    defaults = ins[5:]
    if not isinstance(serialized, Host) or serialized.dtype != "string" or len(serialized.shape) != 1:
        ctx.fail("the serialized examples must be a string feed of shape [batch]")
    sk, dk = _keys(ctx, sparse_keys, "sparse keys"), _keys(ctx, dense_keys, "dense keys")
    if _keys(ctx, ragged_keys, "ragged keys"):
        ctx.fail("ragged features (RaggedFeature) in a parse spec")
    sparse_types = list(node.attr("sparse_types") or [])
    dense_types = list(node.attr("Tdense") or [])
    dense_shapes = list(node.attr("dense_shapes") or [])
    for t in sparse_types + dense_types:
        if t not in _SUPPORTED:
            ctx.fail(f"feature dtype {t} (tf.Example holds {_SUPPORTED})")
    dense = []
    for key, dtype, shape, dflt in zip(dk, dense_types, dense_shapes, defaults):
        if any(int(d) < 0 for d in shape):
            ctx.fail(f"dense feature {key!r} with unknown dims {shape} (FixedLenSequenceFeature)")
        if not (isinstance(dflt, Known) and dflt.concrete):
            ctx.fail(f"the default of dense feature {key!r} must be a constant")
        arr = dflt.numpy()
        if arr.size == 0:
            value = None  # required
        else:
            value = [v.decode("latin-1") if isinstance(v, bytes) else v for v in arr.reshape(-1).tolist()]
            if arr.size == 1 and int(np.prod(shape or [1])) > 1:
                value = value * int(np.prod(shape))
        dense.append([key, dtype, [int(d) for d in shape], value])
    batch = serialized.shape[0]
    outs = [f"{node.name}:{k}" for k in range(3 * len(sk) + len(dk))]
    ctx.add_host_op({"name": node.name, "op": "ParseExampleV2", "inputs": [{"tensor": serialized.tensor}],
                          "attrs": {"sparse": [[k, t] for k, t in zip(sk, sparse_types)], "dense": dense},
                          "outputs": outs})
    values = []
    n = len(sk)
    counts = [ctx.symbols.fresh(f"nnz_{k}", f"number of values of example feature {k!r}") for k in sk]
    for i, key in enumerate(sk):
        values.append(Host(outs[i], "int64", [counts[i], 2]))
    for i, (key, dtype) in enumerate(zip(sk, sparse_types)):
        values.append(Host(outs[n + i], dtype, [counts[i]]))
    for i, key in enumerate(sk):
        width = ctx.symbols.fresh(f"{key}_width", f"longest value list of example feature {key!r}")
        values.append(ctx.shape_feed_input(outs[2 * n + i], "int64", [batch, width], source="host"))
    for i, (key, dtype, shape, _) in enumerate(dense):
        values.append(Host(outs[3 * n + i], dtype, [batch] + shape))
    for v in values:
        if isinstance(v, Host):
            ctx.host_values[v.tensor] = v
    return values
