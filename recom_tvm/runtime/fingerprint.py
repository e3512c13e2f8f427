"""TensorFlow's string hash, vectorized: Fingerprint64 (farmhash's farmhashna::Hash64) over many strings at once.

`StringToHashBucketFast(s, n) = Fingerprint64(utf-8 bytes of s) mod n`. One Python call per string (pyfarmhash,
~165 ns) is too slow for a serving path with thousands of ids per request, so this groups the strings by byte
length and runs the hash as numpy uint64 arithmetic (which wraps mod 2^64, as the C++ does) over each group.
Bit-exactness against TF is tested on random unicode (tests/test_fingerprint.py).
"""

from __future__ import annotations


import numpy as np

from .strings import encode_utf8, string_buffer, string_matrix, to_bytes  # noqa: F401  (to_bytes: API)

U64 = np.uint64
K0, K1, K2 = U64(0xC3A5C85C97CB3127), U64(0xB492B66FBE98F273), U64(0x9AE16A3B2F90404F)


def _rot(v, s: int):
    return v if s == 0 else (v >> U64(s)) | (v << U64(64 - s))


def _shift_mix(v):
    return v ^ (v >> U64(47))


def _len16(u, v, mul):
    a = (u ^ v) * mul
    a ^= a >> U64(47)
    b = (v ^ a) * mul
    b ^= b >> U64(47)
    return b * mul


class _Bytes:
    """n strings of one length L as an [n, L] uint8 matrix with little-endian word fetches."""

    def __init__(self, mat: np.ndarray) -> None:
        self.mat = mat

    def f64(self, off: int):
        return np.ascontiguousarray(self.mat[:, off:off + 8]).view("<u8")[:, 0].astype(U64)

    def f32(self, off: int):
        return np.ascontiguousarray(self.mat[:, off:off + 4]).view("<u4")[:, 0].astype(U64)

    def byte(self, off: int):
        return self.mat[:, off].astype(U64)


def _len0to16(b: _Bytes, n: int, length: int):
    if length >= 8:
        mul = K2 + U64(length * 2)
        a = b.f64(0) + K2
        bb = b.f64(length - 8)
        c = _rot(bb, 37) * mul + a
        d = (_rot(a, 25) + bb) * mul
        return _len16(c, d, mul)
    if length >= 4:
        mul = K2 + U64(length * 2)
        a = b.f32(0)
        return _len16(U64(length) + (a << U64(3)), b.f32(length - 4), mul)
    if length > 0:
        a, bb, c = b.byte(0), b.byte(length >> 1), b.byte(length - 1)
        y = (a + (bb << U64(8))) & U64(0xFFFFFFFF)
        z = (U64(length) + (c << U64(2))) & U64(0xFFFFFFFF)
        return _shift_mix(y * K2 ^ z * K0) * K2
    return np.full(n, K2, dtype=U64)


def _len17to32(b: _Bytes, length: int):
    mul = K2 + U64(length * 2)
    a = b.f64(0) * K1
    bb = b.f64(8)
    c = b.f64(length - 8) * mul
    d = b.f64(length - 16) * K2
    return _len16(_rot(a + bb, 43) + _rot(c, 30) + d, a + _rot(bb + K2, 18) + c, mul)


def _len33to64(b: _Bytes, length: int):
    mul = K2 + U64(length * 2)
    a = b.f64(0) * K2
    bb = b.f64(8)
    c = b.f64(length - 8) * mul
    d = b.f64(length - 16) * K2
    y = _rot(a + bb, 43) + _rot(c, 30) + d
    z = _len16(y, a + _rot(bb + K2, 18) + c, mul)
    e = b.f64(16) * mul
    f = b.f64(24)
    g = (y + b.f64(length - 32)) * mul
    h = (z + b.f64(length - 24)) * mul
    return _len16(_rot(e + f, 43) + _rot(g, 30) + h, e + _rot(f + a, 18) + g, mul)


def _weak32(b: _Bytes, off: int, a, bb):
    w, x, y, z = b.f64(off), b.f64(off + 8), b.f64(off + 16), b.f64(off + 24)
    a = a + w
    bb = _rot(bb + a + z, 21)
    c = a
    a = a + x + y
    bb = bb + _rot(a, 44)
    return a + z, bb + c


def _long(b: _Bytes, n: int, length: int):
    seed = U64(81)
    zero = np.zeros(n, dtype=U64)
    x = np.full(n, seed, dtype=U64)
    y = seed * K1 + U64(113)
    y = np.full(n, y, dtype=U64)
    z = _shift_mix(y * K2 + U64(113)) * K2
    v0, v1, w0, w1 = zero, zero, zero, zero
    x = x * K2 + b.f64(0)
    end = ((length - 1) // 64) * 64
    last64 = end + ((length - 1) & 63) - 63
    s = 0
    while True:
        x = _rot(x + y + v0 + b.f64(s + 8), 37) * K1
        y = _rot(y + v1 + b.f64(s + 48), 42) * K1
        x = x ^ w1
        y = y + v0 + b.f64(s + 40)
        z = _rot(z + w0, 33) * K1
        v0, v1 = _weak32(b, s, v1 * K1, x + w0)
        w0, w1 = _weak32(b, s + 32, z + w1, y + b.f64(s + 16))
        z, x = x, z
        s += 64
        if s == end:
            break
    mul = K1 + ((z & U64(0xFF)) << U64(1))
    s = last64
    w0 = w0 + U64((length - 1) & 63)
    v0 = v0 + w0
    w0 = w0 + v0
    x = _rot(x + y + v0 + b.f64(s + 8), 37) * mul
    y = _rot(y + v1 + b.f64(s + 48), 42) * mul
    x = x ^ (w1 * U64(9))
    y = y + v0 * U64(9) + b.f64(s + 40)
    z = _rot(z + w0, 33) * mul
    v0, v1 = _weak32(b, s, v1 * mul, x + w0)
    w0, w1 = _weak32(b, s + 32, z + w1, y + b.f64(s + 16))
    z, x = x, z
    return _len16(_len16(v0, w0, mul) + _shift_mix(y) * K0 + z, _len16(v1, w1, mul) + x, mul)


def _hash_group(mat: np.ndarray, length: int) -> np.ndarray:
    n = mat.shape[0]
    b = _Bytes(mat)
    if length <= 16:
        return _len0to16(b, n, length)
    if length <= 32:
        return _len17to32(b, length)
    if length <= 64:
        return _len33to64(b, length)
    return _long(b, n, length)


def _by_length(lengths: np.ndarray, group) -> np.ndarray:
    """Fingerprint64 of n strings, one vectorized pass per distinct length: group(rows, L) gives those rows'
    bytes as a [len(rows), L] matrix."""
    out = np.empty(lengths.shape[0], dtype=U64)
    if out.size == 0:
        return out
    order = np.argsort(lengths, kind="stable")  # rows grouped by length without one scan per length
    ends = np.cumsum(np.bincount(lengths))
    start = 0
    with np.errstate(over="ignore"):
        for length, end in enumerate(ends.tolist()):
            if end > start:
                rows = order[start:end]
                mat = group(rows, length) if length else np.zeros((rows.size, 0), np.uint8)
                out[rows] = _hash_group(mat, length)
            start = end
    return out


def fingerprint64_buffer(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Fingerprint64 of the strings buf[starts[i]: starts[i] + lengths[i]], as uint64."""
    return _by_length(lengths, lambda rows, n: buf[starts[rows, None] + np.arange(n)])


def fingerprint64_matrix(mat: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Fingerprint64 of the rows of a fixed-width byte matrix (row i holds mat[i, :lengths[i]]), as uint64."""
    return _by_length(lengths, lambda rows, n: mat[rows, :n])


def fingerprint64(strings) -> np.ndarray:
    """Fingerprint64 of each string (bytes, str as UTF-8, or a numpy 'S' / 'U' array), as uint64."""
    if isinstance(strings, np.ndarray) and strings.dtype.kind in "SU":
        return fingerprint64_matrix(*string_matrix(strings))
    return fingerprint64_buffer(*string_buffer(strings))


def fingerprint64_decimal(ints: np.ndarray) -> np.ndarray:
    """Fingerprint64 of the decimal text of each integer (TF's AsString), without building Python strings."""
    v = np.asarray(ints).reshape(-1).astype(np.int64)
    out = np.empty(v.shape[0], dtype=U64)
    if v.size == 0:
        return out
    neg = v < 0
    mag = np.abs(v.astype(object)) if (v == np.iinfo(np.int64).min).any() else np.abs(v)
    mag = np.asarray(mag, dtype=np.uint64)
    ndig = np.ones(v.shape[0], dtype=np.int64)
    p = np.uint64(10)
    for _ in range(19):
        more = mag >= p
        if not more.any():
            break
        ndig += more
        p = p * np.uint64(10) if p < np.uint64(10**19) else p
    length = ndig + neg
    with np.errstate(over="ignore"):
        for L in np.unique(length):
            rows = np.nonzero(length == L)[0]
            L = int(L)
            mat = np.empty((rows.size, L), dtype=np.uint8)
            m = mag[rows].copy()
            for pos in range(L - 1, -1, -1):  # fill digits right to left; the sign is written last
                mat[:, pos] = (m % np.uint64(10)).astype(np.uint8) + 48
                m //= np.uint64(10)
            sign = neg[rows]
            mat[sign, 0] = ord("-")
            out[rows] = _hash_group(mat, L)
    return out


class DecimalStrings:
    """AsString of an integer array, kept as the integers until something needs the text.

    StringToHashBucketFast hashes it directly (`fingerprint64_decimal`); anything else materializes it.
    """

    def __init__(self, ints: np.ndarray) -> None:
        self.ints = np.asarray(ints)
        self.shape = self.ints.shape
        self.dtype = np.dtype(object)

    def __array__(self, dtype=None, copy=None):
        return np.array([str(int(i)).encode() for i in self.ints.reshape(-1)], dtype=object).reshape(self.shape)


def hash_bucket_fast(values, num_buckets: int) -> np.ndarray:
    """TF StringToHashBucketFast over an array of strings; same shape, int64."""
    return hash_bucket_fast_many([(values, num_buckets)])[0]


def hash_bucket_fast_many(items: list[tuple[object, int]]) -> list[np.ndarray]:
    """hash_bucket_fast over several (values, num_buckets) at once: one vectorized pass per kind of input
    (strings, integer text), instead of one per column."""
    out: list = [None] * len(items)
    for kind in ("decimal", "bytes"):
        idx = [i for i, (v, _) in enumerate(items) if isinstance(v, DecimalStrings) == (kind == "decimal")]
        if not idx:
            continue
        if kind == "decimal":
            parts = [np.asarray(items[i][0].ints).reshape(-1) for i in idx]
            fp = fingerprint64_decimal(np.concatenate(parts)) if parts else np.zeros(0, U64)
            shapes = [items[i][0].shape for i in idx]
        else:
            arrays = [v if isinstance(v, np.ndarray) else np.asarray(v, dtype=object)
                      for v in (items[i][0] for i in idx)]
            if all(a.dtype.kind in "SU" for a in arrays):  # fixed-width bytes: one matrix for all columns
                flat = np.concatenate([(encode_utf8(a) if a.dtype.kind == "U" else a).reshape(-1) for a in arrays])
                fp = fingerprint64_matrix(*string_matrix(flat))
            else:
                bufs = [string_buffer(a) for a in arrays]
                base = np.cumsum([0] + [b[0].size for b in bufs])[:-1]
                fp = fingerprint64_buffer(np.concatenate([b[0] for b in bufs]),
                                          np.concatenate([b[1] + o for b, o in zip(bufs, base)]),
                                          np.concatenate([b[2] for b in bufs]))
            shapes = [a.shape for a in arrays]
        pos = 0
        for i, shape in zip(idx, shapes):
            n = int(np.prod(shape))
            out[i] = (fp[pos:pos + n] % U64(items[i][1])).astype(np.int64).reshape(shape)
            pos += n
    return out
