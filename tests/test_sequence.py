"""Sequence columns: SequenceFeatures ([B, T, D] + sequence_length) over sequence_categorical_column_with_*,
pooled and fed to a Dense head, against TensorFlow (imported and optimized), with empty rows and ragged lengths."""

from __future__ import annotations

import os

import numpy as np
import pytest

import recom_tvm

from conftest import assert_matches_tf


@pytest.fixture(scope="module")
def sequence_model(tmp_path_factory):
    import tensorflow as tf
    import tf_keras

    fc = tf.feature_column
    cols = [fc.embedding_column(fc.sequence_categorical_column_with_hash_bucket("a", 50), 4),
            fc.embedding_column(fc.sequence_categorical_column_with_identity("b", 20), 3)]
    sig = {"a": tf.SparseTensorSpec([None, None], tf.string), "b": tf.SparseTensorSpec([None, None], tf.int64)}
    tf.random.set_seed(3)
    inputs = {k: tf_keras.Input(type_spec=s, name=k) for k, s in sig.items()}
    seq, seq_len = tf_keras.experimental.SequenceFeatures(cols)(inputs)
    pooled = tf_keras.layers.GlobalAveragePooling1D()(seq)
    length = tf_keras.layers.Lambda(lambda x: tf.cast(tf.expand_dims(x, 1), tf.float32))(seq_len)
    out = tf_keras.layers.Dense(1, activation="sigmoid")(tf_keras.layers.Concatenate()([pooled, length]))
    model = tf_keras.Model(inputs, out)
    mod = tf.Module()
    mod.model = model
    mod.serve = tf.function(lambda f: {"score": model(f)}, input_signature=[sig])
    path = os.path.join(str(tmp_path_factory.mktemp("seq")), "sm")
    tf.saved_model.save(mod, path, signatures={"serving_default": mod.serve.get_concrete_function()})
    loaded = tf.saved_model.load(path)
    mod_r, params, _ = recom_tvm.from_tensorflow(path)
    built = {opt: recom_tvm.build(recom_tvm.optimize(mod_r) if opt else mod_r, "llvm", params)
             for opt in (False, True)}
    return loaded, built


def _run_both(model_pair, optimized: bool, feeds: dict):
    """(ours, TF's) scores, or the exceptions each raised."""
    import tensorflow as tf

    loaded, built = model_pair
    tf_feeds = {k: tf.SparseTensor(v[0], tf.constant(v[1], tf.string if k == "a" else tf.int64), v[2])
                for k, v in feeds.items()}
    out = []
    for fn in (lambda: built[optimized].run(feeds)["score"], lambda: loaded.serve(tf_feeds)["score"].numpy()):
        try:
            out.append(fn())
        except Exception as err:  # noqa: BLE001 - compared below
            out.append(err)
    return tuple(out)


def _feeds(rng, batch):
    """Both features share the rows' lengths (SequenceFeatures requires equal sequence lengths)."""
    lens = rng.integers(0, 5, batch)
    rows = np.repeat(np.arange(batch), lens)
    cols = np.concatenate([np.arange(k) for k in lens]) if lens.sum() else np.zeros(0, np.int64)
    idx = np.stack([rows, cols], 1).astype(np.int64).reshape(-1, 2)
    shape = np.array([batch, max(int(lens.max()) if batch else 0, 1)], np.int64)
    a = np.array([f"w{v}" for v in rng.integers(0, 30, len(idx))], dtype=object)
    b = rng.integers(0, 20, len(idx)).astype(np.int64)
    return {"a": (idx, a, shape), "b": (idx, b, shape)}


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "optimized"])
def test_sequence_features_match_tf(sequence_model, optimized):
    rng = np.random.default_rng(0)
    for batch in (1, 5, 64):
        got, exp = _run_both(sequence_model, optimized, _feeds(rng, batch))
        assert_matches_tf(got, exp, f"batch={batch}")


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "optimized"])
def test_unequal_sequence_lengths_raise_like_tf(sequence_model, optimized):
    feeds = _feeds(np.random.default_rng(1), 4)
    idx, vals, shape = feeds["b"]
    keep = np.ones(len(idx), bool)
    keep[-1] = False  # one id fewer in the last non-empty row of b
    feeds["b"] = (idx[keep], vals[keep], shape)
    got, exp = _run_both(sequence_model, optimized, feeds)
    assert isinstance(exp, Exception)
    assert_matches_tf(got, exp)
