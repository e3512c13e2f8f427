"""TF's SparseCross in hashed mode (crossed_column), bit-exact, vectorized over all crosses of a request.

Semantics (tensorflow/core/kernels/sparse_cross_op.cc, HashCrosser):
- columns in the op's order: every sparse input, then every dense input;
- per row, the cartesian product of the columns' values, odometer order (the last column varies fastest);
  a row where any column is empty has no crosses;
- a feature's hash: Fingerprint64 of a string's bytes; an int64 is used as is (two's complement bits);
- the cross: h = hash_key; h = FingerprintCat64(h, feature_i) for each column in order; id = h mod num_buckets
  (unsigned; mod 2^63 - 1 when num_buckets is 0);
- a sparse input contributes, for row b, the consecutive entries whose row index is b, walking its entries in
  stored order: on unsorted input the walk stops at the first entry whose row goes backwards (TF drops the rest).
- the batch is the first sparse input's dense_shape[0] (else the first dense input's rows); any input of another
  batch is TF's InvalidArgumentError "Expected batch size".
Output: (indices [n, 2], values [n], dense_shape [batch, max crosses per row]).
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError
from .fingerprint import fingerprint64

_U64 = np.uint64
_KMUL = _U64(0xC6A4A7935BD1E995)
_INT64_MAX = _U64(0x7FFFFFFFFFFFFFFF)


def _shift_mix(v):
    return v ^ (v >> _U64(47))


def fingerprint_cat64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """tsl::FingerprintCat64 on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        r = a ^ _KMUL
        r = r ^ (_shift_mix(b * _KMUL) * _KMUL)
        r = r * _KMUL
        r = _shift_mix(r) * _KMUL
        return _shift_mix(r)


def _feature_hashes(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind in "SUO":
        return np.asarray(fingerprint64(values.reshape(-1)), dtype=_U64)
    return values.astype(np.int64).reshape(-1).view(_U64)


def _row_counts(indices: np.ndarray, batch: int) -> np.ndarray:
    rows = np.asarray(indices, dtype=np.int64).reshape(-1, 2)[:, 0] if np.size(indices) else np.zeros(0, np.int64)
    bad = (rows < 0) | (rows >= batch)
    bad[1:] |= rows[1:] < rows[:-1]
    stop = int(np.argmax(bad)) if bad.any() else rows.size
    return np.bincount(rows[:stop], minlength=batch).astype(np.int64)[:batch]


def sparse_cross_hashed(sparse: list[tuple], dense: list[np.ndarray], num_buckets: int,
                        hash_key: int, label: str = "SparseCross") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sparse: [(indices, values, dense_shape)], dense: [[B, k] arrays], in the op's input order; label names
    the op in errors."""
    if sparse:
        batch = int(np.asarray(sparse[0][2]).reshape(-1)[0])
    else:
        batch = int(np.asarray(dense[0]).shape[0]) if dense else 0
    for i, (_, _, shape) in enumerate(sparse):
        got = int(np.asarray(shape).reshape(-1)[0])
        if got != batch:
            raise InvalidArgumentError(f"{label}: Expected batch size {batch} got {got} at position {i}")
    for i, d in enumerate(dense):
        got = int(np.asarray(d).shape[0]) if np.ndim(d) else 1
        if got != batch:
            raise InvalidArgumentError(f"{label}: Expected batch size {batch} got {got} at dense tensor {i}")
    counts, starts, feats = [], [], []
    for idx, vals, _ in sparse:
        c = _row_counts(idx, batch)
        counts.append(c)
        starts.append(np.concatenate([[0], np.cumsum(c)[:-1]]).astype(np.int64) if batch else c)
        feats.append(_feature_hashes(vals))
    for d in dense:
        d = np.asarray(d)
        k = d.shape[1] if d.ndim == 2 else 1
        counts.append(np.full(batch, k, np.int64))
        starts.append(np.arange(batch, dtype=np.int64) * k)
        feats.append(_feature_hashes(d))
    per_row = np.prod(np.stack(counts), axis=0) if counts else np.zeros(batch, np.int64)
    total = int(per_row.sum())
    row = np.repeat(np.arange(batch, dtype=np.int64), per_row)
    row_start = np.concatenate([[0], np.cumsum(per_row)[:-1]]).astype(np.int64) if batch else per_row
    k = np.arange(total, dtype=np.int64) - row_start[row]
    digits, stride = [None] * len(counts), np.ones(total, np.int64)
    for i in range(len(counts) - 1, -1, -1):  # the last column is the fastest digit
        cnt = counts[i][row]
        digits[i] = (k // stride) % np.maximum(cnt, 1)
        stride = stride * cnt
    h = np.full(total, _U64(int(hash_key) & 0xFFFFFFFFFFFFFFFF), _U64)
    for st, ft, dg in zip(starts, feats, digits):
        h = fingerprint_cat64(h, ft[st[row] + dg])
    mod = _U64(num_buckets) if num_buckets > 0 else _INT64_MAX
    ids = (h % mod).astype(np.int64)
    indices = np.stack([row, k], axis=1).reshape(-1, 2)
    shape = np.array([batch, int(per_row.max()) if batch and total else 0], np.int64)
    return indices, ids, shape
