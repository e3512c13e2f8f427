"""Packing a request for the fused embedding kernel: every column's inputs in one buffer (one copy), int64 or
int32 as the model says (spec.fused["packed_dtype"], chosen by FuseColumns).

Layout: see recom_tvm.ops.fused_kernel; a model hashing strings on the device (spec.fused["device_hash"]) ships
those columns' strings in a region after the header instead of their ids (runtime.fused_layout). Vectorized per
column; the per-column metadata is static (the spec). The native host stage writes the same bytes
(runtime/native/src/rh_exec.c, write_column).
"""

from __future__ import annotations

import numpy as np

from ..errors import RequestTooLargeError
from . import compact
from .fingerprint import DecimalStrings
from .fused_layout import (INT32_MAX, INT32_MIN, TEXT_DECIMAL, device_hash_columns, hash_region_words,
                           segment_text)
from .strings import end_to_end

PACKED = "recom_tvm:packed"
PACKED_SIZES = "recom_tvm:packed_sizes"
# the longest int32 packed input (its words hold positions in it); the native host stage refuses past INT32_MAX
PACKED_INT32_LIMIT = INT32_MAX


def packed_dtype(fused: dict) -> str:
    """The model's packed dtype (models built before int32 packing recorded none: int64)."""
    return fused.get("packed_dtype", "int64")


def check_packed_length(fused: dict, length: int, sizes, limit: int | None = None,
                        unit: str = "int32 words") -> None:
    """An int32 packed input holds positions in itself: a request whose packed length is above `limit` (default
    PACKED_INT32_LIMIT) is refused (RequestTooLargeError naming the largest column and its feed), never wrapped."""
    limit = PACKED_INT32_LIMIT if limit is None else limit
    if length <= limit:
        return
    cols = fused["columns"]
    c = int(np.argmax(sizes))
    col = cols[c]
    feed = next(iter(col["tensors"].values()), "?")
    raise RequestTooLargeError(
        f"the request's packed input for the fused kernel would hold {length} {unit}, above the int32 layout's "
        f"limit of {limit} (the largest column, {col.get('name') or col.get('label') or c!r}, fed from {feed!r}, "
        f"takes {int(sizes[c])}): send smaller requests, or build the model with "
        f"recom_tvm.config.packed_dtype = 'int64' (RECOM_TVM_PACKED_DTYPE=int64)")


def _put_ids(dst: np.ndarray, ids: np.ndarray) -> None:
    """ids into the packed buffer: as the int64 layout holds them (numpy's integer conversion), narrowed
    saturating to int32 (every comparison the kernel makes of an id with a value below 2^31 keeps its truth value;
    a wrapping cast could turn an out-of-range id into a valid row)."""
    if dst.dtype == np.int64 or (ids.dtype.kind == "i" and ids.dtype.itemsize <= 4) or ids.dtype.kind == "b":
        dst[...] = ids
        return
    wide = ids if ids.dtype == np.int64 else ids.astype(np.int64)
    if wide.size and INT32_MIN <= wide.min() and wide.max() <= INT32_MAX:  # the common case: a plain copy
        dst[...] = wide  # (min + max + copy: half of np.clip's time)
        return
    np.clip(wide, INT32_MIN, INT32_MAX, out=dst, casting="unsafe")


def hash_strings_count(fused: dict, env: dict) -> int:
    """The number of strings a request ships for the device hash (the sizes argument's second value)."""
    return sum(int(np.prod(np.shape(env[h["strings"]]), dtype=np.int64)) for h in device_hash_columns(fused))


def _segment_values(h: dict, value) -> np.ndarray:
    """What a device-hash segment ships per element: its strings (object array), or for a decimal segment (AsString
    of integers, fused_layout.TEXT_DECIMAL) the integers as int64."""
    if segment_text(h) != TEXT_DECIMAL:
        return np.asarray(value)
    if not isinstance(value, DecimalStrings):  # (the host plan's AsString of integers makes one)
        raise RuntimeError(f"device-hash segment {h['strings']!r}: expected AsString of integers, got "
                           f"{type(value).__name__}")
    return np.asarray(value.ints).astype(np.int64, copy=False)


def _segment_bytes(h: dict, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bytes end to end, length of each) of a segment: a decimal segment's values as 8 little-endian bytes each."""
    if segment_text(h) != TEXT_DECIMAL:
        return end_to_end(values)
    flat = np.ascontiguousarray(values.reshape(-1), dtype="<i8")
    return flat.view(np.uint8), np.full(flat.size, 8, np.int64)


def pack(fused: dict, env: dict, batch: int) -> np.ndarray:
    """-> the packed buffer (the model's packed dtype). Sizes first, then every piece written in place."""
    cols = fused["columns"]
    ncols = len(cols)
    dtype = np.dtype(packed_dtype(fused))
    hashed = device_hash_columns(fused)
    strings_of = {h["column"]: _segment_values(h, env[h["strings"]]) for h in hashed}  # ids come from these
    sources, sizes, aux = [], np.zeros(ncols, np.int64), np.zeros(ncols, np.int64)
    for c, col in enumerate(cols):
        kind, t = col["kind"], col["tensors"]
        if kind == "csr":
            ids = strings_of[c] if c in strings_of else np.asarray(env[t["ids"]])
            x = (np.asarray(env[t["indices"]])[:, 0], ids.reshape(-1),
                 np.ascontiguousarray(env[t["weights"]], dtype=np.float32).reshape(-1) if "weights" in t else None)
            sizes[c] = batch + 1 + x[1].size * (2 if x[2] is not None else 1)
        elif kind in ("dense", "one"):
            x = strings_of[c] if c in strings_of else np.asarray(env[t["x"] if kind == "dense" else t["ids"]])
            if kind == "dense":  # [B, T] padded ids (a scalar feature [B]: one slot per row)
                aux[c] = x.shape[1] if x.ndim == 2 else 1
            sizes[c] = x.size
        else:  # bucket, numeric: the raw floats, bit for bit
            x = np.ascontiguousarray(env[t["x"]], dtype=np.float32)
            sizes[c] = x.size
        sources.append(x)
    head = 2 * ncols
    strings = [_segment_bytes(h, strings_of[h["column"]]) for h in hashed]
    nbytes = sum(int(b.size) for b, _ in strings)
    region = hash_region_words(len(hashed), sum(int(n.size) for _, n in strings), nbytes, dtype.itemsize)
    total = head + region + int(sizes.sum())
    if dtype == np.int32:
        check_packed_length(fused, total, sizes)
        if nbytes > PACKED_INT32_LIMIT:  # byte offsets are int32 words too
            check_packed_length(fused, nbytes, _string_bytes(fused, strings), unit="bytes of strings")
    data_base = head + region + np.concatenate([[0], np.cumsum(sizes)[:-1]]) if ncols else np.zeros(0, np.int64)
    packed = np.empty(total, dtype)
    packed[:ncols] = data_base
    packed[ncols:head] = aux
    if hashed:
        _write_hash_region(packed, head, hashed, strings, data_base, cols, batch)
    floats: list[np.ndarray] = []  # a run of consecutive float columns, written with one copy
    float_pos = 0
    for c, (col, x, pos) in enumerate(zip(cols, sources, data_base.tolist())):
        kind = col["kind"]
        if kind in ("bucket", "numeric"):
            if not floats:
                float_pos = pos
            floats.append(x.reshape(-1))
            if c + 1 < ncols and cols[c + 1]["kind"] in ("bucket", "numeric"):
                continue
            run = np.concatenate(floats) if len(floats) > 1 else floats[0]
            packed[float_pos:float_pos + run.size] = run.view(np.int32)
            floats = []
        elif kind == "csr":
            rows, ids, weights = x
            offsets = packed[pos:pos + batch + 1]
            offsets[0] = 0
            np.cumsum(np.bincount(rows, minlength=batch)[:batch] if rows.size else np.zeros(batch, np.int64),
                      out=offsets[1:])
            if c not in strings_of:  # (hashed: zeroed with the strings' region, written by the device)
                _put_ids(packed[pos + batch + 1:pos + batch + 1 + ids.size], ids)
            if weights is not None:  # float32 bit patterns, after the ids
                packed[pos + batch + 1 + ids.size:pos + sizes[c]] = weights.view(np.int32)
        elif c not in strings_of:  # dense, one
            _put_ids(packed[pos:pos + sizes[c]], x.reshape(-1))
    return packed


def _ids_at(col: dict, base: int, batch: int) -> int:
    """Where a column's ids start in the packed buffer (a CSR column's after its batch + 1 offsets)."""
    return base + batch + 1 if col["kind"] == "csr" else base


def _write_hash_region(packed, at: int, hashed: list, strings: list, data_base, cols, batch: int) -> None:
    """The device hash's region (fused_layout): segments, byte offsets, bytes; the hashed ids' words zeroed."""
    s = len(hashed)
    counts = np.array([n.size for _, n in strings], np.int64)
    n = int(counts.sum())
    packed[at] = 0
    packed[at + 1:at + s + 1] = np.cumsum(counts)
    packed[at + s + 1:at + 2 * s + 1] = [_ids_at(cols[h["column"]], int(data_base[h["column"]]), batch)
                                         for h in hashed]
    packed[at + 2 * s + 1] = 0
    if n:
        packed[at + 2 * s + 2:at + 2 * s + 2 + n] = np.cumsum(np.concatenate([lens for _, lens in strings]))
    bytes_at = at + 2 * s + 2 + n
    end = int(data_base[0]) if len(data_base) else packed.size
    words = packed[bytes_at:end]
    words[...] = 0
    view = words.view(np.uint8)
    pos = 0
    for b, _ in strings:
        view[pos:pos + b.size] = b
        pos += b.size
    for h, cnt in zip(hashed, counts.tolist()):  # the ids the kernel writes: 0 until it does
        start = _ids_at(cols[h["column"]], int(data_base[h["column"]]), batch)
        packed[start:start + cnt] = 0


def _string_bytes(fused: dict, strings: list) -> np.ndarray:
    """Bytes per column (hashed columns' strings), for the int32 layout's error message."""
    out = np.zeros(len(fused["columns"]), np.int64)
    for h, (b, _) in zip(device_hash_columns(fused), strings):
        out[h["column"]] += b.size
    return out


def is_virtual_zeros(arr) -> bool:
    """A zero-strided view standing for a value-less table (see recom_tvm.frontend.graph.zero_array)."""
    return isinstance(arr, np.ndarray) and arr.size > 0 and arr.ndim > 0 and all(s == 0 for s in arr.strides)


def flat_table_layout(recipe: dict, shapes: dict) -> list[tuple[str, int, int, int]]:
    """(param, offset in floats, rows, padded row length) of each table in a "concat_flat" recipe (for compact
    tables: in 32-bit words of the encoded rows, see recom_tvm.runtime.compact)."""
    if compact.is_compact(recipe):
        return compact.layout(recipe, shapes)
    pad = int(recipe.get("pad_rows_to", 1))
    out, offset = [], 0
    for t in recipe["concat_flat"]:
        rows, dim = shapes[t] if t in shapes else recipe["shapes"][t]
        stride = -(-dim // pad) * pad
        out.append((t, offset, rows, stride))
        offset += rows * stride
    return out


def apply_recipes(recipes: dict, params: dict) -> dict:
    """Build the params the passes asked for (the fused kernel's flat tables) from the imported ones."""
    out = dict(params)
    for name, recipe in recipes.items():
        if "concat_flat" in recipe and compact.is_compact(recipe):  # fp16 / bf16 / int8 rows, encoded here
            if all(is_virtual_zeros(params[t]) for t in recipe["concat_flat"]):  # every encoding of 0 is 0 bits
                size = compact.flat_size(compact.layout(recipe, {t: params[t].shape for t in recipe["concat_flat"]}))
                out[name] = np.broadcast_to(np.zeros((), np.float32), (size,))
            else:
                out[name] = compact.build_flat(recipe, params)
        elif "concat_flat" in recipe:
            pad = int(recipe.get("pad_rows_to", 1))
            parts = []
            if any(is_virtual_zeros(params[t]) for t in recipe["concat_flat"]):
                layout = flat_table_layout(recipe, {t: params[t].shape for t in recipe["concat_flat"]})
                size = max(layout[-1][1] + layout[-1][2] * layout[-1][3], pad) if layout else pad
                if all(is_virtual_zeros(params[t]) for t in recipe["concat_flat"]):
                    out[name] = np.broadcast_to(np.zeros((), np.float32), (size,))
                    continue
            for t in recipe["concat_flat"]:
                table = np.asarray(params[t], dtype=np.float32)
                rows, dim = table.shape
                if dim % pad:
                    table = np.concatenate([table, np.zeros((rows, (-dim) % pad), np.float32)], axis=1)
                parts.append(np.ascontiguousarray(table).reshape(-1))
            out[name] = np.concatenate(parts) if parts else np.zeros(pad, np.float32)
    return out
