"""Synthetic requests for the fused embedding kernel, from its static `meta` alone (numpy only).

Tuning measures the kernel on a request of a representative batch; a model's own feeds are best (pass them to
`recom_tvm.tune`), and without them the request is drawn here from realistic distributions: 1-10 ids per
multi-id bag, ids uniform or Zipf over each table's rows (hot rows scattered over the table, as hashing does),
bucketized values spread over the boundaries and beyond, weights in (0, 1]. Deterministic in (meta, bounds, batch,
seed, distribution), so a GPU node without the compiler regenerates the very request the tuning host described;
`fingerprint` checks that both sides agree.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from .fused_layout import KIND, KIND_NAME, META, meta_rows
from .packer import pack


@dataclasses.dataclass(frozen=True)
class Distribution:
    """How synthetic requests are drawn. zipf: 0 = uniform ids, else the Zipf exponent (> 1)."""

    ids_per_row: tuple[int, int] = (1, 10)
    zipf: float = 0.0
    dense_width: int = 10  # T of a dense padded input

    def to_json(self) -> dict:
        return {"ids_per_row": list(self.ids_per_row), "zipf": self.zipf, "dense_width": self.dense_width}

    @classmethod
    def from_json(cls, d: dict) -> "Distribution":
        return cls(tuple(d["ids_per_row"]), float(d["zipf"]), int(d["dense_width"]))


def draw_ids(rng: np.random.Generator, rows: int, n: int, zipf: float) -> np.ndarray:
    """n ids in [0, rows): uniform, or Zipf-ranked with the ranks scattered over the table."""
    if rows <= 0:
        return np.zeros(n, np.int64)
    if not zipf:
        return rng.integers(0, rows, n, dtype=np.int64)
    ranks = (rng.zipf(zipf, n) - 1).astype(np.uint64)
    # rank -> row through Fibonacci hashing (wraps mod 2^64): popular ids are not neighbours, as with hashing
    return ((ranks * np.uint64(0x9E3779B97F4A7C15)) % np.uint64(rows)).astype(np.int64)


def synthetic_env(meta, bounds, batch: int, seed: int = 0, dist: Distribution = Distribution()):
    """(fused description, env) for `recom_tvm.runtime.packer.pack`: one request of `batch` rows."""
    m = meta_rows(meta)
    bounds = np.asarray(bounds, dtype=np.float32)
    f = {k: META.index(k) for k in META}
    rng = np.random.default_rng(seed)
    lo, hi = dist.ids_per_row
    cols, env = [], {}
    for c, row in enumerate(m.tolist()):
        kind, rows, name = KIND_NAME[row[f["kind"]]], row[f["rows"]], f"c{c}"
        if kind == "csr":
            counts = rng.integers(lo, hi + 1, batch)
            env[name + "/i"] = np.stack([np.repeat(np.arange(batch, dtype=np.int64), counts),
                                         np.zeros(int(counts.sum()), np.int64)], axis=1)
            env[name + "/v"] = draw_ids(rng, rows, int(counts.sum()), dist.zipf)
            tensors = {"indices": name + "/i", "ids": name + "/v"}
            if row[f["weighted"]]:
                env[name + "/w"] = rng.uniform(0.0, 1.0, int(counts.sum())).astype(np.float32) + np.float32(1e-3)
                tensors["weights"] = name + "/w"
        elif kind == "dense":
            t = max(dist.dense_width, hi)
            x = np.full((batch, t), -1, np.int64)
            counts = rng.integers(lo, hi + 1, batch)
            mask = np.arange(t)[None, :] < counts[:, None]
            x[mask] = draw_ids(rng, rows, int(mask.sum()), dist.zipf)
            env[name] = x
            tensors = {"x": name}
        elif kind == "one":
            env[name] = draw_ids(rng, rows, batch, dist.zipf)
            tensors = {"ids": name}
        elif kind == "bucket":
            b = bounds[row[f["pre_a"]]:row[f["pre_a"]] + row[f["pre_b"]]]
            span = float(b[-1] - b[0]) if b.size > 1 and b[-1] > b[0] else 1.0
            first = float(b[0]) if b.size else 0.0
            env[name] = rng.uniform(first - 0.1 * span, first + 1.1 * span, (batch, 1)).astype(np.float32)
            tensors = {"x": name}
        else:
            env[name] = rng.standard_normal((batch, row[f["dim"]])).astype(np.float32)
            tensors = {"x": name}
        cols.append({"kind": kind, "tensors": tensors})
    return {"columns": cols}, env


def synthetic_packed(meta, bounds, batch: int, seed: int = 0, dist: Distribution = Distribution(),
                     packed_dtype: str = "int64") -> np.ndarray:
    """The packed input of one synthetic request (see synthetic_env), in the kernel's packed dtype."""
    fused, env = synthetic_env(meta, bounds, batch, seed, dist)
    return pack(dict(fused, packed_dtype=packed_dtype), env, batch)


def fingerprint(a: np.ndarray) -> str:
    """A short content check of an array (length and crc32)."""
    a = np.ascontiguousarray(a)
    return f"{a.size}:{zlib.crc32(a.view(np.uint8)):08x}"


__all__ = ["Distribution", "KIND", "draw_ids", "fingerprint", "synthetic_env", "synthetic_packed"]
