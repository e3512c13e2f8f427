"""Numeric ops of the host stage: what feeds a string op on the host (a bucketized column crossed with a string
feature builds its SparseTensor from Bucketize, Range, Tile, Pack, ...), and the sizes it reads
(`SymbolicValue`: an expression of the feeds' dimensions, evaluated on the host).

Each op is a pure function `(node, *inputs)` of its inputs and `node["attrs"]`, with TF's semantics.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError
from .assertions import evaluate
from .feeds import flush_denormals


def bucketize(node, x):
    """TF's Bucketize: upper_bound in the float boundaries, comparing as C++ does (ints converted to float),
    denormals flushed to zero as TF-CPU's kernels run."""
    b = flush_denormals(np.asarray(node["attrs"]["boundaries"], dtype=np.float32))
    x = np.asarray(x)
    if x.dtype.kind == "f":
        x = flush_denormals(x)
    cmp = x if x.dtype == np.float64 else x.astype(np.float32)
    return np.searchsorted(b.astype(cmp.dtype), cmp, side="right").astype(np.int32)


def range_(node, start, limit, delta):
    start, limit, delta = (np.asarray(v).reshape(()).item() for v in (start, limit, delta))
    if delta == 0:
        raise InvalidArgumentError(f"Range node {node['name']!r}: Requires delta != 0: {delta}")
    if (delta > 0 and start > limit) or (delta < 0 and start < limit):
        raise InvalidArgumentError(f"Range node {node['name']!r}: Requires start <= limit when delta > 0: "
                                   f"{start}/{limit}" if delta > 0 else
                                   f"Range node {node['name']!r}: Requires start >= limit when delta < 0: "
                                   f"{start}/{limit}")
    return np.arange(start, limit, delta, dtype=node["attrs"].get("Tidx", "int32"))


def tile(node, x, multiples):
    return np.tile(x, [int(m) for m in np.asarray(multiples).reshape(-1)])


def pack(node, *xs):
    return np.stack(xs, axis=int(node["attrs"].get("axis", 0)))


def transpose(node, x, perm):
    return np.transpose(x, [int(p) for p in np.asarray(perm).reshape(-1)])


def concat(node, *args):
    *xs, axis = args
    return np.concatenate(xs, axis=int(np.asarray(axis).reshape(())))


def squeeze(node, x):
    dims = node["attrs"].get("squeeze_dims") or []
    return np.squeeze(x, axis=tuple(int(d) for d in dims)) if dims else np.squeeze(x)


def symbolic_value(node, *tensors):
    """Sizes as data: attrs["values"] are expression ASTs (recom_tvm.runtime.assertions) over symbols, each
    symbol read from an input tensor's shape (["dim", k, i]) or value (["value", k, i])."""
    a = node["attrs"]
    env = {}
    for name, (kind, k, i) in a["symbols"].items():
        t = np.asarray(tensors[k])
        env[name] = int(t.shape[i]) if kind == "dim" else int(t.reshape(-1)[i])
    vals = [evaluate(ast, env) for ast in a["values"]]
    return np.array(vals, dtype=a["dtype"]).reshape(a["shape"])


IMPLS = {
    "Bucketize": bucketize,
    "Range": range_,
    "Tile": tile,
    "Mul": lambda node, a, b: np.multiply(a, b),
    "Sub": lambda node, a, b: np.subtract(a, b),
    "Pack": pack,
    "Transpose": transpose,
    "ConcatV2": concat,
    "Squeeze": squeeze,
    "SymbolicValue": symbolic_value,
}
