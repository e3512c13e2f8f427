"""The vectorized Fingerprint64 is bit-exact with TensorFlow's StringToHashBucketFast on random unicode."""

from __future__ import annotations

import random

import numpy as np

from recom_tvm.runtime.fingerprint import fingerprint64, hash_bucket_fast, to_bytes


def _random_strings(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    pools = [(0x20, 0x7E), (0xA0, 0x24F), (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0x1F300, 0x1FAFF)]
    out = ["", "a", "ab", "abc", "日本", "🎉", "x" * 1000]
    for _ in range(n):
        length = rng.choice([rng.randint(0, 20), rng.randint(0, 80), rng.randint(60, 300)])
        s = []
        for _ in range(length):
            lo, hi = rng.choice(pools)
            s.append(chr(rng.randint(lo, hi)))
        out.append("".join(s))
    return out


def test_matches_tensorflow_on_random_unicode():
    import tensorflow as tf

    strings = _random_strings(2000, seed=0)
    for buckets in (1, 7, 10_000, 2**23, 2**63 - 1):
        exp = tf.strings.to_hash_bucket_fast(strings, buckets).numpy()
        got = hash_bucket_fast(np.array(strings, dtype=object), buckets)
        np.testing.assert_array_equal(got, exp, err_msg=f"buckets={buckets}")


def test_every_length_class():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    blobs = [bytes(rng.integers(0, 256, size=n, dtype=np.uint8)) for n in list(range(0, 200)) * 2]
    exp = tf.strings.to_hash_bucket_fast(blobs, 2**63 - 1).numpy()
    got = (fingerprint64(blobs) % np.uint64(2**63 - 1)).astype(np.int64)
    np.testing.assert_array_equal(got, exp)


def test_str_and_bytes_agree():
    s = ["héllo", "wörld"]
    assert to_bytes(s) == [x.encode() for x in s]
    np.testing.assert_array_equal(fingerprint64(to_bytes(s)), fingerprint64([x.encode() for x in s]))


def test_batched_hashing_equals_per_column():
    from recom_tvm.runtime.fingerprint import DecimalStrings, hash_bucket_fast_many

    rng = np.random.default_rng(2)
    ints = rng.integers(-10**12, 10**12, size=(7, 3))
    strs = np.array(_random_strings(50, seed=3)[:40], dtype=object).reshape(8, 5)
    items = [(DecimalStrings(ints), 97), (strs, 1000), (DecimalStrings(np.array([], np.int64)), 5),
             (np.array([], dtype=object), 3), (DecimalStrings(np.array([0, -1, np.iinfo(np.int64).min])), 2**40)]
    got = hash_bucket_fast_many(items)
    for (vals, n), g in zip(items, got):
        exp_in = np.asarray(vals) if isinstance(vals, DecimalStrings) else vals
        np.testing.assert_array_equal(g, hash_bucket_fast(exp_in, n))
        assert g.shape == np.asarray(exp_in).shape and g.dtype == np.int64


def test_numpy_string_arrays_hash_like_python_strings():
    """'U' (unicode, ASCII and not) and 'S' arrays take the vectorized byte-matrix path; same hashes as the
    element-by-element path (checked against TF above), internal NUL bytes and empty strings included."""
    strings = _random_strings(300, seed=4)
    ascii_only = [s.encode("ascii", "ignore").decode() for s in strings]
    for texts in (strings, ascii_only):
        exp = hash_bucket_fast(np.array(texts, dtype=object), 10_007)
        np.testing.assert_array_equal(hash_bucket_fast(np.array(texts), 10_007), exp)  # 'U'
        np.testing.assert_array_equal(hash_bucket_fast(np.array([t.encode() for t in texts]), 10_007), exp)  # 'S'
    blobs = [b"", b"a\x00b", b"\x00x", b"z" * 70]
    np.testing.assert_array_equal(hash_bucket_fast(np.array(blobs, dtype="S"), 2**40),
                                  hash_bucket_fast(np.array(blobs, dtype=object), 2**40))
    u = np.array([["ab", ""], ["日本", "c"]])
    assert hash_bucket_fast(u, 5).shape == (2, 2)
