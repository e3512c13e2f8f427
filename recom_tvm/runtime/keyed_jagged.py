"""Requests in TorchRec's keyed-jagged layout: one buffer per dtype instead of one array per feed.

    kjt = KeyedJagged.from_feeds(model.spec, feeds)    # or built by the client directly
    model.run(kjt)                                      # same answers and errors as model.run(feeds)

`keys` are the model's feature names (any order, each once); `lengths` holds, key after key, the number of values
of each of the `batch` rows (TorchRec's KeyedJaggedTensor: key-major, int32 or int64); `values` maps a dtype name
("int64", "float32", "string", ...) to one buffer with the values of every key of that dtype, key after key and
row after row; strings are one bytes buffer plus offsets [n + 1]. A sparse feature becomes indices (row, position
in the row), values and dense_shape [batch, longest row]; a dense feature [batch, d1, ...] has exactly d1 * ...
values in every row; a ragged feature becomes values and row_splits.

The native host stage reads the buffers in place (no per-feature Python). `to_feeds` gives the equivalent dict of
numpy feeds: the numpy reference runs on it where the native path does not, so errors are the same as for feeds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from ..errors import FeedError
from .feeds import _ragged_parts, _sparse_parts
from .spec import InputSpec
from .strings import to_bytes


@dataclasses.dataclass
class KeyedJagged:
    keys: tuple[str, ...]
    lengths: np.ndarray                 # int32 / int64 [len(keys) * batch]
    batch: int
    values: dict[str, np.ndarray]       # dtype name -> values of every key of that dtype, in key order
    strings: tuple[np.ndarray, np.ndarray] | None = None  # (uint8 bytes, int64 offsets [n + 1])

    def __post_init__(self) -> None:
        self.keys = tuple(self.keys)

    # ------------------------------------------------------------------------------------------ building
    @classmethod
    def from_feeds(cls, spec: InputSpec, feeds: Mapping) -> KeyedJagged:
        """The keyed-jagged form of TF-style feeds (what `CompiledModel.run` takes) for the model of `spec`.
        A client-side helper: Python per feature. Sparse feeds are ordered by row (positions within a row kept)."""
        keys, lengths, per_dtype, strings = [], [], {}, []
        batch = None
        for f in spec.features:
            name, kind = f["name"], f["kind"]
            if name not in feeds:
                raise FeedError(f"missing feed for feature {name}; the model takes "
                                f"{[g['name'] for g in spec.features]}")
            value = feeds[name]
            if kind == "sparse":
                indices, vals, shape = (np.asarray(x) for x in _sparse_parts(name, value))
                b = int(shape.reshape(-1)[0]) if shape.size else 0
                rows = indices.reshape(-1, indices.shape[-1] if indices.ndim == 2 else 2)[:, 0] if indices.size \
                    else np.zeros(0, np.int64)
                order = np.argsort(rows, kind="stable")
                vals = np.asarray(vals).reshape(-1)[order]
                counts = np.bincount(rows, minlength=b)[:b] if rows.size else np.zeros(b, np.int64)
            elif kind == "ragged":
                vals, splits = (np.asarray(x) for x in _ragged_parts(name, value))
                b = splits.size - 1
                counts = np.diff(splits)
            else:
                vals = np.asarray(value)
                b = vals.shape[0] if vals.ndim else 0
                per = int(np.prod(vals.shape[1:])) if vals.ndim > 1 else 1
                counts = np.full(b, per, np.int64)
                vals = vals.reshape(-1)
            if batch is None:
                batch = b
            elif b != batch:
                raise FeedError(f"feature {name!r}: batch {b}, but an earlier feature has {batch} "
                                "(a keyed-jagged request has one batch size)")
            dtype = spec.placeholders[f["tensors"]["values" if kind != "dense" else "value"]]["dtype"]
            keys.append(name)
            lengths.append(np.asarray(counts, np.int64))
            if dtype == "string":
                strings.extend(to_bytes(vals))
            else:
                per_dtype.setdefault(dtype, []).append(np.asarray(vals, dtype=dtype))
        values = {d: np.ascontiguousarray(np.concatenate(v)) for d, v in per_dtype.items()}
        string_buffers = None
        if any(spec.placeholders[f["tensors"]["values" if f["kind"] != "dense" else "value"]]["dtype"] == "string"
               for f in spec.features):
            offsets = np.zeros(len(strings) + 1, np.int64)
            np.cumsum([len(s) for s in strings], out=offsets[1:])
            string_buffers = (np.frombuffer(b"".join(strings), np.uint8), offsets)
        return cls(tuple(keys), np.concatenate(lengths) if lengths else np.zeros(0, np.int64), batch or 0,
                   values, string_buffers)

    # --------------------------------------------------------------------------------------------- reading
    def to_feeds(self, spec: InputSpec) -> dict:
        """The equivalent feeds dict (numpy, what the reference takes); FeedError for a malformed request."""
        names = {f["name"]: f for f in spec.features}
        unknown = [k for k in self.keys if k not in names]
        if unknown:
            raise FeedError(f"unknown feed(s) {sorted(unknown)}; the model takes {list(names)}")
        if len(set(self.keys)) != len(self.keys):
            raise FeedError("a keyed-jagged request names a feature twice")
        lengths = np.asarray(self.lengths).reshape(-1)
        if lengths.dtype.kind not in "iu":
            raise FeedError(f"keyed-jagged lengths must be integers, got {lengths.dtype}")
        batch = int(self.batch)
        if batch < 0 or lengths.size != len(self.keys) * batch:
            raise FeedError(f"keyed-jagged lengths: {lengths.size} entries for {len(self.keys)} keys x batch {batch}")
        if (lengths < 0).any():
            raise FeedError("keyed-jagged lengths must be >= 0")
        used: dict[str, int] = {}
        strings = None
        if self.strings is not None:
            data, offsets = np.asarray(self.strings[0], np.uint8), np.asarray(self.strings[1], np.int64).reshape(-1)
            if offsets.size == 0 or offsets[0] < 0 or (np.diff(offsets) < 0).any() or offsets[-1] > data.size:
                # (slicing would silently cut or empty the strings; the native path refuses the same offsets)
                raise FeedError(f"keyed-jagged string offsets must be n + 1 non-decreasing positions within the "
                                f"{data.size} bytes")
            raw = data.tobytes()
            strings = [raw[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
        feeds = {}
        for k, name in enumerate(self.keys):
            f = names[name]
            kind = f["kind"]
            tensor = f["tensors"]["values" if kind != "dense" else "value"]
            dtype = spec.placeholders[tensor]["dtype"]
            counts = lengths[k * batch:(k + 1) * batch].astype(np.int64)
            n = int(counts.sum())
            start = used.get(dtype, 0)
            used[dtype] = start + n
            if dtype == "string":
                if strings is None or start + n > len(strings):
                    raise FeedError(f"feature {name!r}: the string values end before its lengths do")
                vals = np.empty(n, dtype=object)
                vals[:] = strings[start:start + n]
            else:
                buf = self.values.get(dtype)
                if buf is None or start + n > np.size(buf):
                    raise FeedError(f"feature {name!r}: the {dtype} values end before its lengths do")
                vals = np.asarray(buf).reshape(-1)[start:start + n]
            rows = np.repeat(np.arange(batch, dtype=np.int64), counts)
            if kind == "sparse":
                starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if batch else counts
                pos = np.arange(n, dtype=np.int64) - starts[rows] if n else rows
                width = int(counts.max()) if batch else 0
                feeds[name] = (np.stack([rows, pos], axis=1).reshape(-1, 2), vals, np.array([batch, width], np.int64))
            elif kind == "ragged":
                splits = np.zeros(batch + 1, np.int64)
                np.cumsum(counts, out=splits[1:])
                feeds[name] = (vals, splits)
            else:
                shape = spec.placeholders[tensor]["shape"]
                inner = [int(d) for d in (shape or [None])[1:]]
                if len(inner) == 1 and inner[0] < 0:  # [batch, T]: T is the rows' common length
                    inner = [int(counts[0]) if batch else 0]
                if any(d < 0 for d in inner):
                    raise FeedError(f"dense feature {name!r} has unknown dims {shape}: not expressible as "
                                    "keyed-jagged")
                per = int(np.prod(inner)) if inner else 1
                if (counts != per).any():
                    r = int(np.argmax(counts != per))
                    raise FeedError(f"dense feature {name!r}: every row needs {per} values, row {r} has "
                                    f"{int(counts[r])}")
                feeds[name] = vals.reshape([batch] + inner)
        for dtype, buf in self.values.items():
            if np.size(buf) != used.get(dtype, 0):
                raise FeedError(f"keyed-jagged {dtype} values: {np.size(buf)}, the lengths add up to "
                                f"{used.get(dtype, 0)}")
        if strings is not None and len(strings) != used.get("string", 0):
            raise FeedError(f"keyed-jagged strings: {len(strings)}, the lengths add up to {used.get('string', 0)}")
        return feeds
