"""ParseExampleV2 in the host stage: serialized tf.Example protos -> TF's sparse and dense feature tensors.

TF's semantics (example_parsing_ops / example_proto_fast_parsing): a VarLen (sparse) key gives indices [[b, j]],
its values in stored order and dense_shape [B, longest list]; a FixedLen (dense) key gives [B, *shape], each
example holding exactly prod(shape) values, or none and then the default (no default: TF's "required" error);
a value list of the wrong kind is an error. Strings stay bytes.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError
from ..tfproto import Example

_KIND = {"string": "bytes_list", "float32": "float_list", "int64": "int64_list"}
_TF_NAME = {"string": "string", "float32": "float", "int64": "int64"}


def _values(feature, key: str, dtype: str, b: int):
    kind = feature.WhichOneof("kind")
    if kind is None:
        return []
    if kind != _KIND[dtype]:
        got = {"bytes_list": "string", "float_list": "float", "int64_list": "int64"}[kind]
        raise InvalidArgumentError(f"Name: <unknown>, Key: {key}, Index: {b}.  Data types don't match. Data type: "
                                   f"{got} but expected type: {_TF_NAME[dtype]}")
    return getattr(feature, kind).value


def parse_examples(serialized, sparse: list[tuple[str, str]], dense: list[tuple[str, str, list[int], list | None]]):
    """sparse: [(key, dtype)]; dense: [(key, dtype, shape, default values or None)] ->
    (indices..., values..., dense_shapes..., dense values...) in ParseExampleV2's output order."""
    flat = np.asarray(serialized, dtype=object).reshape(-1)
    batch = flat.size
    examples = []
    for b, s in enumerate(flat.tolist()):
        ex = Example()
        try:
            ex.ParseFromString(s if isinstance(s, bytes) else str(s).encode())
        except Exception as err:  # noqa: BLE001 - protobuf's DecodeError
            raise InvalidArgumentError(f"Could not parse example input, value: {s[:40]!r}") from err
        examples.append(ex.features.feature)
    s_idx, s_val, s_shape = [], [], []
    for key, dtype in sparse:
        lists = [_values(f[key], key, dtype, b) if key in f else [] for b, f in enumerate(examples)]
        counts = np.array([len(v) for v in lists], np.int64)
        rows = np.repeat(np.arange(batch, dtype=np.int64), counts)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if batch else counts
        cols = np.arange(rows.size, dtype=np.int64) - starts[rows] if rows.size else rows
        s_idx.append(np.stack([rows, cols], axis=1).reshape(-1, 2))
        vals = [v for lst in lists for v in lst]
        s_val.append(np.array(vals, dtype=object) if dtype == "string" else np.array(vals, dtype=dtype))
        s_shape.append(np.array([batch, int(counts.max()) if batch else 0], np.int64))
    d_out = []
    for key, dtype, shape, default in dense:
        size = int(np.prod(shape)) if shape else 1
        rows = []
        for b, f in enumerate(examples):
            vals = _values(f[key], key, dtype, b) if key in f else []
            if not len(vals):
                if default is None:
                    raise InvalidArgumentError(f"Name: <unknown>, Feature: {key} (data type: {_TF_NAME[dtype]}) is "
                                               "required but could not be found.")
                vals = default
            if len(vals) != size:
                raise InvalidArgumentError(f"Name: <unknown>, Key: {key}, Index: {b}.  Number of {_TF_NAME[dtype]} "
                                           f"values != expected.  Values size: {len(vals)} but output shape: "
                                           f"{list(shape)}")
            rows.append(list(vals))
        arr = np.array(rows, dtype=object if dtype == "string" else dtype).reshape([batch] + list(shape))
        d_out.append(arr)
    return tuple(s_idx + s_val + s_shape + d_out)


def serialize_examples(features: dict, sparse_keys: set) -> np.ndarray:
    """Feature dict (sparse: (indices, values, dense_shape); dense: [B, ...]) -> serialized tf.Examples (object
    array of bytes), one per row. For tests and benchmarks: builds what a client would send."""
    batch = None
    for k, v in features.items():
        batch = int(np.asarray(v[2])[0]) if k in sparse_keys else len(v)
        break
    exs = [Example() for _ in range(batch or 0)]
    for key, v in features.items():
        if key in sparse_keys:
            idx, vals, _ = v
            vals = np.asarray(vals)
            rows = np.asarray(idx).reshape(-1, 2)[:, 0] if len(vals) else np.zeros(0, np.int64)
            for r, x in zip(rows.tolist(), vals.tolist()):
                _append(exs[r].features.feature[key], x)
        else:
            for r, row in enumerate(np.asarray(v).reshape(len(v), -1).tolist()):
                for x in row:
                    _append(exs[r].features.feature[key], x)
    return np.array([e.SerializeToString() for e in exs] + [b""], dtype=object)[:-1]


def _append(feature, x) -> None:
    if isinstance(x, (bytes, str)):
        feature.bytes_list.value.append(x if isinstance(x, bytes) else x.encode())
    elif isinstance(x, float):
        feature.float_list.value.append(x)
    else:
        feature.int64_list.value.append(int(x))
