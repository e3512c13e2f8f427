"""TF2 feature columns as Keras-2 era code writes them: `tf.feature_column` columns in a tf_keras functional model
(`DenseFeatures`, `SequenceFeatures`) over `tf_keras.Input`s (dense padded strings, ids, floats; sparse sequence
inputs), saved as a SavedModel with a serving signature, or frozen into a .pb with
recom_tvm.frontend.loader.freeze_with_tables."""

from __future__ import annotations

import os

import numpy as np

from . import registry as r

COUNTRIES = ("us", "fr", "de", "cn", "jp", "br", "ünï")
PAGES = tuple(f"page_{i}" for i in range(30))


def _tf():
    import tensorflow as tf

    return tf


def _dense_feeds(rng, batch, hostile):
    lens = r.row_lengths(rng, batch, 4, hostile)
    return {"country": r.strings(rng, batch, COUNTRIES, hostile).reshape(batch, 1),
            # a padded multi-valued string input: "" marks the empty slots, as feature columns read it
            "tags": r.padded(lens, r.strings(rng, int(lens.sum()), PAGES, hostile), 4, ""),
            "user_id": r.ints(rng, (batch, 1), 0, 2000, hostile),
            "age": r.floats(rng, (batch, 1), hostile, 20.0) + np.float32(0 if hostile else 40.0),
            "price": r.floats(rng, (batch, 1), hostile, 10.0)}


def _keras_model(tf):
    import tf_keras

    fc = tf.feature_column
    tf_keras.utils.set_random_seed(9)
    country = fc.categorical_column_with_vocabulary_list("country", COUNTRIES, num_oov_buckets=2)
    age = fc.bucketized_column(fc.numeric_column("age"), [18.0, 25.0, 35.0, 50.0, 65.0])
    cols = [fc.embedding_column(country, 4),
            fc.indicator_column(country),  # (a second vocabulary of "country" trips TF's untracked-table bug)
            fc.embedding_column(fc.categorical_column_with_hash_bucket("tags", 100), 6, combiner="sum"),
            fc.embedding_column(fc.categorical_column_with_identity("user_id", 1000, default_value=0), 4),
            fc.embedding_column(age, 3),
            fc.embedding_column(fc.crossed_column(["country", age], 50), 4),
            fc.numeric_column("price", normalizer_fn=lambda x: (x - 3.0) / 2.0)]
    inputs = {"country": tf_keras.Input((1,), dtype=tf.string, name="country"),
              "tags": tf_keras.Input((None,), dtype=tf.string, name="tags"),
              "user_id": tf_keras.Input((1,), dtype=tf.int64, name="user_id"),
              "age": tf_keras.Input((1,), dtype=tf.float32, name="age"),
              "price": tf_keras.Input((1,), dtype=tf.float32, name="price")}
    emb = tf_keras.layers.DenseFeatures(cols, name="features")(inputs)
    h = tf_keras.layers.Dense(8, activation="relu")(emb)
    score = tf_keras.layers.Dense(1, activation="sigmoid", name="score")(h)
    return tf_keras.Model(inputs, {"score": score, "embedding": emb})


def _save(tf, model, path: str) -> None:
    """Save the model with a serving signature. model.save() cannot (Keras' traced call functions capture the
    vocabulary tables DenseFeatures built in the functional graph: 'untracked resource'); the workaround users are
    pointed to: a tf.Module holding the model, its serving tf.function as the signature, tf.saved_model.save."""
    specs = {k: tf.TensorSpec(v.shape, v.dtype, name=k) if not isinstance(v.type_spec, tf.SparseTensorSpec) else
             v.type_spec for k, v in model.input.items()}
    module = tf.Module()
    module.model = model
    module.serve = tf.function(lambda features: model(features), input_signature=[specs])
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve.get_concrete_function()})


@r.entry("tf2_feature_columns", feeds=_dense_feeds)
def tf2_dense_features_saved_model(out_dir: str) -> dict:
    """DenseFeatures over dense Keras inputs, saved as a SavedModel with a serving signature."""
    tf = _tf()
    model = _keras_model(tf)
    _save(tf, model, os.path.join(out_dir, "sm"))
    return {"saved_model": "sm", "call": "serve"}


@r.entry("tf2_feature_columns", feeds=_dense_feeds)
def tf2_dense_features_frozen(out_dir: str) -> dict:
    """The same model frozen from its serving signature into a .pb that keeps its tables (freeze_with_tables)."""
    from recom_tvm.frontend.loader import freeze_with_tables

    tf = _tf()
    model = _keras_model(tf)
    _save(tf, model, os.path.join(out_dir, "sm"))
    loaded = tf.saved_model.load(os.path.join(out_dir, "sm"))  # kept alive: the function reads its variables
    fn = loaded.signatures["serving_default"]
    gd, frozen = freeze_with_tables(fn)
    with open(os.path.join(out_dir, "model.pb"), "wb") as f:
        f.write(gd.SerializeToString())
    _, kwargs = fn.structured_input_signature
    names = [t.name for t in frozen.inputs[:len(kwargs)]]
    inputs = dict(zip(sorted(kwargs), names))  # the flat inputs follow the sorted keyword names
    outputs = {k: t.name for k, t in zip(sorted(fn.structured_outputs), frozen.outputs)}
    return {"pb": "model.pb", "signature": {"inputs": inputs, "outputs": outputs}}


# ------------------------------------------------------------------------------------------ SequenceFeatures
def _sequence_feeds(rng, batch, hostile):
    lens = r.row_lengths(rng, batch, 5, hostile)
    n = int(lens.sum())
    dwell = r.floats(rng, n, hostile, 5.0)
    return {"pages": r.sparse(lens, r.strings(rng, n, PAGES, hostile)),
            "dwell": r.sparse(lens, dwell),
            "country": r.strings(rng, batch, COUNTRIES, hostile).reshape(batch, 1)}


@r.entry("tf2_feature_columns", feeds=_sequence_feeds, fused=False,
         why_not_fused="the sequence column's [B, T, D] output is pooled by the model's own code (mask, sum, divide by "
                       "the length) before the concat, which is no embedding bag the kernel computes; that leaves one "
                       "fusable column (the context embedding), and FuseColumns fuses two or more")
def tf2_sequence_features(out_dir: str) -> dict:
    """SequenceFeatures over sparse sequence inputs (a clicked-pages sequence with dwell times), pooled over the
    sequence length with a mask, beside a DenseFeatures context column."""
    import tf_keras

    tf = _tf()
    fc = tf.feature_column
    sfc = tf.feature_column
    tf_keras.utils.set_random_seed(10)
    seq_cols = [fc.embedding_column(sfc.sequence_categorical_column_with_hash_bucket("pages", 64), 4),
                sfc.sequence_numeric_column("dwell")]
    inputs = {"pages": tf_keras.Input((None,), sparse=True, dtype=tf.string, name="pages"),
              "dwell": tf_keras.Input((None,), sparse=True, dtype=tf.float32, name="dwell"),
              "country": tf_keras.Input((1,), dtype=tf.string, name="country")}
    seq, length = tf_keras.experimental.SequenceFeatures(seq_cols, name="sequence")(
        {k: inputs[k] for k in ("pages", "dwell")})
    mask = tf.sequence_mask(length, tf.shape(seq)[1], dtype=tf.float32)
    pooled = tf.reduce_sum(seq * tf.expand_dims(mask, -1), axis=1) / tf.maximum(
        tf.cast(tf.expand_dims(length, 1), tf.float32), 1.0)
    ctx = tf_keras.layers.DenseFeatures([fc.embedding_column(fc.categorical_column_with_vocabulary_list(
        "country", COUNTRIES), 3)], name="context")({"country": inputs["country"]})
    emb = tf_keras.layers.Concatenate(name="embedding")([pooled, ctx])
    score = tf_keras.layers.Dense(1, activation="sigmoid", name="score")(emb)
    model = tf_keras.Model(inputs, {"score": score, "embedding": emb, "length": length})
    _save(tf, model, os.path.join(out_dir, "sm"))
    return {"saved_model": "sm", "call": "serve"}
