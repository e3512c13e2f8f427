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


def strided_slice(node, x, begin, end, strides):
    """TF's StridedSlice (masks included) as numpy indexing; a shrunk index out of range is TF's error."""
    a = node["attrs"]
    bm, em, elm, nam, sam = (int(a.get(k, 0)) for k in ("begin_mask", "end_mask", "ellipsis_mask",
                                                          "new_axis_mask", "shrink_axis_mask"))
    x = np.asarray(x)
    begin, end, strides = (np.asarray(v).reshape(-1).tolist() for v in (begin, end, strides))
    index, d = [], 0
    for i in range(len(begin)):
        if elm >> i & 1:
            index.append(Ellipsis)
            d = x.ndim - sum(1 for j in range(i + 1, len(begin)) if not (nam >> j & 1))
        elif nam >> i & 1:
            index.append(np.newaxis)
        elif sam >> i & 1:
            b = int(begin[i])
            if not -x.shape[d] <= b < x.shape[d]:
                raise InvalidArgumentError(f"StridedSlice node {node['name']!r}: slice index {b} of dimension {d} "
                                           "out of bounds.")
            index.append(b)
            d += 1
        else:
            index.append(slice(None if bm >> i & 1 else int(begin[i]), None if em >> i & 1 else int(end[i]),
                               int(strides[i])))
            d += 1
    return x[tuple(index)]


def dense_bincount(node, x, size, weights):
    """DenseBincount of a vector: counts (or weight sums) of each value below `size`; larger values are
    dropped, negative ones are TF's error."""
    x = np.asarray(x).reshape(-1)
    n = int(np.asarray(size).reshape(()))
    if n < 0:
        raise InvalidArgumentError(f"DenseBincount node {node['name']!r}: size ({n}) must be non-negative")
    if x.size and x.min() < 0:
        raise InvalidArgumentError(f"DenseBincount node {node['name']!r}: Input arr must be non-negative!")
    w = np.asarray(weights)
    keep = x < n
    if node["attrs"].get("binary_output", False):
        out = np.zeros(n, dtype=w.dtype)
        out[x[keep]] = 1
        return out
    if w.size:
        return np.bincount(x[keep], weights=w.reshape(-1)[keep], minlength=n)[:n].astype(w.dtype)
    return np.bincount(x[keep], minlength=n)[:n].astype(w.dtype)


def cumsum(node, x, axis):
    a = node["attrs"]
    x = np.asarray(x)
    ax = int(np.asarray(axis).reshape(()))
    y = np.flip(x, ax) if a.get("reverse", False) else x
    out = np.cumsum(y, axis=ax, dtype=x.dtype)
    if a.get("exclusive", False):
        out = np.concatenate([np.zeros_like(np.take(out, [0], axis=ax)), np.delete(out, -1, axis=ax)], axis=ax) \
            if out.shape[ax] else out
    return np.flip(out, ax) if a.get("reverse", False) else out


def _reduce(fn, largest: bool):
    """Max / Min; an empty reduction gives the dtype's lowest / highest value, as TF's does."""
    def run(node, x, axes):
        x = np.asarray(x)
        ax = tuple(int(v) % max(x.ndim, 1) for v in np.asarray(axes).reshape(-1))
        info = np.finfo(x.dtype) if x.dtype.kind == "f" else np.iinfo(x.dtype)
        init = (-np.inf if x.dtype.kind == "f" else info.min) if largest else (
            np.inf if x.dtype.kind == "f" else info.max)
        return fn(x, axis=ax, keepdims=bool(node["attrs"].get("keep_dims", False)), initial=init)
    return run


def _min_max(a, b, largest: bool) -> np.ndarray:
    """TF's Maximum / Minimum: NaN if either is NaN; on ties the first operand (as TF's scalar kernel)."""
    a, b = np.asarray(a), np.asarray(b)
    pick = np.where(np.less(a, b) if largest else np.less(b, a), b, a)
    return np.where(np.isnan(b), b, pick) if pick.dtype.kind == "f" else pick


def sparse_reorder(node, indices, values):
    """SparseReorder: entries in row-major order of their indices (stable)."""
    indices = np.asarray(indices)
    order = np.lexsort(indices.T[::-1]) if indices.size else np.zeros(0, np.int64)
    return indices[order], np.asarray(values)[order]


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
    "StridedSlice": strided_slice,
    "SparseReorder": sparse_reorder,
    "DenseBincount": dense_bincount,
    "Cumsum": cumsum,
    "BroadcastTo": lambda node, x, shape: np.broadcast_to(x, [int(d) for d in np.asarray(shape).reshape(-1)]).copy(),
    "Max": _reduce(np.max, True),
    "Min": _reduce(np.min, False),
    "Maximum": lambda node, a, b: _min_max(a, b, True),
    "Minimum": lambda node, a, b: _min_max(a, b, False),
    "Less": lambda node, a, b: np.less(a, b),
    "LessEqual": lambda node, a, b: np.less_equal(a, b),
    "Greater": lambda node, a, b: np.greater(a, b),
    "GreaterEqual": lambda node, a, b: np.greater_equal(a, b),
}
