"""Saving feeds (and expected outputs) without pickle: strings as UTF-8 bytes + offsets in an .npz."""

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


def save(path: str, feeds: dict, **extra: np.ndarray) -> None:
    """feeds: {name: array | (indices, values, dense_shape)}; extra arrays stored as-is (e.g. expected=...)."""
    arrays = {}
    for name, v in feeds.items():
        parts = {"indices": v[0], "values": v[1], "dense_shape": v[2]} if isinstance(v, tuple) else {"value": v}
        for part, arr in parts.items():
            arr = np.asarray(arr)
            key = f"feed/{name}/{part}"
            if arr.dtype == object:
                data, offsets = _pack_strings(arr)
                arrays[key + "/str_data"], arrays[key + "/str_offsets"] = data, offsets
                arrays[key + "/str_shape"] = np.array(arr.shape, dtype=np.int64)
            else:
                arrays[key] = arr
    for k, v in extra.items():
        arrays[f"extra/{k}"] = np.asarray(v)
    np.savez(path, **arrays)


def load(path: str) -> tuple[dict, dict]:
    """-> (feeds, extra)."""
    with np.load(path, allow_pickle=False) as data:
        files = {k: data[k] for k in data.files}
    feeds: dict = {}
    parts: dict = {}
    extra = {}
    for key, arr in files.items():
        if key.startswith("extra/"):
            extra[key[6:]] = arr
            continue
        _, name, part, *rest = key.split("/")
        if rest and rest[0] != "str_data":
            continue
        if rest:
            base = f"feed/{name}/{part}"
            arr = _unpack_strings(arr, files[base + "/str_offsets"], tuple(files[base + "/str_shape"]))
        parts.setdefault(name, {})[part] = arr
    for name, p in parts.items():
        feeds[name] = p["value"] if "value" in p else (p["indices"], p["values"], p["dense_shape"])
    return feeds, extra
