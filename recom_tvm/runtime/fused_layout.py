"""The fused embedding kernel's static per-column layout (`meta` rows), shared by the compiler (which writes it)
and the runtime (which packs requests for it, or synthesizes them for tuning). Constants, and one reader."""

from __future__ import annotations

# stride4: 16-byte units per (padded) table row (ceil(dim / 4) for float32 rows); table_base in 16-byte units;
# pre_a / pre_b: identity range and default, the rows added to a negative id (wrap_negative), or the bucketize
# boundaries' offset and count; tdtype: how the table's rows are stored (recom_tvm.runtime.compact.CODES:
# 0 float32, 1 float16, 2 bfloat16, 3 int8)
META = ("kind", "dim", "stride4", "out_off", "table_base", "rows", "mode", "pre", "pre_a", "pre_b", "filter",
        "weighted", "tdtype")
# meta rows written before compact tables had no tdtype (all float32): readers accept them (meta_rows)
META_V1 = len(META) - 1
# filter bits: drop entries with a negative id (TF's id >= 0 filter); drop entries with weight <= 0 (TF prunes them
# for weighted mean / sqrtn)
FILTER_NEG_ID = 1
FILTER_NONPOS_WEIGHT = 2
KIND = {"csr": 0, "dense": 1, "one": 2, "bucket": 3, "numeric": 4}
KIND_NAME = {v: k for k, v in KIND.items()}
MULTI_ID_KINDS = (KIND["csr"], KIND["dense"])
MODE = {"sum": 0, "mean": 1, "sqrtn": 2}
PRE = {"none": 0, "identity_default": 1, "wrap_negative": 2}  # wrap_negative: id < 0 -> id + pre_a (Keras)


def meta_rows(meta):
    """`meta` as an int64 [C, len(META)] array; rows of the 12-field layout (before tdtype) get tdtype 0."""
    import numpy as np

    m = np.asarray(meta, dtype=np.int64)
    if m.ndim != 2:
        m = m.reshape(-1, len(META))
    if m.shape[1] == META_V1:
        m = np.concatenate([m, np.zeros((m.shape[0], 1), np.int64)], axis=1)
    if m.shape[1] != len(META):
        raise ValueError(f"fused kernel meta rows have {m.shape[1]} fields, expected {len(META)}")
    return m


# ------------------------------------------------------------------------------------ the packed input's dtype
# int32 packing halves the bytes a request copies; it is exact when every value the kernel compares an id with fits
# in 31 bits (ids are narrowed saturating, so each comparison keeps its truth value) and the request's packed length
# does (offsets and column bases are positions in it).
PACKED_DTYPES = ("int64", "int32")
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def int32_blockers(meta) -> list[tuple[int, str, int]]:
    """(column, field, value) of each meta value an id is compared with that int32 ids cannot represent: a
    table's `rows` (the clamp, `id >= rows`) and `pre_a` (the identity-with-default range, the rows Keras adds to
    a negative id). Bucketized and numeric columns pack floats: nothing of theirs counts."""
    m = meta_rows(meta)
    out = []
    for c, row in enumerate(m.tolist()):
        if row[META.index("kind")] in (KIND["bucket"], KIND["numeric"]):
            continue
        for field in ("rows", "pre_a"):
            v = row[META.index(field)]
            if not INT32_MIN <= v <= INT32_MAX:
                out.append((c, field, v))
    return out


def choose_packed_dtype(meta, requested: str = "auto", names=None) -> str:
    """The fused kernel's packed dtype for these columns: "int32" where exact (int32_blockers is empty), else
    "int64"; requested "int64" / "int32" forces it (int32 where it is not exact raises ValueError naming the
    column). names: the columns' names, for that message."""
    requested = (requested or "auto").strip().lower()
    if requested not in PACKED_DTYPES + ("auto",):
        raise ValueError(f"packed_dtype must be 'auto', 'int32' or 'int64', got {requested!r}")
    if requested == "int64":
        return "int64"
    blockers = int32_blockers(meta)
    if not blockers:
        return "int32"
    if requested == "int32":
        c, field, v = blockers[0]
        name = names[c] if names is not None and c < len(names) else f"#{c}"
        raise ValueError(f"packed_dtype='int32' cannot hold the ids of fused column {name!r}: its {field} is {v}, "
                         f"not below 2^31 (use 'auto' or 'int64')")
    return "int64"


# ------------------------------------------------------------------------- strings hashed on the device
# A model whose spec.fused["device_hash"] lists columns (recom_tvm.passes.device_hash, config.device_hash) ships
# those columns' strings instead of their ids: StringToHashBucketFast runs in one kernel before the fused one
# (recom_tvm.ops.fingerprint_tir.hash_packed_func), writing each id where the fused kernel reads it; the host
# leaves those words 0. Each hashed column is a *segment*; S segments, n strings, in the packed words from
# HASH_REGION = 2C on (the column data follows the region; the header's data_base says where):
#   [R, R + S]                 the first string of each segment (S + 1 entries, the last one n)
#   [R + S + 1, R + 2S + 1)     where each segment's ids start in the packed buffer
#   [R + 2S + 1, R + 2S + 2 + n) the strings' byte offsets (relative to the bytes, [n + 1])
#   then the bytes end to end, little-endian in the words, and HASH_PAD zero words (the kernel reads a string's
#   last word with its successor)
# The module's sizes argument is then [B, n] (n sizes the hash kernel's grid).
# A segment's text (the hash kernel's int64 [S] `text` argument, spec.fused["device_hash"][k]["text"]): TEXT_BYTES,
# the strings' own bytes; or TEXT_DECIMAL, a column hashing AsString of integers: each "string" is the int64
# value's 8 bytes (its offsets step by 8) and the kernel hashes the value's decimal text, which it makes itself
# (the host neither formats nor hashes).
HASH_PAD = 2
TEXT_BYTES, TEXT_DECIMAL = 0, 1
TEXT = {"bytes": TEXT_BYTES, "decimal": TEXT_DECIMAL}


def hash_region_words(segments: int, strings: int, nbytes: int, word_bytes: int) -> int:
    """Packed words of the device-hash region (0 when the model hashes nothing on the device)."""
    if not segments:
        return 0
    return 2 * segments + 2 + strings + -(-nbytes // word_bytes) + HASH_PAD


def device_hash_columns(fused: dict) -> list[dict]:
    """The model's device-hashed columns, in segment order: {"column", "strings", "num_buckets"[, "text"]} (models
    built before device hashing, or with it off, have none; "text" absent = "bytes")."""
    return list(fused.get("device_hash") or ())


def segment_text(h: dict) -> int:
    """A device-hash segment's TEXT_* code."""
    return TEXT[h.get("text", "bytes")]
