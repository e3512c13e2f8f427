"""The host stage: TF ops on strings (and what feeds them) run in numpy before the compiled module.

A plan is a JSON list of nodes `{"name", "op", "inputs", "attrs", "outputs"}`; an input is `{"tensor": t}` (a
feed or an earlier node's output) or `{"const": v, "dtype": d}`. Implementations follow TF's kernels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import InvalidArgumentError
from .fingerprint import hash_bucket_fast


def _as_string(node, x):
    if x.dtype == np.bool_:
        return np.vectorize(lambda v: b"true" if v else b"false", otypes=[object])(x)
    return np.array([str(int(v)).encode() for v in x.reshape(-1)], dtype=object).reshape(x.shape)


def _compare(fn):
    def impl(node, a, b):
        if a.dtype == object or b.dtype == object:
            a = _normalize_strings(a)
            b = _normalize_strings(b)
        return fn(a, b)

    return impl


def _normalize_strings(x):
    if x.dtype != object:
        return x
    return np.array([v.encode() if isinstance(v, str) else bytes(v) for v in x.reshape(-1)],
                    dtype=object).reshape(x.shape)


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


def _reshape(node, x, shape):
    return x.reshape([int(s) for s in np.asarray(shape).reshape(-1)])


HOST_IMPLS: dict[str, Callable] = {
    "StringToHashBucketFast": lambda node, x: hash_bucket_fast(x, int(node["attrs"]["num_buckets"])),
    "AsString": _as_string,
    "Identity": lambda node, x: x,
    "Cast": lambda node, x: x.astype(node["attrs"]["DstT"]),
    "Equal": _compare(lambda a, b: np.equal(a, b)),
    "NotEqual": _compare(lambda a, b: np.not_equal(a, b)),
    "Where": lambda node, x: np.argwhere(x).astype(np.int64),
    "GatherNd": _gather_nd,
    "GatherV2": _gather,
    "Reshape": _reshape,
}


def _const(spec: dict) -> np.ndarray:
    if spec["dtype"] == "string":
        return np.array([s.encode("latin-1") for s in np.asarray(spec["const"]).reshape(-1).tolist()],
                        dtype=object).reshape(np.shape(spec["const"]))
    return np.asarray(spec["const"], dtype=spec["dtype"])


def run_host_stage(plan: list[dict], env: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Execute the plan over `env` (tensor name -> array, holding the feeds); returns env with all outputs."""
    for node in plan:
        args = [env[i["tensor"]] if "tensor" in i else _const(i) for i in node["inputs"]]
        out = HOST_IMPLS[node["op"]](node, *args)
        outs = out if isinstance(out, tuple) else (out,)
        for name, val in zip(node["outputs"], outs):
            env[name] = val
    return env
