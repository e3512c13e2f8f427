"""The corpus registry: graphs built the ways users build them (not by recom_tvm's generator), one entry each.

An entry is a builder `build(out_dir) -> artifact` that writes a model with TensorFlow's public APIs, and a feed
generator `feeds(rng, batch, hostile) -> {feature: value}` in recom_tvm's feed format (dense arrays,
`(indices, values, dense_shape)` for SparseTensors, `(values, row_splits)` for RaggedTensors). The artifact is a
JSON-able dict, paths relative to `out_dir`:

    {"pb": "model.pb", "signature": {"inputs": {...}, "outputs": {"score": t, "embedding": t}}}
        a frozen GraphDef, imported with `from_tensorflow(pb, signature=...)`, run in TF by a v1 Session
    {"saved_model": "sm", "call": "serve"}
        a SavedModel, imported with `from_tensorflow(dir)`; TF runs the restored function `call` (which keeps
        the structured inputs; default: the `serving_default` signature)
    optional "assets": {path baked into the graph: path relative to out_dir}
        vocabulary files a frozen graph names by a path that does not hold them where the model is used:
        imported with `from_tensorflow(pb, assets=...)` (unless "import_assets": false: recom_tvm must find
        them itself, e.g. in the model's assets/ folder), and TF's reference reads the mapped files

Outputs should include the embedding stage (the concat feeding the dense tail) under "embedding" where the model
has one: the differential tests compare every output, so an error hidden behind the MLP still shows.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import numpy as np

# API routes, as the importer's docs group them
ROUTES = ("tf1_feature_columns", "tf2_feature_columns", "keras3", "tf_strings", "tf_lookup", "tf_sparse",
          "control_flow", "ctr")


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    route: str
    build: Callable[[str], dict]
    feeds: Callable[[np.random.Generator, int, bool], dict]
    fused: bool = True  # optimize() must leave one fused embedding kernel (else `why_not_fused` says why)
    why_not_fused: str = ""
    batches: tuple[int, ...] = (1, 7, 512)
    notes: str = ""
    # also import a frozen graph the ways users do without a full signature and compare those with TF:
    # "inputs_only" (outputs: the graph's sinks), "no_signature" (features found from the placeholders),
    # "outputs_only" (outputs=[...] only); see harness.imported
    user_imports: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        return self.build.__module__

    def source_key(self) -> str:
        """What the cached artifact depends on: the source of the module defining the entry."""
        return inspect.getsource(inspect.getmodule(self.build))


ENTRIES: dict[str, Entry] = {}


def entry(route: str, feeds: Callable, name: str | None = None, **kw):
    """Register the decorated builder as a corpus entry."""
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; routes are {ROUTES}")

    def deco(build):
        key = name or build.__name__
        if key in ENTRIES:
            raise ValueError(f"corpus entry {key!r} registered twice")
        ENTRIES[key] = Entry(key, route, build, feeds, **kw)
        return build

    return deco


# ------------------------------------------------------------------------------------------ feed helpers
HOSTILE_STRINGS = ("", " ", "  leading", "trailing  ", "UPPER lower", "ünïcödé", "中文字符", "emoji 🎉🚀", "a" * 300,
                   ",", ";;", "|", ",,,", "a,b", "a;b;;c", "\t\n", "x" * 17, "y" * 33, "z" * 65, "\0nul")
HOSTILE_FLOATS = (np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, -1e-45, 1e-40, 3.4e38, -3.4e38)
HOSTILE_INTS = (-1, -2, -(1 << 40), 1 << 40, (1 << 63) - 1, -(1 << 63), 0)


def strings(rng: np.random.Generator, n: int, vocab, hostile: bool, oov: float = 0.1) -> np.ndarray:
    """n strings drawn from `vocab`, with out-of-vocabulary ones, and hostile ones when asked."""
    pool = list(vocab) + [f"oov_{i}" for i in range(max(1, int(len(vocab) * oov)))]
    if hostile:
        pool += list(HOSTILE_STRINGS)
    return np.array([pool[i] for i in rng.integers(0, len(pool), n)], dtype=object)


def floats(rng: np.random.Generator, shape, hostile: bool, scale: float = 3.0) -> np.ndarray:
    x = (rng.normal(size=shape) * scale).astype(np.float32)
    if hostile and x.size:
        k = max(1, x.size // 4)
        pos = rng.choice(x.size, k, replace=False)
        x.reshape(-1)[pos] = rng.choice(np.array(HOSTILE_FLOATS, dtype=np.float32), k)
    return x


def ints(rng: np.random.Generator, shape, low: int, high: int, hostile: bool, dtype=np.int64) -> np.ndarray:
    x = rng.integers(low, high, size=shape).astype(dtype)
    if hostile and x.size:
        info = np.iinfo(dtype)
        bad = np.array([v for v in HOSTILE_INTS if info.min <= v <= info.max], dtype=dtype)
        k = max(1, x.size // 5)
        pos = rng.choice(x.size, k, replace=False)
        x.reshape(-1)[pos] = rng.choice(bad, k)
    return x


def row_lengths(rng: np.random.Generator, batch: int, most: int, hostile: bool) -> np.ndarray:
    """Ids per row: 0..most, many empty rows when hostile."""
    lens = rng.integers(0 if hostile else 1, most + 1, batch)
    if hostile and batch:
        lens[rng.random(batch) < 0.3] = 0
    return lens


def sparse(lens: np.ndarray, values: np.ndarray, width: int | None = None) -> tuple:
    """(indices, values, dense_shape) of a [B, width] SparseTensor with `lens[b]` entries in row b (row-major)."""
    rows = np.repeat(np.arange(lens.size), lens)
    cols = np.concatenate([np.arange(n) for n in lens]) if lens.size else np.zeros(0, np.int64)
    width = int(width if width is not None else max(1, int(lens.max()) if lens.size else 1))
    idx = np.stack([rows, cols], axis=1).astype(np.int64).reshape(-1, 2)
    return idx, values, np.array([lens.size, width], np.int64)


def ragged(lens: np.ndarray, values: np.ndarray) -> tuple:
    """(values, row_splits) of a RaggedTensor with `lens[b]` values in row b."""
    return values, np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)


def padded(lens: np.ndarray, values: np.ndarray, width: int, missing) -> np.ndarray:
    """A dense [B, width] array holding each row's values left-aligned, `missing` elsewhere."""
    out = np.full((lens.size, width), missing, dtype=values.dtype)
    pos = 0
    for b, n in enumerate(lens):
        n = min(int(n), width)
        out[b, :n] = values[pos:pos + n]
        pos += int(lens[b])
    return out
