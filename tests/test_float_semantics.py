"""Float semantics as TF-CPU's: its kernels run with denormals flushed to zero (FTZ/DAZ), so a denormal input
buckets and compares as +-0 (the issue: Bucketize(-1e-45) against a boundary 0.0 landed one bucket lower);
NaN, +-inf, -0.0 in buckets and comparisons; CUDA built with IEEE division / sqrt (no --use_fast_math)."""

from __future__ import annotations

import numpy as np
import pytest

import recom_tvm
from recom_tvm.cuda_support import nvcc_path
from recom_tvm.models import zoo

from conftest import assert_matches_tf

SPECIAL = np.array([-1e-45, 1e-45, 0.0, -0.0, 1e-40, -1e-40, 1.17e-38, -1.18e-38, np.nan, np.inf, -np.inf, 2e-45,
                    -1.0, 0.5, 7.0], np.float32)
TABLE = np.arange(40, dtype=np.float32).reshape(10, 4)


@pytest.fixture(scope="module")
def bucketize_fn():
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32)])
    def serve(x):
        b = tf.raw_ops.Bucketize(input=x, boundaries=[-1.0, 0.0, 1e-45, 0.5])
        mask = tf.cast(x > 0.0, tf.float32) + tf.cast(x < 0.0, tf.float32) * 2.0  # float comparisons
        return {"emb": tf.reshape(tf.gather(tf.constant(TABLE), b), [-1, 4]), "bucket": b, "mask": mask}

    return serve


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "optimized"])
def test_denormals_bucket_and_compare_as_tf(bucketize_fn, optimized):
    mod, params, _ = recom_tvm.from_tensorflow(bucketize_fn.get_concrete_function())
    model = recom_tvm.build(recom_tvm.optimize(mod) if optimized else mod, "llvm", params)
    x = SPECIAL.reshape(-1, 1)
    exp = {k: v.numpy() for k, v in bucketize_fn(x).items()}
    got = model.run({"x": x})
    for key in ("bucket", "emb", "mask"):
        assert_matches_tf(got[key], exp[key], key)
    assert not x[0, 0] == 0  # the caller's feed is not flushed in place


def test_fused_bucketized_column_with_denormals(compiled):
    """The fused kernel's bucketize reads the flushed raw floats (zoo bucketized column, boundary 0.0)."""
    spec = zoo.per_column_type()["bucketized"]
    c = compiled(spec, optimized=True)
    assert "fused" in " ".join(c.mod.attrs["recom_tvm.facts"])
    feeds = spec.sample(len(SPECIAL), rng=3)
    name = spec.columns[0].name
    feeds[name] = SPECIAL.reshape(-1, 1).copy()
    got, exp = c.run_both(feeds)
    assert_matches_tf(got, exp, "denormal bucketized feeds")


@pytest.mark.parametrize("pos", [None, 0, 15, 16, 17, 31, 32, 39])
def test_one_denormal_anywhere_in_a_feed(compiled, pos):
    """The native host stage scans float feeds for denormals in blocks of 16 (then the tail): one denormal at a
    block's first or last element, past the blocks, or none, is flushed as the reference and TF do."""
    spec = zoo.per_column_type()["bucketized"]
    c = compiled(spec, optimized=True)
    feeds = spec.sample(40, rng=4)
    name = spec.columns[0].name
    x = np.linspace(-2, 2, 40, dtype=np.float32).reshape(-1, 1)
    if pos is not None:
        x[pos, 0] = -1e-40
    feeds[name] = x
    got, exp = c.run_both(feeds)
    assert_matches_tf(got, exp, f"a denormal at {pos}")


@pytest.mark.skipif(nvcc_path() is None, reason="nvcc (CUDA toolkit) is not installed on this host")
def test_cuda_builds_use_ieee_division_and_sqrt():
    """TVM passes --use_fast_math to nvcc unless told not to: approximate division / sqrt / exp differ from TF."""
    from recom_tvm.cuda_support import prepare_cuda_build
    import tvm
    from tvm.support import nvcc

    prepare_cuda_build()
    code = 'extern "C" __global__ void k(float* a, const float* b) { a[0] = sqrtf(a[0] / b[0]) + expf(b[1]); }'
    with tvm.target.Target({"kind": "cuda", "arch": "sm_90"}):
        ptx = nvcc.compile_cuda(code, target_format="ptx", compiler="nvcc").decode()  # the codegen's path
    assert "div.rn.f32" in ptx and "sqrt.rn.f32" in ptx, ptx[-1500:]
    assert "div.approx" not in ptx and "div.full" not in ptx and "sqrt.approx" not in ptx


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_host_stage_casts_hostile_floats_as_tf(dtype):
    """The host stage's Cast of NaN / inf / out-of-range floats to ints: TF-CPU's values (x86's INT_MIN pattern),
    without a numpy RuntimeWarning per request."""
    import warnings

    import tensorflow as tf

    from recom_tvm.runtime.host_stage import HOST_IMPLS

    x = np.array([np.nan, np.inf, -np.inf, 3e9, -3e9, 1e20, 1.5, -2.5], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = HOST_IMPLS["Cast"]({"attrs": {"DstT": dtype}}, x)
    np.testing.assert_array_equal(got, tf.cast(x, dtype).numpy())
