"""Keras CTR models whose features are separate dense inputs (scalars [B] or padded [B, T]): the optimized model
binds every size the host checks read (the issue: after optimize every run raised KeyError '<feed>_dim0', or
'cannot tell the batch size'), and unequal batches raise like TF's concat."""

from __future__ import annotations

import numpy as np
import pytest

import recom_tvm

from conftest import assert_matches_tf


@pytest.fixture(scope="module")
def keras_ctr(tmp_path_factory):
    import tensorflow as tf
    import tf_keras

    tf_keras.utils.set_random_seed(3)
    fc = tf.feature_column
    cols = [fc.embedding_column(fc.categorical_column_with_hash_bucket("user", 50), 4),
            fc.embedding_column(fc.categorical_column_with_identity("cat", 20, default_value=0), 4),
            fc.embedding_column(fc.bucketized_column(fc.numeric_column("age"), [10.0, 20.0, 30.0]), 4),
            fc.embedding_column(fc.categorical_column_with_hash_bucket("tags", 30), 4, combiner="sum"),
            fc.numeric_column("price")]
    ins = {"user": tf_keras.Input(shape=(), dtype=tf.string, name="user"),
           "cat": tf_keras.Input(shape=(), dtype=tf.int64, name="cat"),
           "age": tf_keras.Input(shape=(), dtype=tf.float32, name="age"),
           "tags": tf_keras.Input(shape=(3,), dtype=tf.string, name="tags"),
           "price": tf_keras.Input(shape=(), dtype=tf.float32, name="price")}
    emb = tf_keras.layers.DenseFeatures(cols)(ins)
    out = tf_keras.layers.Dense(1)(tf_keras.layers.Dense(8, activation="relu")(emb))
    model = tf_keras.Model(ins, {"score": out, "embedding": emb})
    path = str(tmp_path_factory.mktemp("keras_ctr") / "sm")
    model.save(path)
    mod, params, _ = recom_tvm.from_tensorflow(path)
    opt = recom_tvm.optimize(mod)
    built = {False: recom_tvm.build(mod, "llvm", params), True: recom_tvm.build(opt, "llvm", params)}
    return tf.saved_model.load(path).signatures["serving_default"], built, opt


def test_scalar_and_padded_features_fuse_into_one_kernel(keras_ctr):
    """[B] features (expanded to [B, 1] on the device) and the masked one-id-per-row form of a dense identity
    column are recognized: all five columns in the one kernel."""
    facts = [str(f) for f in keras_ctr[2].attrs["recom_tvm.facts"]]
    assert any(f.startswith("fused 5 columns") for f in facts), facts
    assert not any("not fused" in f for f in facts), facts


def _feeds(rng, batch, tags_batch=None):
    words = np.array(["a", "b", "", "c", "ünï", "d" * 40], dtype=object)
    return {"user": rng.choice(words, batch), "cat": rng.integers(-3, 25, batch),
            "age": (rng.random(batch) * 40).astype(np.float32),
            "tags": rng.choice(words, (tags_batch or batch, 3)), "price": rng.random(batch).astype(np.float32)}


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "optimized"])
def test_separate_dense_inputs_match_tf(keras_ctr, optimized):
    import tensorflow as tf

    sig, built, _ = keras_ctr
    rng = np.random.default_rng(0)
    for batch in (1, 7, 300):
        feeds = _feeds(rng, batch)
        exp = sig(**{k: tf.constant(v) for k, v in feeds.items()})
        got = built[optimized].run(feeds)
        assert sorted(got) == sorted(exp), (sorted(got), sorted(exp))
        assert len(exp) == 2  # the score and the embedding stage (DenseFeatures' output)
        for key in exp:
            assert_matches_tf(got[key], exp[key].numpy(), f"B={batch} {key}")


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "optimized"])
def test_unequal_batches_raise_like_tf(keras_ctr, optimized):
    import tensorflow as tf

    sig, built, _ = keras_ctr
    feeds = _feeds(np.random.default_rng(1), 5, tags_batch=4)
    with pytest.raises(tf.errors.InvalidArgumentError):
        sig(**{k: tf.constant(v) for k, v in feeds.items()})
    with pytest.raises(recom_tvm.InvalidArgumentError):
        built[optimized].run(feeds)
