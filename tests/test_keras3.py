"""Keras 3 preprocessing graphs over RaggedTensors: Hashing, StringLookup, IntegerLookup, Discretization,
HashedCrossing + Embedding + ragged reductions (UnsortedSegmentSum; an empty row's mean is NaN, as in TF), against
TensorFlow."""

from __future__ import annotations

import os

import numpy as np
import pytest

import recom_tvm

from conftest import assert_matches_tf


@pytest.fixture(scope="module")
def keras3_model(tmp_path_factory):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(4)
    hashing = keras.layers.Hashing(num_bins=50)
    words = keras.layers.StringLookup(vocabulary=["a", "b", "c", "dd"])
    ints = keras.layers.IntegerLookup(vocabulary=[7, 11, 13, 42])
    disc = keras.layers.Discretization(bin_boundaries=[-1.0, 0.0, 0.5, 2.0])
    cross = keras.layers.HashedCrossing(num_bins=30)
    e_hash, e_word, e_int, e_disc, e_cross = (keras.layers.Embedding(n, 4) for n in (50, 5, 5, 5, 30))

    @tf.function(input_signature=[tf.RaggedTensorSpec([None, None], tf.string),
                                  tf.RaggedTensorSpec([None, None], tf.int64), tf.TensorSpec([None, 1], tf.float32),
                                  tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.int64)])
    def serve(text, ids, price, country, item):
        parts = [tf.reduce_mean(e_hash(hashing(text)), axis=1),  # NaN for an empty row
                 tf.reduce_sum(e_word(words(text)), axis=1),
                 tf.reduce_sum(e_int(ints(ids)), axis=1),
                 tf.reshape(e_disc(disc(price)), [-1, 4]),
                 e_cross(cross((country, item)))]
        return {"score": tf.concat(parts, axis=1)}

    mod = tf.Module()
    mod.layers = [hashing, words, ints, disc, cross, e_hash, e_word, e_int, e_disc, e_cross]
    mod.serve = serve
    path = os.path.join(str(tmp_path_factory.mktemp("k3")), "sm")
    tf.saved_model.save(mod, path, signatures={"serving_default": serve.get_concrete_function()})
    loaded = tf.saved_model.load(path)
    mod_r, params, spec = recom_tvm.from_tensorflow(path)
    built = {opt: recom_tvm.build(recom_tvm.optimize(mod_r) if opt else mod_r, "llvm", params)
             for opt in (False, True)}
    return loaded, built, [f["name"] for f in spec.features]


def _ragged(rng, batch, make):
    lens = rng.integers(0, 4, batch)
    splits = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    return make(int(splits[-1])), splits


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "optimized"])
def test_keras3_ragged_preprocessing_matches_tf(keras3_model, optimized):
    import tensorflow as tf

    loaded, built, names = keras3_model
    rng = np.random.default_rng(0)
    for batch in (1, 6, 80):
        text = _ragged(rng, batch, lambda n: np.array([rng.choice(["a", "b", "c", "dd", "", "zz"]) for _ in range(n)],
                                                      dtype=object))
        ids = _ragged(rng, batch, lambda n: rng.choice([7, 11, 13, 42, 5, -1], n).astype(np.int64))
        price = rng.normal(size=(batch, 1)).astype(np.float32)
        country = np.array([rng.choice(["fr", "de", "us", ""]) for _ in range(batch)], dtype=object)
        item = rng.integers(-3, 100, batch).astype(np.int64)
        exp = loaded.serve(tf.RaggedTensor.from_row_splits(tf.constant(text[0].astype(str)), text[1]),
                           tf.RaggedTensor.from_row_splits(tf.constant(ids[0]), ids[1]), tf.constant(price),
                           tf.constant(country.astype(str)), tf.constant(item))
        exp = exp["score"].numpy()
        if (np.diff(text[1]) == 0).any():
            assert np.isnan(exp).any()  # an empty row's mean is NaN in TF; assert_matches_tf compares NaNs too
        got = built[optimized].run(dict(zip(names, [text, ids, price, country, item])))["score"]
        assert_matches_tf(got, exp, f"batch={batch}")


def test_bad_row_splits_are_a_clear_error(keras3_model):
    _, built, names = keras3_model
    text = (np.array(["a", "b"], dtype=object), np.array([0, 2, 1], np.int64))  # decreasing
    ids = (np.array([7], np.int64), np.array([0, 1, 1], np.int64))
    with pytest.raises(recom_tvm.InvalidArgumentError, match="row_splits"):
        built[True].run(dict(zip(names, [text, ids, np.zeros((2, 1), np.float32), np.array(["a", "b"], object),
                                         np.zeros(2, np.int64)])))
