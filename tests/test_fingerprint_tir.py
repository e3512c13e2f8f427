"""The TIR Fingerprint64 / StringToHashBucketFast kernel (recom_tvm.ops.fingerprint_tir) is bit-exact with
TensorFlow on the llvm target, on random unicode and random bytes of every length class of farmhash's Hash64
(0, 1-3, 4-7, 8-16, 17-32, 33-64, > 64 with 1 to 5 chunks), exact boundaries included; the host hash
(recom_tvm.runtime.fingerprint) is the second reference. The CUDA kernel builds here (sm_90 SASS, one thread per
string); it runs on the GPU in benchmarks/gpu_fingerprint.py.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import tvm

from recom_tvm.cuda_support import fatbin_images, nvcc_path
from recom_tvm.ops.fingerprint_tir import build_fingerprint, fingerprint_func
from recom_tvm.runtime.fingerprint import fingerprint64

BOUNDARIES = (0, 1, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 192, 193)
POOLS = [(0x20, 0x7E), (0xA0, 0x24F), (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0x1F300, 0x1FAFF)]


def _unicode(rng: random.Random, min_bytes: int) -> str:
    """A random unicode string of at least min_bytes UTF-8 bytes (1- to 4-byte characters mixed)."""
    out, size = [], 0
    while size < min_bytes:
        lo, hi = rng.choice(POOLS)
        ch = chr(rng.randint(lo, hi))
        out.append(ch)
        size += len(ch.encode())
    return "".join(out)


def strings_of_every_class(seed: int = 0) -> list[bytes]:
    """Random unicode (as UTF-8) with byte lengths spread over 0..300, and random bytes of each boundary length."""
    rng = random.Random(seed)
    npr = np.random.default_rng(seed)
    out = [_unicode(rng, rng.choice([rng.randint(0, 16), rng.randint(17, 32), rng.randint(33, 64),
                                     rng.randint(65, 300)])).encode() for _ in range(1500)]
    out += [bytes(npr.integers(0, 256, size=n, dtype=np.uint8)) for n in list(BOUNDARIES) * 8]
    out += [bytes(npr.integers(0, 256, size=n, dtype=np.uint8)) for n in range(0, 301)]
    rng.shuffle(out)
    return out


def _layout(strings: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    data = np.frombuffer(b"".join(strings), np.uint8).copy()
    offsets = np.zeros(len(strings) + 1, np.int64)
    np.cumsum([len(s) for s in strings], out=offsets[1:])
    return data, offsets


def _run(module, strings: list[bytes], dtype, *scalars) -> np.ndarray:
    data, offsets = _layout(strings)
    dev = tvm.cpu()
    out = tvm.runtime.tensor(np.zeros(len(strings), dtype), dev)
    module["main"](tvm.runtime.tensor(data, dev), tvm.runtime.tensor(offsets, dev), out, *scalars)
    return out.numpy()


@pytest.fixture(scope="module")
def raw_llvm():
    return build_fingerprint("llvm")


@pytest.fixture(scope="module")
def param_llvm():
    return build_fingerprint("llvm", buckets_param=True)


@pytest.fixture(scope="module")
def strings():
    s = strings_of_every_class()
    lengths = {len(x) for x in s}
    assert set(BOUNDARIES) <= lengths and max(lengths) >= 300
    return s


def test_raw_fingerprint_matches_tf_fingerprint_and_host_hash(raw_llvm, strings):
    import tensorflow as tf

    got = _run(raw_llvm, strings, np.uint64)
    # tf.fingerprint of a vector of strings: each string's Fingerprint64 as 8 little-endian bytes
    exp_tf = tf.fingerprint(tf.constant(strings)).numpy().view("<u8")[:, 0]
    np.testing.assert_array_equal(got, exp_tf)
    np.testing.assert_array_equal(got, fingerprint64(strings))


@pytest.mark.parametrize("buckets", [2**63 - 1, 10_000_019, 1000, 7, 1])
def test_hash_bucket_matches_tf(param_llvm, strings, buckets):
    import tensorflow as tf

    exp = tf.strings.to_hash_bucket_fast(strings, buckets).numpy()
    np.testing.assert_array_equal(_run(param_llvm, strings, np.int64, buckets), exp)


def test_constant_bucket_count_matches_tf(strings):
    """num_buckets compiled in (the modulo by a constant) gives the same buckets as TF."""
    import tensorflow as tf

    mod = build_fingerprint("llvm", num_buckets=2**40 + 15)
    np.testing.assert_array_equal(_run(mod, strings, np.int64),
                                  tf.strings.to_hash_bucket_fast(strings, 2**40 + 15).numpy())


def test_strings_anywhere_in_the_buffer(raw_llvm):
    """Offsets need not be aligned or start at 0, and bytes between strings are never read: the same string at
    every alignment hashes alike, surrounded by other bytes."""
    base = "Ünïcødé-" * 9  # 108 bytes: prefixes of every class, the long path included
    strings = [base.encode()[:n] for n in (5, 12, 20, 40, 70, 81)]
    exp = fingerprint64(strings)
    for shift in range(8):
        junk = b"\xff" * shift
        data = np.frombuffer(junk + b"".join(s + b"#" for s in strings), np.uint8).copy()
        starts = shift + np.cumsum([0] + [len(s) + 1 for s in strings[:-1]])
        for s_i, st, want in zip(strings, starts, exp):
            offsets = np.array([st, st + len(s_i)], np.int64)
            out = tvm.runtime.tensor(np.zeros(1, np.uint64))
            raw_llvm["main"](tvm.runtime.tensor(data), tvm.runtime.tensor(offsets), out)
            assert out.numpy()[0] == want


def test_no_strings(raw_llvm):
    assert _run(raw_llvm, [], np.uint64).shape == (0,)
    assert _run(raw_llvm, [b""], np.uint64)[0] == fingerprint64([b""])[0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_buckets"):
        fingerprint_func("llvm", num_buckets=0)
    with pytest.raises(ValueError, match="target kind"):
        fingerprint_func("rocm")


@pytest.mark.skipif(nvcc_path() is None, reason="nvcc (CUDA toolkit) is not installed on this host")
def test_cuda_kernel_builds_one_thread_per_string(tmp_path):
    """Build and inspect only (no GPU here): sm_90 SASS in the library, blockIdx/threadIdx over the strings, the
    hash in 64-bit unsigned arithmetic."""
    ex = build_fingerprint("cuda", buckets_param=True)
    src = ex.mod.imports[0].inspect_source()
    assert "blockIdx.x" in src and "threadIdx.x" in src and "__launch_bounds__(128)" in src
    assert "uint64_t r_ptr[" in src  # the hash state: thread-local uint64 slots
    assert "% ((uint64_t)num_buckets)));" in src  # the bucket: an unsigned 64-bit modulo, as TF's
    lib = str(tmp_path / "fingerprint_cuda.so")
    ex.export_library(lib)
    assert fatbin_images(lib) == [("elf", 90)]
    from recom_tvm.build_module import make_target
    from recom_tvm.ops.fingerprint_tir import fingerprint_cat64_func

    tgt = make_target("cuda")  # the CUDA build was prepared by build_fingerprint above
    with tgt:
        cat = tvm.compile(tvm.IRModule({"main": fingerprint_cat64_func("cuda").with_attr("global_symbol", "main")}),
                          target=tgt)
    cat.export_library(str(tmp_path / "cat64_cuda.so"))
    assert fatbin_images(str(tmp_path / "cat64_cuda.so")) == [("elf", 90)]


def test_fingerprint_cat64_matches_the_host_cross():
    """FingerprintCat64 in TIR equals the host's (recom_tvm.runtime.cross, checked against TF's SparseCross)."""
    from recom_tvm.ops.fingerprint_tir import fingerprint_cat64_func
    from recom_tvm.runtime.cross import fingerprint_cat64

    func = fingerprint_cat64_func("llvm").with_attr("global_symbol", "main")
    mod = tvm.compile(tvm.IRModule({"main": func}), target="llvm")
    rng = np.random.default_rng(5)
    a = rng.integers(0, 2**64, size=1000, dtype=np.uint64)
    b = np.concatenate([fingerprint64(strings_of_every_class()[:500]),
                        rng.integers(-2**63, 2**63, size=500, dtype=np.int64).view(np.uint64)])
    out = tvm.runtime.tensor(np.zeros(1000, np.uint64))
    mod["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b), out)
    np.testing.assert_array_equal(out.numpy(), fingerprint_cat64(a, b))


def test_llvm_uint64_arithmetic_wraps():
    """ad() / mu() on llvm (32-bit halves: TVM's LLVM codegen marks uint64 add / mul `nuw`, so a plain wrapping
    operator is poison there) equal arithmetic mod 2^64 at the extremes and on random words; out[2] is the pattern
    that plain operators compile to 0xffff...ffff (rot(a + k2, 25) * (k2 + 20), from HashLen0to16)."""
    from tvm.script import tirx as T

    from recom_tvm.ops import fingerprint_tir as F

    with F._wrapping(True):
        @T.prim_func(s_tir=True)
        def arith(a: T.Buffer((64,), "uint64"), b: T.Buffer((64,), "uint64"), out: T.Buffer((3, 64), "uint64")):
            for i in range(64):
                with T.sblock("w"):
                    vi = T.axis.spatial(64, i)
                    out[0, vi] = F.ad(a[vi], b[vi], F.K2)
                    out[1, vi] = F.mu(F.mu(a[vi], b[vi]), F.K1)
                    out[2, vi] = F.mu(F.rot(F.ad(a[vi], F.K2), 25), F.ad(F.K2, F._u64(20)))

    mod = tvm.compile(tvm.IRModule({"main": arith}), target="llvm")
    rng = np.random.default_rng(7)
    edges_a = np.array([0, 2**64 - 1, 2**63, 2**32 - 1], np.uint64)
    edges_b = np.array([2**64 - 1, 2**64 - 1, 2**63, 2**32 + 1], np.uint64)
    a = np.concatenate([edges_a, rng.integers(0, 2**64 - 1, 60, dtype=np.uint64, endpoint=True)])
    b = np.concatenate([edges_b, rng.integers(0, 2**64 - 1, 60, dtype=np.uint64, endpoint=True)])
    out = tvm.runtime.tensor(np.zeros((3, 64), np.uint64))
    mod["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b), out)
    k1, k2 = 0xB492B66FBE98F273, 0x9AE16A3B2F90404F
    exp_add = [(int(x) + int(y) + k2) % 2**64 for x, y in zip(a, b)]
    exp_mul = [(int(x) * int(y) % 2**64) * k1 % 2**64 for x, y in zip(a, b)]
    assert out.numpy()[0].tolist() == exp_add
    assert out.numpy()[1].tolist() == exp_mul
    rot = [((x + k2) % 2**64 >> 25 | (x + k2) % 2**64 << 39) % 2**64 for x in map(int, a)]
    assert out.numpy()[2].tolist() == [r * (k2 + 20) % 2**64 for r in rot]
