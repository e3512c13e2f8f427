"""SipHash-2-4 (TF's StrongKeyedHash), vectorized over strings of the same block count, for
StringToHashBucketStrong (`tf.strings.to_hash_bucket_strong`, IdTableWithHashBuckets with a StrongHashSpec)."""

from __future__ import annotations

import numpy as np

from .strings import to_bytes

_M = np.uint64


def _rotl(x: np.ndarray, b: int) -> np.ndarray:
    return (x << _M(b)) | (x >> _M(64 - b))


def _round(v0, v1, v2, v3):
    v0 += v1
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 += v3
    v3 = _rotl(v3, 16) ^ v2
    v0 += v3
    v3 = _rotl(v3, 21) ^ v0
    v2 += v1
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash24(strings: list[bytes], k0: int, k1: int) -> np.ndarray:
    """SipHash-2-4 of each string with the 128-bit key (k0, k1), as uint64."""
    out = np.zeros(len(strings), np.uint64)
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    with np.errstate(over="ignore"):
        for nblocks in np.unique(lengths // 8):
            idx = np.nonzero(lengths // 8 == nblocks)[0]
            width = 8 * (int(nblocks) + 1)
            mat = np.zeros((idx.size, width), np.uint8)
            for r, i in enumerate(idx):
                s = strings[i]
                mat[r, :len(s)] = np.frombuffer(s, np.uint8)
            words = mat.view("<u8").astype(np.uint64)
            n = idx.size
            v0 = np.full(n, _M(k0) ^ _M(0x736F6D6570736575))
            v1 = np.full(n, _M(k1) ^ _M(0x646F72616E646F6D))
            v2 = np.full(n, _M(k0) ^ _M(0x6C7967656E657261))
            v3 = np.full(n, _M(k1) ^ _M(0x7465646279746573))
            for j in range(int(nblocks) + 1):
                m = words[:, j].copy()
                if j == nblocks:  # the tail bytes and the length in the top byte
                    m |= (lengths[idx].astype(np.uint64) & _M(0xFF)) << _M(56)
                v3 ^= m
                v0, v1, v2, v3 = _round(v0, v1, v2, v3)
                v0, v1, v2, v3 = _round(v0, v1, v2, v3)
                v0 ^= m
            v2 ^= _M(0xFF)
            for _ in range(4):
                v0, v1, v2, v3 = _round(v0, v1, v2, v3)
            out[idx] = v0 ^ v1 ^ v2 ^ v3
    return out


def hash_bucket_strong(node, x) -> np.ndarray:
    """StringToHashBucketStrong: SipHash-2-4 keyed by attrs["key"] = [k0, k1], mod num_buckets."""
    a = node["attrs"]
    k0, k1 = (int(k) & (2**64 - 1) for k in a["key"])
    arr = np.asarray(x) if not isinstance(x, np.ndarray) else x
    h = siphash24(to_bytes(arr), k0, k1)
    return (h % np.uint64(int(a["num_buckets"]))).astype(np.int64).reshape(arr.shape)
