"""Saving feeds (and expected outputs) without pickle: strings as UTF-8 bytes + offsets in an .npz.

Feeds: dense arrays, SparseTensors `(indices, values, dense_shape)`, RaggedTensors `(values, row_splits)`."""

from __future__ import annotations

import numpy as np


def _pack_strings(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    items = [v if isinstance(v, bytes) else str(v).encode() for v in values.reshape(-1)]
    offsets = np.cumsum([0] + [len(b) for b in items]).astype(np.int64)
    return np.frombuffer(b"".join(items), dtype=np.uint8), offsets


def _unpack_strings(data: np.ndarray, offsets: np.ndarray, shape) -> np.ndarray:
    raw = data.tobytes()
    out = np.array([raw[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)], dtype=object)
    return out.reshape(shape)


_SEP = "\x1f"  # feature names may hold "/" (nested signature inputs)
_PARTS = {3: ("indices", "values", "dense_shape"), 2: ("values", "row_splits")}


def save(path: str, feeds: dict, **extra: np.ndarray) -> None:
    """feeds: {name: array | (indices, values, dense_shape) | (values, row_splits)}; extra arrays stored as-is
    (e.g. expected=...)."""
    arrays = {}
    for name, v in feeds.items():
        parts = dict(zip(_PARTS[len(v)], v)) if isinstance(v, tuple) else {"value": v}
        for part, arr in parts.items():
            arr = np.asarray(arr)
            key = f"feed{_SEP}{name}{_SEP}{part}"
            if arr.dtype == object:
                data, offsets = _pack_strings(arr)
                arrays[key + _SEP + "str_data"], arrays[key + _SEP + "str_offsets"] = data, offsets
                arrays[key + _SEP + "str_shape"] = np.array(arr.shape, dtype=np.int64)
            else:
                arrays[key] = arr
    for k, v in extra.items():
        arrays[f"extra{_SEP}{k}"] = np.asarray(v)
    np.savez(path, **arrays)


def load(path: str) -> tuple[dict, dict]:
    """-> (feeds, extra)."""
    with np.load(path, allow_pickle=False) as data:
        files = {k: data[k] for k in data.files}
    feeds: dict = {}
    parts: dict = {}
    extra = {}
    for key, arr in files.items():
        if key.startswith("extra" + _SEP):
            extra[key[6:]] = arr
            continue
        _, name, part, *rest = key.split(_SEP)
        if rest and rest[0] != "str_data":
            continue
        if rest:
            base = f"feed{_SEP}{name}{_SEP}{part}"
            arr = _unpack_strings(arr, files[base + _SEP + "str_offsets"], tuple(files[base + _SEP + "str_shape"]))
        parts.setdefault(name, {})[part] = arr
    for name, p in parts.items():
        feeds[name] = p["value"] if "value" in p else tuple(p[k] for k in _PARTS[3 if "indices" in p else 2])
    return feeds, extra
