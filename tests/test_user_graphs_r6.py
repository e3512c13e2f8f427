"""Round 6 of graphs written the ways users write them (the survey of 2026-12-10: DeepCTR-style heads through
tf_keras layers, Keras mixed precision, tf.einsum forms, sorts of a run-time width, checks and clips users put in a
served graph, small-int / float64 / bool / scalar feeds, tf.strings preprocessing and vocabulary files in a
SavedModel): what gave a silent wrong answer, crashed or failed to import now matches TF, or fails with an error
naming the node and op.

- an einsum or batch matmul contracting a dim of size 0 (`bi,bi->` at B = 0) read back unwritten memory (inf);
- float16 MatMul / BatchMatMul (Keras' mixed_float16 Dense layers) rounded every partial sum, 1 ulp off TF;"""

from __future__ import annotations

import numpy as np
import pytest

import recom_tvm
from recom_tvm import config

from conftest import FunctionModel, assert_matches_tf, outcome


@pytest.fixture()
def no_fallback(monkeypatch):
    monkeypatch.setattr(config, "host_fallback", False)


NAN, INF = np.nan, np.inf


def _to_half(z):
    import tensorflow as tf

    return tf.cast(z, tf.float16)


class SavedModelCheck:
    """A SavedModel imported from its directory and built as imported and as optimized; `check` compares every
    output of its serving signature (or TF's error class) with TF's."""

    def __init__(self, path: str) -> None:
        import tensorflow as tf

        self.fn = tf.saved_model.load(path).signatures["serving_default"]
        mod, params, _ = recom_tvm.from_tensorflow(path)
        self.variants = {"imported": recom_tvm.build(mod, "llvm", params),
                         "optimized": recom_tvm.build(recom_tvm.optimize(mod), "llvm", params)}

    def check(self, feeds: dict, what: str) -> dict:
        import tensorflow as tf

        exp = outcome(lambda: {k: v.numpy() for k, v in self.fn(**{k: tf.constant(v) for k, v in feeds.items()})
                               .items()})
        for name, model in self.variants.items():
            got = outcome(lambda: model.run(feeds))
            if isinstance(exp, BaseException) or isinstance(got, BaseException):
                assert_matches_tf(got, exp, f"{what} [{name}]")
                continue
            assert sorted(got) == sorted(exp), (sorted(got), sorted(exp))
            for k in exp:
                assert got[k].dtype == exp[k].dtype, (what, k, got[k].dtype, exp[k].dtype)
                assert_matches_tf(got[k], exp[k], f"{what} [{name}] output {k!r}")
        return exp


def test_einsum_and_batch_matmul_contracting_an_empty_dim(no_fallback):
    """tf.einsum('bi,bi->') (a batch-wide dot product) and tf.matmul(a[None], b[None], transpose_a=True) sum over
    the batch: at B = 0 TVM's matmul never ran its reduction's initial write and returned whatever its buffer held
    (inf, 3e21; TF: zeros). The einsum forms users write beside it (outer products, per-field weights, '...')."""
    import tensorflow as tf

    rng = np.random.default_rng(61)
    fw = tf.constant(rng.normal(size=(2, 3)).astype(np.float32))
    v = tf.constant(rng.normal(size=(3,)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None, 3], tf.float32),
                                  tf.TensorSpec([None, 2, 3], tf.float32)])
    def serve(a, b, f):
        return {"scal": tf.einsum("bi,bi->", a, b), "gram": tf.matmul(a[None], b[None], transpose_a=True),
                "gram2": tf.matmul(a, b, transpose_a=True), "dot": tf.einsum("bi,bi->b", a, b),
                "outer": tf.einsum("bi,bj->bij", a, b), "perfield": tf.einsum("bnd,nd->bn", f, fw),
                "ell": tf.einsum("...d,d->...", f, v), "pair": tf.einsum("bnd,bmd->bnm", f, f)}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    a, b = rng.normal(size=(3, 3)).astype(np.float32), rng.normal(size=(3, 3)).astype(np.float32)
    f = rng.normal(size=(3, 2, 3)).astype(np.float32)
    for n in (3, 1, 0):
        model.check({"a": a[:n], "b": b[:n], "f": f[:n]}, (a[:n], b[:n], f[:n]), f"B={n}")


def test_keras_mixed_float16_dense_tower(no_fallback, tmp_path):
    """tf_keras' mixed_float16 policy: embeddings and Dense layers in float16 (Cast, float16 MatMul, BiasAdd, Relu),
    the heads in float32. TF-CPU's float16 MatMul sums its products in float32 and rounds once; TVM's rounded every
    partial sum, 1 ulp off in the hidden layers (the score moved by ~1e-4): now bit for bit, fp16 overflow to inf
    and NaN included."""
    import tensorflow as tf
    import tf_keras as K

    K.utils.set_random_seed(64)
    K.mixed_precision.set_global_policy("mixed_float16")
    try:
        ids = K.Input((3,), dtype="int64", name="ids")
        num = K.Input((2,), dtype="float32", name="num")
        e = K.layers.Flatten()(K.layers.Embedding(10, 4)(ids))
        h = K.layers.Dense(16, activation="relu")(
            K.layers.Concatenate()([e, K.layers.Lambda(_to_half)(num)]))
        h = K.layers.Dense(8, activation="relu", name="h")(h)
        probs = K.layers.Activation("softmax", dtype="float32", name="probs")(K.layers.Dense(3)(h))
        score = K.layers.Dense(1, activation="sigmoid", dtype="float32", name="score")(h)
        model = K.Model([ids, num], {"probs": probs, "score": score, "h": h})
    finally:
        K.mixed_precision.set_global_policy("float32")
    model.save(str(tmp_path / "model"))
    check = SavedModelCheck(str(tmp_path / "model"))
    i = np.array([[1, 2, 3], [0, 9, 9], [5, 5, 5], [4, 2, 7]], np.int64)
    n = np.array([[0.5, -1], [1e5, 3], [NAN, 1], [2, 0.25]], np.float32)  # 1e5: past float16's range
    exp = check.check({"ids": i, "num": n}, "B=4")
    assert exp["h"].dtype == np.float16
    got = check.variants["imported"].run({"ids": i, "num": n})
    np.testing.assert_array_equal(got["h"], exp["h"])  # bit for bit, not within a tolerance
    check.check({"ids": i[:0], "num": n[:0]}, "B=0")
    check.check({"ids": i[:1] + 9, "num": n[:1]}, "id 10")
