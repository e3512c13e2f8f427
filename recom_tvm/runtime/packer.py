"""Packing a request for the fused embedding kernel: every column's inputs in one int64 buffer (one copy).

Layout: see recom_tvm.ops.fused_kernel. Vectorized per column; the per-column metadata is static (the spec).
"""

from __future__ import annotations

import numpy as np

PACKED = "recom_tvm:packed"
PACKED_SIZES = "recom_tvm:packed_sizes"


def _float_bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).reshape(-1).view(np.int32).astype(np.int64)


def pack(fused: dict, env: dict, batch: int) -> tuple[np.ndarray, int]:
    """-> (packed buffer, number of work units)."""
    fields = fused["meta_fields"]
    meta = np.asarray(fused["meta"], dtype=np.int64).reshape(len(fused["columns"]), len(fields))
    cols = fused["columns"]
    ncols = len(cols)
    lanes = meta[:, fields.index("lanes")]
    per_tile = fused["threads"] // lanes
    tiles = -(-batch // per_tile) if batch else np.zeros(ncols, np.int64)
    unit_start = np.zeros(ncols + 1, np.int64)
    unit_start[1:] = np.cumsum(tiles)
    pieces, data_base, aux = [], np.zeros(ncols, np.int64), np.zeros(ncols, np.int64)
    pos = 3 * ncols + 1
    for c, col in enumerate(cols):
        kind, t = col["kind"], col["tensors"]
        if kind == "csr":
            rows = np.asarray(env[t["indices"]])[:, 0]
            counts = np.bincount(rows, minlength=batch) if rows.size else np.zeros(batch, np.int64)
            offsets = np.zeros(batch + 1, np.int64)
            np.cumsum(counts[:batch], out=offsets[1:])
            piece = np.concatenate([offsets, np.asarray(env[t["ids"]], dtype=np.int64).reshape(-1)])
        elif kind == "dense":
            x = np.asarray(env[t["x"]])
            aux[c] = x.shape[1]
            piece = x.reshape(-1).astype(np.int64)
        elif kind == "one":
            piece = np.asarray(env[t["ids"]], dtype=np.int64).reshape(-1)
        else:  # bucket, numeric: the raw floats
            piece = _float_bits(env[t["x"]])
        data_base[c] = pos
        pos += piece.size
        pieces.append(piece)
    packed = np.concatenate([unit_start, data_base, aux, *pieces]) if pieces else np.concatenate(
        [unit_start, data_base, aux])
    return packed, int(unit_start[-1])


def is_virtual_zeros(arr) -> bool:
    """A zero-strided view standing for a value-less table (see recom_tvm.frontend.graph.zero_array)."""
    return isinstance(arr, np.ndarray) and arr.size > 0 and arr.ndim > 0 and all(s == 0 for s in arr.strides)


def flat_table_layout(recipe: dict, shapes: dict) -> list[tuple[str, int, int, int]]:
    """(param, offset in floats, rows, padded row length) of each table in a "concat_flat" recipe."""
    pad = int(recipe.get("pad_rows_to", 1))
    out, offset = [], 0
    for t in recipe["concat_flat"]:
        rows, dim = shapes[t]
        stride = -(-dim // pad) * pad
        out.append((t, offset, rows, stride))
        offset += rows * stride
    return out


def apply_recipes(recipes: dict, params: dict) -> dict:
    """Build the params the passes asked for (the fused kernel's flat tables) from the imported ones."""
    out = dict(params)
    for name, recipe in recipes.items():
        if "concat_flat" in recipe:
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
