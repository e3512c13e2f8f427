"""How a recom_tvm model's feeds travel as Triton tensors: the request format of the exported repository and of
the PyTriton binding.

One Triton request carries one recom_tvm request (B rows, the feeds `CompiledModel.run` takes) with a leading
*request* dimension of 1 on every tensor: Triton's batch dimension counts requests, not rows, because a
SparseTensor's components have no row dimension Triton could concatenate (see batching.py).

Tensor names: a dense feature by its name; a sparse one as "<name>.indices" (INT64 [nnz, rank]),
"<name>.values" ([nnz]) and "<name>.dense_shape" (INT64 [rank]); a ragged one as "<name>.values" and
"<name>.row_splits". String features are BYTES. A model served from serialized tf.Examples has one BYTES input,
its feature (usually "examples", [B]). A feature with a default (a TF placeholder_with_default) is an optional
input: a request may leave it out and the model takes the default, as TF's Session.run does. A scalar feature
travels as [1] (with the request dim, [1, 1]).

REQUEST_FORMATS names the formats a repository accepts; "feeds" is the only one today. A keyed-jagged packed
request (one UINT8 tensor, decoded natively: issue 15) becomes a second format: one more input tensor, declared
optional in config.pbtxt, that `decode` hands to the model's packed entry point instead of the feeds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

REQUEST_FORMATS = ("feeds",)

# recom_tvm / TF dtype -> (config.pbtxt data_type, wire datatype)
DTYPES = {
    "float32": ("TYPE_FP32", "FP32"), "float64": ("TYPE_FP64", "FP64"), "float16": ("TYPE_FP16", "FP16"),
    "int64": ("TYPE_INT64", "INT64"), "int32": ("TYPE_INT32", "INT32"), "int16": ("TYPE_INT16", "INT16"),
    "int8": ("TYPE_INT8", "INT8"), "uint8": ("TYPE_UINT8", "UINT8"), "uint16": ("TYPE_UINT16", "UINT16"),
    "uint32": ("TYPE_UINT32", "UINT32"), "uint64": ("TYPE_UINT64", "UINT64"), "bool": ("TYPE_BOOL", "BOOL"),
    "string": ("TYPE_STRING", "BYTES"),
}
PARTS = {"dense": ("value",), "sparse": ("indices", "values", "dense_shape"), "ragged": ("values", "row_splits")}


@dataclasses.dataclass(frozen=True)
class WireTensor:
    """One Triton tensor: `dims` without the leading request dimension, -1 where the size varies."""

    name: str
    dtype: str  # recom_tvm dtype ("float32", "string", ...)
    dims: tuple[int, ...]
    feature: str = ""
    part: str = "value"
    optional: bool = False  # a feature with a default: config.pbtxt's `optional: true`

    @property
    def config_type(self) -> str:
        return DTYPES[self.dtype][0]

    @property
    def datatype(self) -> str:
        return DTYPES[self.dtype][1]


def tensor_name(feature: str, part: str, kind: str) -> str:
    return feature if kind == "dense" else f"{feature}.{part}"


def inputs(spec) -> list[WireTensor]:
    """The Triton inputs of a model, from its serving spec (`model.spec`)."""
    out = []
    for f in spec.features:
        for part in PARTS[f["kind"]]:
            ph = spec.placeholders[f["tensors"][part]]
            if ph["dtype"] not in DTYPES:
                raise ValueError(f"feature {f['name']!r}: dtype {ph['dtype']} has no Triton type")
            if ph["shape"] is None:
                raise ValueError(f"feature {f['name']!r}: unknown rank; Triton needs the rank of every input")
            # a scalar travels as [1] (Triton's dims may not be empty when it batches)
            dims = tuple(int(d) if int(d) >= 0 else -1 for d in ph["shape"]) or (1,)
            out.append(WireTensor(tensor_name(f["name"], part, f["kind"]), ph["dtype"], dims, f["name"], part,
                                  "default" in f))
    return out


def outputs(spec) -> list[WireTensor]:
    """The Triton outputs: symbolic dims become -1."""
    return [WireTensor(o["name"], o["dtype"], tuple(int(d) if str(d).isdigit() else -1 for d in o["shape"]))
            for o in spec.outputs]


def features_json(spec) -> list[dict]:
    """What a client needs to encode feeds (written into config.pbtxt's parameters): [{name, kind}], with
    "optional": true for a feature the request may leave out (it has a default), "scalar": true for a dense
    feature of shape [] (sent as [1])."""
    out = []
    for f in spec.features:
        flags = {"optional": True} if "default" in f else {}
        if f["kind"] == "dense" and spec.placeholders[f["tensors"]["value"]]["shape"] == []:
            flags["scalar"] = True
        out.append({"name": f["name"], "kind": f["kind"], **flags})
    return out


def features_from_names(names: list[str]) -> list[dict]:
    """The features behind a model's input names, by the naming rule above (for servers whose config carries no
    "recom_tvm_features" parameter, e.g. the PyTriton binding)."""
    out, seen = [], set()
    for name in names:
        base, _, part = name.rpartition(".")
        kind = next((k for k, parts in PARTS.items() if k != "dense" and part in parts
                     and all(f"{base}.{p}" in names for p in parts)), None) if base else None
        feature = base if kind else name
        if feature not in seen:
            seen.add(feature)
            out.append({"name": feature, "kind": kind or "dense"})
    return out


# ------------------------------------------------------------------------------------------------ client side
def to_wire(features: list[dict], feeds: Mapping) -> dict[str, np.ndarray]:
    """Feeds keyed by feature (what CompiledModel.run takes) -> {tensor name: array with the request dim}.

    `features`: `features_json(spec)` (or the repository's "recom_tvm_features" parameter). Strings become
    object arrays of bytes (Triton's BYTES)."""
    unknown = set(feeds) - {f["name"] for f in features}
    if unknown:
        raise KeyError(f"unknown feed(s) {sorted(unknown)}; the model takes {[f['name'] for f in features]}")
    out = {}
    for f in features:
        if f["name"] not in feeds:
            if f.get("optional"):
                continue  # the server takes the feature's default
            raise KeyError(f"missing feed for feature {f['name']!r}")
        value = feeds[f["name"]]
        parts = PARTS[f["kind"]]
        vals = (value,) if f["kind"] == "dense" else _components(f["name"], value, parts)
        for part, v in zip(parts, vals):
            arr = _wire_array(v)
            out[tensor_name(f["name"], part, f["kind"])] = (arr.reshape(1) if arr.ndim == 0 else arr)[None]
    return out


def _components(name: str, value, parts: tuple) -> tuple:
    if isinstance(value, Mapping):
        return tuple(value[p] for p in parts)
    if all(hasattr(value, p) for p in parts):  # tf.SparseTensor, tf.RaggedTensor
        return tuple(np.asarray(getattr(value, p)) for p in parts)
    if isinstance(value, (tuple, list)) and len(value) == len(parts):
        return tuple(value)
    raise TypeError(f"feature {name!r}: expected {parts} as a tuple, a dict or a tensor object, "
                    f"got {type(value).__name__}")


def _wire_array(value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind == "U":
        return np.vectorize(lambda s: s.encode(), otypes=[object])(arr) if arr.size else arr.astype(object)
    if arr.dtype.kind == "S":
        return arr.astype(object)
    if arr.dtype == object:
        flat = [x.encode() if isinstance(x, str) else x for x in arr.reshape(-1).tolist()]
        return np.array(flat + [None], dtype=object)[:-1].reshape(arr.shape)
    return arr


# ------------------------------------------------------------------------------------------------ server side
def from_wire(features: list[dict], arrays: Mapping[str, np.ndarray]) -> dict:
    """{tensor name: array with the request dim} -> feeds for CompiledModel.run (sparse as tuples). An optional
    feature's tensor may be absent (or None, as Triton's backend hands it over): the feed is left out, the model
    takes its default."""
    feeds = {}
    for f in features:
        parts = PARTS[f["kind"]]
        names = [tensor_name(f["name"], part, f["kind"]) for part in parts]
        if f.get("optional") and all(arrays.get(n) is None for n in names):
            continue
        vals = []
        for name in names:
            arr = arrays.get(name)
            if arr is None:
                raise KeyError(f"missing input {name!r} (feature {f['name']!r} has no default: every request must "
                               f"carry it)")
            if arr.ndim == 0 or arr.shape[0] != 1:
                raise ValueError(f"input {name!r}: expected a leading request "
                                 f"dimension of 1 (one recom_tvm request per Triton request), got shape "
                                 f"{list(arr.shape)}")
            vals.append(arr[0].reshape(()) if f.get("scalar") and arr[0].size == 1 else arr[0])
        feeds[f["name"]] = vals[0] if f["kind"] == "dense" else tuple(vals)
    return feeds
