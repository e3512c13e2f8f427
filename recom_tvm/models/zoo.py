"""Named model specs: RECom's models E and F, mixed N-column models, one small model per column type, the demo."""

from __future__ import annotations

import numpy as np

from .spec import ColumnSpec, ModelSpec

_BUCKET_BOUNDARIES = tuple(float(b) for b in range(0, 500, 5))  # 0, 5, ..., 495 -> 101 rows


def _recom_model(name: str, counts: tuple[int, int, int, int, int], top: tuple[int, ...], large_rows: int,
                 seed: int, large_dim: int = 32) -> ModelSpec:
    n_bucket, n_int, n_str, n_multi, n_large = counts
    cols = [ColumnSpec(f"b{i}", "bucketized", 8, "mean", boundaries=_BUCKET_BOUNDARIES) for i in range(n_bucket)]
    cols += [ColumnSpec(f"i{i}", "hash_int", 8, "mean", buckets=100, vocab=1000) for i in range(n_int)]
    cols += [ColumnSpec(f"s{i}", "hash_string", 8, "mean", buckets=10_000, vocab=100_000) for i in range(n_str)]
    cols += [ColumnSpec(f"m{i}", "hash_string", 8, "sum", buckets=10_000, ids_per_row=(1, 10), vocab=100_000)
             for i in range(n_multi)]
    cols += [ColumnSpec(f"l{i}", "hash_string", large_dim, "sum", buckets=large_rows, ids_per_row=(1, 10), vocab=1 << 30)
             for i in range(n_large)]
    return ModelSpec(name, tuple(cols), dense_width=32, bottom_mlp=(32,), top_mlp=top, seed=seed)


def model_e(large_rows: int = 1 << 23) -> ModelSpec:
    """RECom's synthesized model E: 1000 columns (880 bucketized, 50 int hash, 50 string one-hot, 15 string
    multi-hot, 5 large multi-hot of `large_rows` rows), concat width 8,120, top MLP 1024-1024-128-1."""
    return _recom_model(f"model_e_{large_rows}", (880, 50, 50, 15, 5), (1024, 1024, 128), large_rows, seed=5)


def model_f(large_rows: int = 1 << 23) -> ModelSpec:
    """RECom's model F: 1200 columns (1000 / 90 / 100 / 7 / 3), top MLP 2048-1024-1024-512-1."""
    return _recom_model(f"model_f_{large_rows}", (1000, 90, 100, 7, 3), (2048, 1024, 1024, 512), large_rows,
                        seed=6)


def model_l(large_rows: int = 1 << 23) -> ModelSpec:
    """E's large columns alone, 40 of them: multi-hot (1-10 ids) string columns of `large_rows` rows x 32 floats,
    tables that live in DRAM (E's own table bytes come 93% from cache-resident tables): the compact-table case
    (issue 16), where halving a table's bytes halves the bytes that bind. Top MLP as E's."""
    return _recom_model(f"model_l_{large_rows}", (0, 0, 0, 0, 40), (1024, 1024, 128), large_rows, seed=7)


def model_l128(large_rows: int = 1 << 20) -> ModelSpec:
    """model_l with 128-float rows (512 bytes fp32, 256 fp16, 136 int8 + scale and bias): where a row spans several
    64-byte DRAM accesses, so int8 rows can read fewer of them than fp16 rows (at 32 floats, fp16's 64 bytes are
    one access and int8's 40 bytes cannot do better: measured 2026-12-08)."""
    return _recom_model(f"model_l128_{large_rows}", (0, 0, 0, 0, 40), (1024, 1024, 128), large_rows, seed=7,
                        large_dim=128)


def model_f_small(large_rows: int = 4096) -> ModelSpec:
    """F's column kinds, dims, combiners and MLP at a tenth of its bucketized / int / string columns (all 7 multi-hot
    and 3 large ones kept): 129 columns, a quick stand-in for F in tests and benchmarks (its TF export ~30 s on a
    2-core host, F's ~6 min)."""
    return _recom_model(f"model_f_small_{large_rows}", (100, 9, 10, 7, 3), (2048, 1024, 1024, 512), large_rows,
                        seed=6)


def mixed(n: int, seed: int = 0, dense_inputs: bool = True) -> ModelSpec:
    """n columns of mixed kinds, combiners, dims and input formats, 1-10 ids per multi-hot row."""
    rng = np.random.default_rng(seed)
    cols = []
    for i in range(n):
        kind = ["bucketized", "hash_string", "hash_int", "identity", "numeric"][int(rng.integers(0, 5))]
        comb = ["mean", "sum", "sqrtn"][int(rng.integers(0, 3))]
        dim = [4, 8, 16][int(rng.integers(0, 3))]
        fmt = "dense" if dense_inputs and kind != "bucketized" and rng.random() < 0.25 else "sparse"
        multi = (1, 10) if rng.random() < 0.5 else (1, 1)
        if kind == "bucketized":
            cols.append(ColumnSpec(f"c{i}", kind, dim, comb, boundaries=tuple(float(x) for x in range(0, 50, 5))))
        elif kind == "numeric":
            cols.append(ColumnSpec(f"c{i}", kind, int(rng.integers(1, 4))))
        elif kind == "identity":
            default = 0 if rng.random() < 0.5 else None
            cols.append(ColumnSpec(f"c{i}", kind, dim, comb, buckets=50, default_value=default,
                                   input=fmt, ids_per_row=multi, vocab=50))
        else:
            cols.append(ColumnSpec(f"c{i}", kind, dim, comb, buckets=200, input=fmt, ids_per_row=multi, vocab=5000))
    return ModelSpec(f"mixed_{n}_{seed}", tuple(cols), dense_width=4, bottom_mlp=(8,), top_mlp=(32,), seed=seed)


def per_column_type() -> dict[str, ModelSpec]:
    """One small model per column type and input format (the differential-test matrix)."""
    b = tuple(float(x) for x in (-1.0, 0.0, 0.5, 2.0))
    variants = {
        "numeric": [ColumnSpec("x", "numeric", 3)],
        "bucketized": [ColumnSpec("x", "bucketized", 8, "mean", boundaries=b)],
        "hash_string": [ColumnSpec("x", "hash_string", 8, "mean", buckets=100, ids_per_row=(1, 4))],
        "hash_string_dense": [ColumnSpec("x", "hash_string", 8, "sum", buckets=100, input="dense",
                                         ids_per_row=(1, 4))],
        "hash_int": [ColumnSpec("x", "hash_int", 8, "sqrtn", buckets=100, ids_per_row=(1, 4))],
        "hash_int_dense": [ColumnSpec("x", "hash_int", 8, "mean", buckets=100, input="dense", ids_per_row=(1, 4))],
        "identity_default": [ColumnSpec("x", "identity", 8, "sum", buckets=20, default_value=3,
                                        ids_per_row=(1, 4), vocab=25)],
        "identity_default_dense": [ColumnSpec("x", "identity", 8, "mean", buckets=20, default_value=0,
                                              input="dense", ids_per_row=(1, 4), vocab=25)],
        "identity": [ColumnSpec("x", "identity", 8, "mean", buckets=20, ids_per_row=(1, 4), vocab=20)],
        "identity_dense": [ColumnSpec("x", "identity", 8, "sqrtn", buckets=20, input="dense", ids_per_row=(1, 4),
                                      vocab=20)],
        "vocab_string": [ColumnSpec("x", "vocab_string", 8, "mean", buckets=30, ids_per_row=(1, 4), vocab=40)],
        "vocab_string_oov": [ColumnSpec("x", "vocab_string", 8, "sum", buckets=30, ids_per_row=(1, 4), vocab=40,
                                        oov_buckets=3)],
        "vocab_int_default": [ColumnSpec("x", "vocab_int", 8, "sqrtn", buckets=20, default_value=0,
                                         ids_per_row=(1, 4), vocab=25)],
        "vocab_file_oov": [ColumnSpec("x", "vocab_file", 8, "mean", buckets=30, ids_per_row=(1, 4), vocab=40,
                                      oov_buckets=2)],
        "indicator_identity_default": [ColumnSpec("x", "identity", 8, buckets=20, default_value=3,
                                                  ids_per_row=(0, 4), vocab=25, indicator=True)],
        "indicator_vocab_string": [ColumnSpec("x", "vocab_string", 8, buckets=30, ids_per_row=(1, 4), vocab=40,
                                              oov_buckets=2, indicator=True)],
        "weighted_hash_mean": [ColumnSpec("x", "hash_string", 8, "mean", buckets=100, ids_per_row=(0, 4),
                                          weighted=True)],
        "weighted_identity_sum": [ColumnSpec("x", "identity", 8, "sum", buckets=20, default_value=3,
                                             ids_per_row=(0, 4), vocab=25, weighted=True)],
        "weighted_hash_int_sqrtn": [ColumnSpec("x", "hash_int", 8, "sqrtn", buckets=100, ids_per_row=(1, 4),
                                                 weighted=True)],
    }
    return {k: ModelSpec(f"type_{k}", tuple(v), dense_width=3, bottom_mlp=(4,), top_mlp=(8,), seed=1)
            for k, v in variants.items()}


def weighted_mix() -> ModelSpec:
    """Weighted columns of every combiner (with and without default / pruning) next to plain ones: one fused kernel."""
    return ModelSpec("weighted_mix", (
        ColumnSpec("a", "hash_string", 8, "mean", buckets=100, ids_per_row=(0, 4), weighted=True),
        ColumnSpec("b", "identity", 8, "sum", buckets=20, default_value=3, ids_per_row=(0, 4), vocab=25,
                   weighted=True),
        ColumnSpec("c", "hash_int", 8, "sqrtn", buckets=100, ids_per_row=(1, 4), weighted=True),
        ColumnSpec("d", "hash_string", 8, "mean", buckets=100, ids_per_row=(0, 4)),
        ColumnSpec("e", "identity", 4, "mean", buckets=20, ids_per_row=(0, 3), vocab=20, weighted=True),
        ColumnSpec("f", "bucketized", 8, "mean", boundaries=(-1.0, 0.0, 0.5, 2.0)),
    ), dense_width=3, bottom_mlp=(4,), top_mlp=(8,), seed=2)


def vocab_mix() -> ModelSpec:
    """Vocabulary columns (string list, with OOV buckets, a weighted vocabulary file, int keys) beside a hash and a
    bucketized column: string-key lookups run in the host stage and fuse; the int-key column (looked up in the
    compiled module) is written into its slice of the fused kernel's output."""
    return ModelSpec("vocab_mix", (
        ColumnSpec("a", "vocab_string", 8, "mean", buckets=30, ids_per_row=(0, 4), vocab=40),
        ColumnSpec("b", "vocab_string", 8, "sum", buckets=30, ids_per_row=(1, 4), vocab=40, oov_buckets=3),
        ColumnSpec("c", "vocab_file", 4, "sqrtn", buckets=30, ids_per_row=(1, 4), vocab=40, oov_buckets=2,
                   weighted=True),
        ColumnSpec("d", "hash_string", 8, "mean", buckets=100, ids_per_row=(0, 4)),
        ColumnSpec("e", "vocab_int", 8, "mean", buckets=20, ids_per_row=(0, 3), vocab=25, default_value=1),
        ColumnSpec("f", "bucketized", 8, "mean", boundaries=(-1.0, 0.0, 0.5, 2.0)),
    ), dense_width=3, bottom_mlp=(4,), top_mlp=(8,), seed=2)


def shared_mix() -> ModelSpec:
    """Shared embedding columns (TF1 only; TF wants one categorical type and bucket count per group): two hash
    columns through one table, beside plain columns."""
    return ModelSpec("shared_mix", (
        ColumnSpec("a", "hash_string", 8, "mean", buckets=50, ids_per_row=(0, 4), shared="ab"),
        ColumnSpec("b", "hash_string", 8, "mean", buckets=50, ids_per_row=(1, 3), shared="ab"),
        ColumnSpec("c", "hash_int", 4, "sum", buckets=30, ids_per_row=(1, 3)),
        ColumnSpec("d", "bucketized", 4, "mean", boundaries=(0.0, 1.0)),
    ), dense_width=2, bottom_mlp=(4,), top_mlp=(8,), seed=5)


def crossed_mix() -> ModelSpec:
    """crossed_column over a string and an int feature (and a 3-way cross), embedded and as an indicator, beside the
    crossed features' own columns."""
    return ModelSpec("crossed_mix", (
        ColumnSpec("a", "hash_string", 8, "mean", buckets=50, ids_per_row=(0, 3), vocab=30),
        ColumnSpec("b", "hash_int", 4, "sum", buckets=40, ids_per_row=(1, 2), vocab=20),
        ColumnSpec("c", "identity", 4, "mean", buckets=10, default_value=0, ids_per_row=(1, 2), vocab=12),
        ColumnSpec("ab", "crossed", 8, "mean", buckets=100, cross=("a", "b")),
        ColumnSpec("abc", "crossed", 8, "sqrtn", buckets=200, cross=("a", "b", "c")),
        ColumnSpec("bc", "crossed", buckets=12, cross=("b", "c"), indicator=True),
    ), dense_width=2, bottom_mlp=(4,), top_mlp=(8,), seed=4)


def example_mix(estimator: bool = False) -> ModelSpec:
    """Served from serialized tf.Examples (ParseExampleV2 in the host stage): numeric, bucketized, hash,
    identity, weighted, vocabulary-file and crossed columns. estimator=True adds shared embedding columns, which
    makes it TF1-only: the Estimator-style model of issue 3."""
    cols = [
        ColumnSpec("age", "bucketized", 4, "mean", boundaries=(18.0, 30.0, 50.0)),
        ColumnSpec("price", "numeric", 2),
        ColumnSpec("country", "hash_string", 8, "mean", buckets=60, ids_per_row=(0, 2), vocab=80),
        ColumnSpec("item", "identity", 8, "sqrtn", buckets=30, default_value=0, ids_per_row=(1, 4), vocab=35,
                   weighted=True),
        ColumnSpec("genre", "vocab_file", 4, "sum", buckets=20, ids_per_row=(0, 3), vocab=25, oov_buckets=2),
        ColumnSpec("country_x_genre", "crossed", 8, "mean", buckets=100, cross=("country", "genre")),
    ]
    if estimator:
        cols += [ColumnSpec("query", "hash_string", 8, "mean", buckets=40, ids_per_row=(1, 3), vocab=50,
                            shared="text"),
                 ColumnSpec("title", "hash_string", 8, "mean", buckets=40, ids_per_row=(0, 3), vocab=50,
                            shared="text")]
    return ModelSpec("estimator_mix" if estimator else "example_mix", tuple(cols), dense_width=3, bottom_mlp=(4,),
                     top_mlp=(8,), seed=9, example_input=True)


def demo() -> ModelSpec:
    """The built-in demo: a small model with every column type."""
    b = tuple(float(x) for x in range(0, 100, 10))
    cols = (
        ColumnSpec("age", "bucketized", 8, "mean", boundaries=b),
        ColumnSpec("price", "numeric", 1),
        ColumnSpec("user_id", "hash_int", 16, "mean", buckets=1000, vocab=100_000),
        ColumnSpec("country", "hash_string", 8, "mean", buckets=100, vocab=200),
        ColumnSpec("tags", "hash_string", 8, "sum", buckets=500, ids_per_row=(0, 6), vocab=2000),
        ColumnSpec("item_ids", "identity", 16, "sqrtn", buckets=300, default_value=0, input="dense",
                   ids_per_row=(1, 5), vocab=320),
        ColumnSpec("category", "identity", 8, "mean", buckets=50, vocab=50),
    )
    return ModelSpec("demo", cols, dense_width=4, bottom_mlp=(8,), top_mlp=(32, 16), seed=7)
