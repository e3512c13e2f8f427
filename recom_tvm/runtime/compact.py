"""Compact embedding tables for the fused kernel: fp16 / bf16 rows and int8 rows with a row-wise scale and bias.

The fused kernel reads every table from one flat parameter of 32-bit words. Each row starts 16-byte aligned and
takes a whole number of 16-byte units (the `stride4` field of the kernel's meta), so every lane's load is a vector
load of the row's own bytes:

    float32   dim floats                                          ceil(dim / 4) units
    float16   dim IEEE halves                                     ceil(dim / 8) units
    bfloat16  dim bfloat16 (the top half of a float32)            ceil(dim / 8) units
    int8      dim uint8 codes q, padded to 8 bytes, then the row's float32 scale and bias (FBGEMM's fused
              8-bit rowwise format, its scale and bias 8-byte aligned): value = q * scale + bias
                                                                  ceil((align8(dim) + 8) / 16) units

Quantization follows FBGEMM's FloatToFused8BitRowwiseQuantized: bias = min(row), scale = (max - min) / 255,
q = rint((x - min) * 255 / (max - min + 1e-8)). fp16 and bf16 round to nearest even. The kernel accumulates in
float32 and its output stays float32. numpy only: the runtime re-encodes tables given to `set_params`.
"""

from __future__ import annotations

import numpy as np

# dtype name -> code in the kernel's meta ("tdtype"); float32 is the code every column had before compact tables
CODES = {"float32": 0, "float16": 1, "bfloat16": 2, "int8": 3}
NAMES = {v: k for k, v in CODES.items()}
_EPS = np.float32(1e-8)  # FBGEMM's kEpsilon


def check_dtype(dtype: str, what: str = "table_dtype") -> str:
    if dtype not in CODES:
        raise ValueError(f"{what}: {dtype!r} is not a table dtype; use one of {sorted(CODES)}")
    return dtype


def _align(x: int, a: int) -> int:
    return -(-x // a) * a


def row_units(dtype: str, dim: int) -> int:
    """16-byte units one row of a `dim`-wide table takes."""
    if dtype == "float32":
        return -(-dim // 4)
    if dtype in ("float16", "bfloat16"):
        return -(-dim // 8)
    return -(-(_align(dim, 8) + 8) // 16)


def row_words(dtype: str, dim: int) -> int:
    return 4 * row_units(dtype, dim)


def qparams_word(dim: int) -> int:
    """Word of an int8 row holding its scale (the bias follows)."""
    return _align(dim, 8) // 4


def encode(table: np.ndarray, dtype: str, name: str = "table") -> np.ndarray:
    """A float32 [rows, dim] table -> its rows in the compact format, as float32 words [rows, row_words]."""
    table = np.asarray(table, dtype=np.float32)
    if table.ndim != 2:
        raise ValueError(f"{name}: a table is [rows, dim], got shape {table.shape}")
    rows, dim = table.shape
    words = row_words(dtype, dim)
    out = np.zeros((rows, words * 4), np.uint8)
    if dtype == "float32":
        out[:, :4 * dim] = table.view(np.uint8).reshape(rows, 4 * dim)
    elif dtype == "float16":
        with np.errstate(over="ignore"):
            half = table.astype(np.float16)
        over = np.isinf(half) & np.isfinite(table)
        if over.any():
            r, c = (int(v[0]) for v in np.nonzero(over))
            raise ValueError(f"{name}: value {float(table[r, c])!r} (row {r}, column {c}) overflows float16 "
                             f"(|x| > 65504); keep this table float32 (table_dtype={{'{name}': 'float32', ...}})")
        out[:, :2 * dim] = half.view(np.uint8).reshape(rows, 2 * dim)
    elif dtype == "bfloat16":
        out[:, :2 * dim] = to_bfloat16_bits(table).view(np.uint8).reshape(rows, 2 * dim)
    elif dtype == "int8":
        if not np.isfinite(table).all():
            r, c = (int(v[0]) for v in np.nonzero(~np.isfinite(table)))
            raise ValueError(f"{name}: value {float(table[r, c])!r} (row {r}, column {c}) is not finite: int8 rows "
                             f"need finite values (keep this table float32 or float16)")
        q, scale, bias = quantize_rowwise(table)
        out[:, :dim] = q
        qp = np.stack([scale, bias], axis=1).astype(np.float32)
        at = 4 * qparams_word(dim)
        out[:, at:at + 8] = qp.view(np.uint8).reshape(rows, 8)
    else:
        check_dtype(dtype)
    return out.view(np.float32)


def decode(words: np.ndarray, dtype: str, dim: int) -> np.ndarray:
    """The float32 values the kernel reads from encoded rows [rows, row_words] (what a numpy reference of the
    quantized model uses)."""
    b = np.ascontiguousarray(words, dtype=np.float32).view(np.uint8)
    rows = b.shape[0]
    if dtype == "float32":
        return b[:, :4 * dim].copy().view(np.float32).reshape(rows, dim)
    if dtype == "float16":
        return b[:, :2 * dim].copy().view(np.float16).reshape(rows, dim).astype(np.float32)
    if dtype == "bfloat16":
        bits = b[:, :2 * dim].copy().view(np.uint16).reshape(rows, dim).astype(np.uint32) << np.uint32(16)
        return bits.view(np.float32)
    if dtype == "int8":
        at = 4 * qparams_word(dim)
        qp = b[:, at:at + 8].copy().view(np.float32).reshape(rows, 2)
        return b[:, :dim].astype(np.float32) * qp[:, :1] + qp[:, 1:]
    raise ValueError(check_dtype(dtype))


def to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounded to nearest even; NaN stays NaN."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    nan = np.isnan(x)
    if nan.any():
        rounded = np.where(nan, (bits >> np.uint32(16)) | np.uint32(0x40), rounded)
    return rounded.astype(np.uint16)


def quantize_rowwise(table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FBGEMM's row-wise 8-bit quantization (float32 arithmetic): (q uint8 [rows, dim], scale, bias)."""
    t = np.asarray(table, dtype=np.float32)
    if t.shape[1] == 0:
        z = np.zeros(t.shape[0], np.float32)
        return np.zeros(t.shape, np.uint8), z, z
    lo = t.min(axis=1)
    rng = t.max(axis=1) - lo
    scale = rng / np.float32(255)
    inv = np.float32(255) / (rng + _EPS)
    q = np.rint((t - lo[:, None]) * inv[:, None])
    return np.clip(q, 0, 255).astype(np.uint8), scale.astype(np.float32), lo.astype(np.float32)


def encode_torch(torch, table, dtype: str):
    """encode() on a torch float32 [rows, dim] tensor, on its device (GPU benchmarks): uint8 [rows, row_bytes].
    Same rounding as encode (torch: round half to even, bfloat16 round to nearest even)."""
    rows, dim = table.shape
    out = torch.zeros(rows, 16 * row_units(dtype, dim), dtype=torch.uint8, device=table.device)
    if dtype == "float32":
        out[:, :4 * dim] = table.contiguous().view(torch.uint8).reshape(rows, 4 * dim)
    elif dtype in ("float16", "bfloat16"):
        half = table.to(torch.float16 if dtype == "float16" else torch.bfloat16).contiguous()
        out[:, :2 * dim] = half.view(torch.uint8).reshape(rows, 2 * dim)
    else:
        lo = table.min(dim=1).values
        rng = table.max(dim=1).values - lo
        q = torch.round((table - lo[:, None]) * (255.0 / (rng + 1e-8))[:, None]).clamp(0, 255).to(torch.uint8)
        out[:, :dim] = q
        qp = torch.stack([rng / 255.0, lo], dim=1).contiguous()
        at = 4 * qparams_word(dim)
        out[:, at:at + 8] = qp.view(torch.uint8).reshape(rows, 8)
    return out


# ------------------------------------------------------------------------------------- the flat parameter
def table_dtypes(recipe: dict) -> dict[str, str]:
    """{table: dtype} of a "concat_flat" recipe (float32 for recipes written before compact tables)."""
    dts = recipe.get("dtypes") or {}
    return {t: dts.get(t, "float32") for t in recipe["concat_flat"]}


def is_compact(recipe: dict) -> bool:
    return any(d != "float32" for d in table_dtypes(recipe).values())


def layout(recipe: dict, shapes: dict) -> list[tuple[str, int, int, int]]:
    """(table, offset in words, rows, row length in words) of each table of a "concat_flat" recipe; `shapes` fills
    in tables whose shape the recipe does not record."""
    dts = table_dtypes(recipe)
    known = recipe.get("shapes") or {}
    out, offset = [], 0
    for t in recipe["concat_flat"]:
        rows, dim = (int(v) for v in (known.get(t) or shapes[t]))
        stride = row_words(dts[t], dim)
        out.append((t, offset, rows, stride))
        offset += rows * stride
    return out


def flat_size(entries: list[tuple[str, int, int, int]]) -> int:
    """Words of the flat parameter (at least 4: a 16-byte buffer even without tables)."""
    return max(entries[-1][1] + entries[-1][2] * entries[-1][3] if entries else 0, 4)


def build_flat(recipe: dict, params: dict) -> np.ndarray:
    """The flat parameter from the imported float32 tables, each encoded in its dtype."""
    dts = table_dtypes(recipe)
    entries = layout(recipe, {t: params[t].shape for t in recipe["concat_flat"]})
    flat = np.zeros(flat_size(entries), np.float32)
    for t, offset, rows, stride in entries:
        flat[offset:offset + rows * stride] = encode(params[t], dts[t], t).reshape(-1)
    return flat


def write_table(recipe: dict, flat: np.ndarray, name: str, table: np.ndarray) -> np.ndarray:
    """Encode `table` (float32 values) into its place in `flat`, in place (a writable float32 array); -> flat."""
    entries = {t: (o, r, s) for t, o, r, s in layout(recipe, {})}
    offset, rows, stride = entries[name]
    dim = (recipe.get("shapes") or {})[name][1]
    table = np.asarray(table, dtype=np.float32)
    if table.shape != (rows, dim):
        raise ValueError(f"{name}: expected a [{rows}, {dim}] table, got {list(table.shape)}")
    flat[offset:offset + rows * stride] = encode(table, table_dtypes(recipe)[name], name).reshape(-1)
    return flat


def read_table(recipe: dict, flat: np.ndarray, name: str) -> np.ndarray:
    """The float32 values the kernel reads for table `name` (decoded from the flat parameter)."""
    entries = {t: (o, r, s) for t, o, r, s in layout(recipe, {})}
    offset, rows, stride = entries[name]
    dim = (recipe.get("shapes") or {})[name][1]
    return decode(np.asarray(flat)[offset:offset + rows * stride].reshape(rows, stride),
                  table_dtypes(recipe)[name], dim)
