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
    batch, per_row, row, k, positions = _layout(sparse, dense)
    feats = [_feature_hashes(vals) for _, vals, _ in sparse] + [_feature_hashes(np.asarray(d)) for d in dense]
    h = np.full(row.size, _U64(int(hash_key) & 0xFFFFFFFFFFFFFFFF), _U64)
    for ft, pos in zip(feats, positions):
        h = fingerprint_cat64(h, ft[pos])
    mod = _U64(num_buckets) if num_buckets > 0 else _INT64_MAX
    return _output(batch, per_row, row, k, (h % mod).astype(np.int64))


# ------------------------------------------------------------- string crosses and SparseCrossHashed (V2 ops)
def _layout(sparse: list[tuple], dense: list[np.ndarray]):
    """Per column (sparse inputs, then dense): feature count and start per row, for TF's odometer walk; and
    (batch, per-row cross counts, row of each cross, index in its row, digit of each column per cross)."""
    if sparse:
        batch = int(np.asarray(sparse[0][2]).reshape(-1)[0])
    else:
        batch = int(np.asarray(dense[0]).shape[0]) if dense else 0
    counts, starts = [], []
    for idx, _, _ in sparse:
        c = _row_counts(idx, batch)
        counts.append(c)
        starts.append(np.concatenate([[0], np.cumsum(c)[:-1]]).astype(np.int64) if batch else c)
    for d in dense:
        d = np.asarray(d)
        k = d.shape[1] if d.ndim == 2 else 1
        counts.append(np.full(batch, k, np.int64))
        starts.append(np.arange(batch, dtype=np.int64) * k)
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
    positions = [st[row] + dg for st, dg in zip(starts, digits)]  # the feature each cross takes per column
    return batch, per_row, row, k, positions


def _output(batch: int, per_row: np.ndarray, row: np.ndarray, k: np.ndarray, values) -> tuple:
    indices = np.stack([row, k], axis=1).reshape(-1, 2)
    shape = np.array([batch, int(per_row.max()) if batch and row.size else 0], np.int64)
    return indices, values, shape


def _flat(values) -> list:
    return np.asarray(values).reshape(-1).tolist()


def sparse_cross_strings(sparse: list[tuple], dense: list[np.ndarray], sep: bytes) -> tuple:
    """SparseCross without hashed_output (separator "_X_") and SparseCrossV2 (tf.sparse.cross): each cross is
    its features joined by `sep`, integers written in decimal."""
    from .strings import from_objects

    batch, per_row, row, k, positions = _layout(sparse, dense)
    cols = [_flat(v) for _, v, _ in sparse] + [_flat(d) for d in dense]
    texts = [[v if isinstance(v, bytes) else v.encode() if isinstance(v, str) else str(int(v)).encode()
              for v in col] for col in cols]
    out = np.empty(row.size, dtype=object)
    out[:] = [sep.join(texts[c][int(positions[c][n])] for c in range(len(texts))) for n in range(row.size)]
    return _output(batch, per_row, row, k, from_objects(out))


def _keyed_hashes(values, strong: bool, salt: tuple[int, int], dense: bool) -> np.ndarray:
    """A feature's hash in SparseCrossHashed (TF's KeyedSparseTensorColumn / KeyedDenseTensorColumn): strings by
    SipHash(salt) when strong, else Fingerprint64; a sparse int64 by the same over its first 4 bytes (TF hashes
    sizeof(DataType) bytes), a dense int64 unhashed."""
    from .fingerprint import fingerprint64_matrix
    from .siphash import siphash24

    values = np.asarray(values)
    if values.dtype.kind in "SUO":
        flat = _flat(values)
        if strong:
            return siphash24([v if isinstance(v, bytes) else v.encode() for v in flat], salt[0], salt[1])
        return np.asarray(fingerprint64(values.reshape(-1)), dtype=_U64)
    ints = values.astype("<i8").reshape(-1)
    if dense:
        return ints.view(_U64)
    low4 = ints.view(np.uint8).reshape(-1, 8)[:, :4]
    if strong:
        return siphash24([bytes(r) for r in low4], salt[0], salt[1])
    return np.asarray(fingerprint64_matrix(np.ascontiguousarray(low4), np.full(ints.size, 4, np.int64)), _U64)


def sparse_cross_hashed_v2(sparse: list[tuple], dense: list[np.ndarray], num_buckets: int, strong: bool,
                           salt: tuple[int, int]) -> tuple:
    """SparseCrossHashed: h = hash(first column's feature), then FingerprintCat64 with each next one's."""
    batch, per_row, row, k, positions = _layout(sparse, dense)
    feats = [_keyed_hashes(v, strong, salt, False) for _, v, _ in sparse] + [
        _keyed_hashes(d, strong, salt, True) for d in dense]
    h = feats[0][positions[0]] if feats else np.zeros(0, _U64)
    for ft, pos in zip(feats[1:], positions[1:]):
        h = fingerprint_cat64(h, ft[pos])
    mod = _U64(num_buckets) if num_buckets > 0 else _INT64_MAX
    return _output(batch, per_row, row, k, (h % mod).astype(np.int64))


def _split_inputs(node, args) -> tuple[list, list]:
    """(sparse inputs as (indices, values, shape), dense inputs) of a cross: 3N sparse parts, then the dense."""
    n = int(node["attrs"]["N"])
    return list(zip(args[:n], args[n:2 * n], args[2 * n:3 * n])), list(args[3 * n:])


def _cross_v2(node, *args):
    sparse, dense = _split_inputs(node, args)
    return sparse_cross_strings(sparse, dense, node["attrs"]["sep"].encode("latin-1"))


def _cross_hashed(node, *args):
    sparse, dense = _split_inputs(node, args)
    a = node["attrs"]
    salt = tuple(int(v) & 0xFFFFFFFFFFFFFFFF for v in a["salt"])
    return sparse_cross_hashed_v2(sparse, dense, int(a["num_buckets"]), bool(a["strong_hash"]), salt)


IMPLS = {"SparseCrossV2": _cross_v2, "SparseCrossHashed": _cross_hashed}
