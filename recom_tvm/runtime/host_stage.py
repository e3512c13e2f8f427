"""The host stage: TF ops on strings (and what feeds them) run in numpy before the compiled module.

A plan is a JSON list of nodes `{"name", "op", "inputs", "attrs", "outputs"}`; an input is `{"tensor": t}` (a
feed or an earlier node's output) or `{"const": v, "dtype": d}`. Implementations follow TF's kernels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import InvalidArgumentError
from .fingerprint import DecimalStrings, hash_bucket_fast, hash_bucket_fast_many
from .array_ops import IMPLS as ARRAY_IMPLS
from .cross import IMPLS as CROSS_IMPLS
from .string_ops import IMPLS as STRING_IMPLS
from .strings import from_objects


def _as_string(node, x):
    if x.dtype == np.bool_:
        return np.vectorize(lambda v: b"true" if v else b"false", otypes=[object])(x)
    return DecimalStrings(x)  # hashed without materializing the text


def _gather_nd(node, params, indices):
    depth = indices.shape[-1]
    if indices.size:
        bad = (indices < 0) | (indices >= np.array(params.shape[:depth]))
        if bad.any():
            pos = np.argwhere(bad.any(axis=-1))[0]
            raise InvalidArgumentError(f"{node['op']} node {node['name']!r}: index {indices[tuple(pos)].tolist()} "
                                       f"does not index into param shape {list(params.shape)}")
    return params[tuple(np.moveaxis(indices, -1, 0))]


def _gather(node, params, indices, axis):
    axis = int(np.asarray(axis).reshape(()))
    if indices.size and (indices.min() < 0 or indices.max() >= params.shape[axis]):
        bad = indices[(indices < 0) | (indices >= params.shape[axis])].reshape(-1)[0]
        raise InvalidArgumentError(f"GatherV2 node {node['name']!r}: indices = {bad} is not in "
                                   f"[0, {params.shape[axis]})")
    return np.take(params, indices, axis=axis)


_SORTED: dict[int, tuple] = {}  # id(plan node) -> (node, sorted keys, values in that order): built once


def _lookup(node, x):
    """LookupTableFindV2 in the host stage (the keys and values are the node's attributes; strings as latin-1
    text): a binary search in the sorted keys; misses get the default. String keys (the common case), or
    integer keys with string values (an index-to-string table)."""
    hit = _SORTED.get(id(node))
    if hit is None or hit[0] is not node:
        a = node["attrs"]
        if a.get("key_dtype", "string") == "string":
            keys = [k.encode("latin-1") for k in a["keys"]]
            kind = object if any(k.endswith(b"\0") for k in keys) else "S"
            keys = np.array(keys, dtype=kind) if keys else np.zeros(0, "S1")
        else:
            keys = np.asarray(a["keys"], dtype=a["key_dtype"])
        order = np.argsort(keys, kind="stable")
        if a["value_dtype"] == "string":
            values = _const({"const": a["values"], "dtype": "string"}).astype(object)
            default = a["default"].encode("latin-1")
        else:
            values, default = np.asarray(a["values"], dtype=a["value_dtype"]), a["default"]
        hit = _SORTED[id(node)] = (node, keys[order], values[order], default)
    _, keys, values, default = hit
    x = np.asarray(x)
    if x.dtype == object or keys.dtype == object:
        x, keys = x.astype(object), keys.astype(object)
    flat = x.reshape(-1)
    if keys.size == 0 or flat.size == 0:
        out = np.empty(x.shape, dtype=values.dtype)
        out[...] = default
        return out
    pos = np.minimum(np.searchsorted(keys, flat), keys.size - 1)
    found = keys[pos] == flat
    if values.dtype == object:
        out = np.where(found, values[pos], np.array(default, dtype=object)).reshape(x.shape)
        return from_objects(out)
    return np.where(found, values[pos], np.asarray(default, values.dtype)).reshape(x.shape)


def _validate_sparse_indices(node, idx):
    """SparseToDense's validate_indices: indices strictly increasing in row-major order (TF's error otherwise)."""
    idx = np.asarray(idx)
    if idx.ndim == 2 and idx.shape[0] > 1:
        a, b = idx[:-1], idx[1:]
        diff = a != b
        first = np.argmax(diff, axis=1)
        rows = np.arange(a.shape[0])
        repeated = ~diff.any(axis=1)
        unordered = diff.any(axis=1) & (b[rows, first] < a[rows, first])
        for bad, what in ((repeated, "is repeated"), (unordered, "is out of order. Many sparse ops require "
                                                                 "sorted indices")):
            if bad.any():
                i = int(np.argmax(bad)) + 1
                raise InvalidArgumentError(f"SparseToDense node {node['attrs']['node']!r}: indices[{i}] = "
                                           f"{idx[i].tolist()} {what}")
    return idx


def _sparse_cross(node, *args):
    from .cross import sparse_cross_hashed

    n = int(node["attrs"]["N"])
    sparse = list(zip(args[:n], args[n:2 * n], args[2 * n:3 * n]))
    return sparse_cross_hashed(sparse, list(args[3 * n:]), int(node["attrs"]["num_buckets"]),
                               int(node["attrs"]["hash_key"]), f"SparseCross node {node['name']!r}")


def _parse_example(node, serialized):
    from .examples import parse_examples

    a = node["attrs"]
    dense = [(k, t, shape, None if d is None else [v.encode("latin-1") if isinstance(v, str) else v for v in d])
             for k, t, shape, d in a["dense"]]
    return parse_examples(serialized, [tuple(x) for x in a["sparse"]], dense)


def _tf_subgraph(node, *inputs):
    from .corun import run_tf_subgraph

    return run_tf_subgraph(node, *inputs)


def _cast(x, dtype):
    """numpy's astype; NaN / inf / out-of-range floats to ints give what TF-CPU's cast gives on x86 (the
    truncating conversion's INT_MIN pattern) without numpy's RuntimeWarning for every hostile feed."""
    with np.errstate(invalid="ignore", over="ignore"):
        return x.astype(dtype)


def _reshape(node, x, shape):
    return x.reshape([int(s) for s in np.asarray(shape).reshape(-1)])


HOST_IMPLS: dict[str, Callable] = {
    "StringToHashBucketFast": lambda node, x: hash_bucket_fast(x, int(node["attrs"]["num_buckets"])),
    "AsString": _as_string,
    "Identity": lambda node, x: x,
    "Cast": lambda node, x: _cast(x, node["attrs"]["DstT"]),
    # feeds and constants are normalized to bytes, so strings compare directly
    "Equal": lambda node, a, b: np.equal(a, b),
    "NotEqual": lambda node, a, b: np.not_equal(a, b),
    "Where": lambda node, x: np.argwhere(x).astype(np.int64),
    "GatherNd": _gather_nd,
    "GatherV2": _gather,
    "Reshape": _reshape,
    "ExpandDims": lambda node, x, axis: np.expand_dims(x, int(np.asarray(axis).reshape(()))),
    "LookupTableFind": _lookup,
    "ValidateSparseIndices": _validate_sparse_indices,
    "SparseCross": _sparse_cross,
    "ParseExampleV2": _parse_example,
    "TFSubgraph": _tf_subgraph,  # host co-run: ops without a converter, run by TensorFlow
    # vocabulary columns with OOV buckets: SelectV2(lookup != -1, lookup, hash + size), kept on the host
    "AddV2": lambda node, a, b: np.add(a, b),
    "SelectV2": lambda node, c, a, b: np.where(c, a, b),
    **STRING_IMPLS,  # tf.strings (string_ops.py)
    **ARRAY_IMPLS,  # numeric ops feeding a host op, sizes as data (array_ops.py)
    **CROSS_IMPLS,  # string crosses, SparseCrossHashed (cross.py)
}


def _const(spec: dict) -> np.ndarray:
    if spec["dtype"] == "string":
        items = [s.encode("latin-1") for s in np.asarray(spec["const"]).reshape(-1).tolist()]
        # 'S' compares with feeds in C; object keeps a trailing NUL byte that 'S' would drop
        kind = object if any(b.endswith(b"\0") for b in items) else "S"
        return np.array(items, dtype=kind).reshape(np.shape(spec["const"]))
    return np.asarray(spec["const"], dtype=spec["dtype"])


def run_host_stage(plan: list[dict], env: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Execute the plan over `env` (tensor name -> array, holding the feeds); returns env with all outputs.

    Nodes run as soon as their inputs exist; all ready StringToHashBucketFast nodes are hashed in one batch
    (one vectorized Fingerprint64 pass for every column instead of one per column).
    """
    pending = list(plan)
    while pending:
        ready = [n for n in pending if all("tensor" not in i or i["tensor"] in env for i in n["inputs"])]
        if not ready:
            raise RuntimeError(f"host stage stuck at {pending[0]['name']}: missing inputs")
        hashes = [n for n in ready if n["op"] == "StringToHashBucketFast"]
        if hashes:
            results = hash_bucket_fast_many([(env[n["inputs"][0]["tensor"]], int(n["attrs"]["num_buckets"]))
                                             for n in hashes])
            for n, r in zip(hashes, results):
                env[n["outputs"][0]] = r
        for node in ready:
            if node["op"] == "StringToHashBucketFast":
                continue
            args = [env[i["tensor"]] if "tensor" in i else _const(i) for i in node["inputs"]]
            args = [np.asarray(a) if isinstance(a, DecimalStrings) else a for a in args]
            out = HOST_IMPLS[node["op"]](node, *args)
            for name, val in zip(node["outputs"], out if isinstance(out, tuple) else (out,)):
                env[name] = val
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    return env
