"""Framework-neutral model specs: embedding columns + MLPs, and a sampler of realistic (or hostile) inputs.

A spec turns into a TF model (`tf_export`), a reference for tests and benchmarks, and feeds for `CompiledModel`.
Only numpy here: serving-side benchmarks import it without TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

KINDS = ("numeric", "bucketized", "hash_string", "hash_int", "identity", "vocab_string", "vocab_int", "vocab_file",
         "crossed")
STRING_KINDS = ("hash_string", "vocab_string", "vocab_file")
COMBINERS = ("mean", "sum", "sqrtn")
# numeric_column(normalizer_fn=...) transforms, in numpy (recom_tvm.models.tf_export has them in TF): one-op ones,
# and one of two ops
NORMALIZERS = {
    "div100": lambda v: v / np.float32(100.0),
    "shift3": lambda v: v + np.float32(3.0),
    "relu": lambda v: np.where(v < 0, np.float32(0), v),
    "log": lambda v: np.log(v),
    "clip": lambda v: np.clip(v, np.float32(-0.5), np.float32(0.5)),
    "affine": lambda v: v * np.float32(2.0) + np.float32(1.0),
}


@dataclasses.dataclass(frozen=True)
class ColumnSpec:
    """One feature column.

    kind: numeric (dense floats, width `dim`), bucketized (one float per row -> `boundaries` -> embedding),
    hash_string / hash_int (categorical_column_with_hash_bucket, `buckets`), identity (`buckets` ids, with
    `default_value` or none). input: "sparse" (SparseTensor) or "dense" (padded; "" / -1 mean missing).
    ids_per_row: (min, max) ids per row when sampling; vocab: size of the sampled id / string universe.
    weighted: a weighted_categorical_column over the categorical one, its weights fed as "<name>_weight" (a
    SparseTensor with the ids' indices).
    vocab_string / vocab_int / vocab_file: categorical_column_with_vocabulary_list (string or int keys) / _file
    (strings, one per line) over `buckets` vocabulary entries (`vocabulary()`), with `oov_buckets` hash buckets
    for the rest, or `default_value` (TF's -1, dropped, when None).
    indicator: an indicator_column (multi-hot counts, width = table rows) instead of an embedding.
    crossed: crossed_column over the raw features of the columns named in `cross` (sparse string / int
    columns of the model), hashed into `buckets`; it has no feed of its own.
    shared: columns with the same non-empty `shared` key embed through one table (TF1 shared_embedding_columns;
    same kind, buckets, dim and combiner).
    normalizer: a numeric column's normalizer_fn, by name (NORMALIZERS).
    """

    name: str
    kind: str
    dim: int = 8
    combiner: str = "mean"
    buckets: int = 100
    boundaries: tuple[float, ...] = ()
    default_value: int | None = None
    input: str = "sparse"
    ids_per_row: tuple[int, int] = (1, 1)
    vocab: int = 1000
    weighted: bool = False
    oov_buckets: int = 0
    indicator: bool = False
    shared: str = ""
    cross: tuple[str, ...] = ()
    normalizer: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"column {self.name!r}: kind must be one of {KINDS}")
        if self.combiner not in COMBINERS:
            raise ValueError(f"column {self.name!r}: combiner must be one of {COMBINERS}")
        if self.input not in ("sparse", "dense"):
            raise ValueError(f"column {self.name!r}: input must be 'sparse' or 'dense'")
        if self.normalizer and (self.kind != "numeric" or self.normalizer not in NORMALIZERS):
            raise ValueError(f"column {self.name!r}: normalizer must be one of {sorted(NORMALIZERS)} on a numeric "
                             "column")
        if self.kind == "bucketized" and not self.boundaries:
            raise ValueError(f"column {self.name!r}: bucketized needs boundaries")
        if self.oov_buckets and (not self.kind.startswith("vocab") or self.default_value is not None):
            raise ValueError(f"column {self.name!r}: oov_buckets needs a vocabulary column without default")
        if self.indicator and (not self.categorical or self.weighted):
            raise ValueError(f"column {self.name!r}: indicator needs an unweighted categorical column")
        if self.weighted and not (self.categorical and self.input == "sparse"):
            raise ValueError(f"column {self.name!r}: weighted needs a categorical column with sparse input")

    @property
    def weight_feature(self) -> str | None:
        """The feature holding the per-id weights of a weighted column."""
        return f"{self.name}_weight" if self.weighted else None

    @property
    def categorical(self) -> bool:
        return self.kind in ("hash_string", "hash_int", "identity", "vocab_string", "vocab_int", "vocab_file",
                             "crossed")

    @property
    def strings(self) -> bool:
        """Is the feed a string feature?"""
        return self.kind in STRING_KINDS

    def vocabulary(self) -> list:
        """The vocabulary of a vocab_* column: the first `buckets` sampled values (strings or ints)."""
        ids = np.arange(self.buckets, dtype=np.int64)
        return _strings(ids).tolist() if self.strings else _vocab_ints(ids).tolist()

    @property
    def rows(self) -> int:
        """Rows of the embedding table (0 for numeric)."""
        if self.kind == "numeric":
            return 0
        if self.kind == "bucketized":
            return len(self.boundaries) + 1
        return self.buckets + self.oov_buckets

    @property
    def width(self) -> int:
        """Columns this feature contributes to the concat."""
        return self.rows if self.indicator else self.dim


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    columns: tuple[ColumnSpec, ...]
    dense_width: int = 0  # an extra dense input "dense" [B, dense_width] through the bottom MLP
    bottom_mlp: tuple[int, ...] = ()
    top_mlp: tuple[int, ...] = (16,)
    seed: int = 0
    example_input: bool = False  # serve serialized tf.Examples ("examples", parsed in the graph) instead

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns] + [c.weight_feature for c in self.columns if c.weighted]
        by_name = {c.name: c for c in self.columns}
        if self.example_input and any(c.categorical and c.input != "sparse" for c in self.columns):
            raise ValueError("example_input: categorical columns parse as VarLen (sparse) features")
        for c in self.columns:
            if c.kind == "crossed" and (len(c.cross) < 2 or c.weighted or any(
                    k not in by_name or by_name[k].kind == "crossed" or not by_name[k].categorical
                    or by_name[k].input != "sparse" for k in c.cross)):
                raise ValueError(f"column {c.name!r}: crossed needs 2+ sparse categorical columns of the model")
        if len(set(names)) != len(names) or "dense" in names:
            raise ValueError("feature names (columns and '<name>_weight') must be unique and not 'dense'")
        for key in {c.shared for c in self.columns if c.shared}:
            group = [c for c in self.columns if c.shared == key]
            if len({(c.dim, c.combiner, c.kind, c.buckets) for c in group}) != 1 or any(c.indicator or not c.categorical
                                                                              for c in group):
                raise ValueError(f"shared group {key!r}: categorical embedding columns of one kind, bucket "
                                 "count, dim and combiner")

    @property
    def tf1_only(self) -> bool:
        """Shared embedding columns: TF1 graphs only."""
        return any(c.shared for c in self.columns)

    @property
    def concat_width(self) -> int:
        return sum(c.width for c in self.columns)

    def key(self) -> str:
        """A short content hash (cache key for generated models)."""
        data = dataclasses.asdict(self)
        if not data["example_input"]:
            data.pop("example_input")
        for c in data["columns"]:  # fields added later, at their defaults, leave existing cache keys unchanged
            for k, default in _LATER_FIELDS.items():
                if c.get(k) == default:
                    c.pop(k)
        blob = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    # ---------------------------------------------------------------------------------------- sampling
    def sample(self, batch: int, rng: np.random.Generator | int = 0, hostile: bool = False,
               zipf: float | None = None) -> dict:
        """Feeds for one request: {column: dense array | (indices, values, dense_shape)}.

        hostile: also empty rows, negative and out-of-range ids, duplicates, and one row with many ids.
        zipf: draw ids Zipf-distributed with this exponent (> 1) instead of uniformly.
        """
        rng = np.random.default_rng(rng)
        feeds = {c.name: _sample_column(c, batch, rng, hostile, zipf) for c in self.columns if c.kind != "crossed"}
        for c in self.columns:
            if c.weighted:
                feeds[c.weight_feature] = _sample_weights(feeds[c.name], rng, hostile)
        if self.dense_width:
            feeds["dense"] = rng.normal(size=(batch, self.dense_width)).astype("float32")
        if self.example_input:
            from ..runtime.examples import serialize_examples

            sparse = {k for k, v in feeds.items() if isinstance(v, tuple)}
            return {"examples": serialize_examples(feeds, sparse)}
        return feeds


_LATER_FIELDS = {"weighted": False, "oov_buckets": 0, "indicator": False, "shared": "", "cross": (),
                 "normalizer": ""}


def _sample_weights(ids_feed: tuple, rng, hostile: bool) -> tuple:
    """Per-id weights with the ids' indices: positive; hostile adds zeros and negatives (TF drops weights <= 0
    unless the combiner is sum)."""
    indices, values, shape = ids_feed
    w = rng.uniform(0.1, 2.0, size=len(values)).astype(np.float32)
    if hostile and w.size:
        u = rng.random(w.size)
        w[u < 0.1] = 0.0
        w[(u >= 0.1) & (u < 0.2)] *= -1
    return indices.copy(), w, shape.copy()


def _ids(c: ColumnSpec, n: int, rng, hostile: bool, zipf: float | None) -> np.ndarray:
    if zipf:
        ids = (rng.zipf(zipf, size=n) - 1) % c.vocab
    else:
        ids = rng.integers(0, c.vocab, size=n)
    if hostile and n:
        mask = rng.random(n)
        ids = np.where(mask < 0.08, -rng.integers(1, 5, size=n), ids)  # negative ids are filtered by TF
        if c.kind == "identity" and c.default_value is not None:
            ids = np.where((mask >= 0.08) & (mask < 0.16), c.buckets + rng.integers(0, 5, size=n), ids)
    return ids.astype(np.int64)


def _vocab_ints(ids: np.ndarray) -> np.ndarray:
    """Integer vocabulary keys: spread out, so that lookups are not the identity."""
    return np.where(ids >= 0, ids * 7 + 3, ids).astype(np.int64)


def _strings(ids: np.ndarray) -> np.ndarray:
    return np.array([f"v{i}" if i >= 0 else "" for i in ids.tolist()], dtype=object)


def _sample_column(c: ColumnSpec, batch: int, rng, hostile: bool, zipf):
    if c.kind == "numeric":
        return rng.normal(size=(batch, c.dim)).astype("float32")
    if c.kind == "bucketized":
        lo, hi = c.boundaries[0], c.boundaries[-1]
        span = max(hi - lo, 1.0)
        x = rng.uniform(lo - 0.1 * span, hi + 0.1 * span, size=(batch, 1)).astype("float32")
        if hostile and batch:
            x[rng.random(batch) < 0.1, 0] = c.boundaries[rng.integers(0, len(c.boundaries))]  # on a boundary
        return x
    lo, hi = c.ids_per_row
    counts = rng.integers(lo, hi + 1, size=batch)
    if hostile and batch:
        counts[rng.random(batch) < 0.2] = 0  # empty rows
        counts[rng.integers(0, batch)] = max(hi, 1) * 8  # one heavy row
    n = int(counts.sum())
    ids = _ids(c, n, rng, hostile, zipf)
    if hostile and n > 1:
        dup = rng.random(n) < 0.2
        ids[dup] = ids[0]
    if c.strings:
        values = _strings(ids)
    elif c.kind == "vocab_int":
        values = _vocab_ints(ids)
    else:
        values = ids
    if c.input == "dense":
        width = max(int(counts.max()) if batch else 0, 1)
        fill = "" if c.strings else -1
        dense = np.full((batch, width), fill, dtype=object if c.strings else np.int64)
        pos = 0
        for r, k in enumerate(counts.tolist()):
            dense[r, :k] = values[pos:pos + k]
            pos += k
        if not c.strings:
            dense = np.where(dense == -1, -1, dense)  # -1 ids are "missing" in padded input, as in TF
        return dense
    rows = np.repeat(np.arange(batch, dtype=np.int64), counts)
    cols = np.concatenate([np.arange(k, dtype=np.int64) for k in counts]) if n else np.zeros(0, np.int64)
    indices = np.stack([rows, cols], axis=1) if n else np.zeros((0, 2), np.int64)
    width = int(counts.max()) if batch and n else 1
    return indices, values, np.array([batch, max(width, 1)], dtype=np.int64)
