"""Packing a request for the fused embedding kernel: every column's inputs in one int64 buffer (one copy).

Layout: see recom_tvm.ops.fused_kernel. Vectorized per column; the per-column metadata is static (the spec).
"""

from __future__ import annotations

import numpy as np

PACKED = "recom_tvm:packed"
PACKED_SIZES = "recom_tvm:packed_sizes"


def pack(fused: dict, env: dict, batch: int) -> np.ndarray:
    """-> the packed buffer. Sizes first, then every piece written in place."""
    cols = fused["columns"]
    ncols = len(cols)
    sources, sizes, aux = [], np.zeros(ncols, np.int64), np.zeros(ncols, np.int64)
    for c, col in enumerate(cols):
        kind, t = col["kind"], col["tensors"]
        if kind == "csr":
            x = (np.asarray(env[t["indices"]])[:, 0], np.asarray(env[t["ids"]]).reshape(-1),
                 np.ascontiguousarray(env[t["weights"]], dtype=np.float32).reshape(-1) if "weights" in t else None)
            sizes[c] = batch + 1 + x[1].size * (2 if x[2] is not None else 1)
        elif kind in ("dense", "one"):
            x = np.asarray(env[t["x"] if kind == "dense" else t["ids"]])
            if kind == "dense":  # [B, T] padded ids (a scalar feature [B]: one slot per row)
                aux[c] = x.shape[1] if x.ndim == 2 else 1
            sizes[c] = x.size
        else:  # bucket, numeric: the raw floats, bit for bit
            x = np.ascontiguousarray(env[t["x"]], dtype=np.float32)
            sizes[c] = x.size
        sources.append(x)
    head = 2 * ncols
    data_base = head + np.concatenate([[0], np.cumsum(sizes)[:-1]]) if ncols else np.zeros(0, np.int64)
    packed = np.empty(head + int(sizes.sum()), np.int64)
    packed[:ncols] = data_base
    packed[ncols:head] = aux
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
            packed[pos + batch + 1:pos + batch + 1 + ids.size] = ids
            if weights is not None:  # float32 bit patterns, after the ids
                packed[pos + batch + 1 + ids.size:pos + sizes[c]] = weights.view(np.int32)
        else:  # dense, one
            packed[pos:pos + sizes[c]] = x.reshape(-1)
    return packed


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
