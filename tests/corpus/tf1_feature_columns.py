"""TF1 feature columns as Estimator-era code writes them: `tf.compat.v1.feature_column` + `input_layer` in a
Session, frozen with `convert_variables_to_constants` (the table initializers kept through `init_all_tables`)."""

from __future__ import annotations

import os

import numpy as np

from . import registry as r

COUNTRIES = ("us", "fr", "de", "cn", "jp", "br")
LEVELS = (1, 2, 3, 5, 8)


def _freeze(sess, graph, outputs: dict, inputs: dict, out_dir: str) -> dict:
    """Freeze the session's graph into out_dir/model.pb, keeping the table initializers (TF1 practice)."""
    tf = _tf()
    v1 = tf.compat.v1
    keep = [t.op.name for t in outputs.values()]
    init = [op.name for op in graph.get_operations() if op.name == "init_all_tables"]
    gd = v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), keep + init)
    with open(os.path.join(out_dir, "model.pb"), "wb") as f:
        f.write(gd.SerializeToString())
    return {"pb": "model.pb", "signature": {"inputs": inputs, "outputs": {k: t.name for k, t in outputs.items()}}}


def _tf():
    import tensorflow as tf

    return tf


def dense(x, units: int, activation, name: str):
    """A TF1 dense layer written by hand (tf.compat.v1.layers needs Keras 2), as pre-Keras code did."""
    tf = _tf()
    v1 = tf.compat.v1
    with v1.variable_scope(name):
        w = v1.get_variable("kernel", [int(x.shape[-1]), units], initializer=v1.glorot_uniform_initializer())
        b = v1.get_variable("bias", [units], initializer=v1.random_normal_initializer(stddev=0.1))
    return activation(tf.matmul(x, w) + b)


def _sparse_inputs(v1, tf, name: str, dtype) -> tuple:
    sp = v1.sparse_placeholder(dtype, [None, None], name=name)
    return sp, {"indices": sp.indices.name, "values": sp.values.name, "dense_shape": sp.dense_shape.name}


def _vocab_list_feeds(rng, batch, hostile):
    lens = r.row_lengths(rng, batch, 3, hostile)
    country = r.sparse(lens, r.strings(rng, int(lens.sum()), COUNTRIES, hostile))
    lens2 = r.row_lengths(rng, batch, 2, hostile)
    level = r.sparse(lens2, r.ints(rng, int(lens2.sum()), 0, 10, hostile))
    return {"country": country, "level": level, "age": r.floats(rng, (batch, 1), hostile)}


@r.entry("tf1_feature_columns", feeds=_vocab_list_feeds)
def tf1_vocab_list_indicator(out_dir: str) -> dict:
    """String and int vocabulary lists (embedding and indicator), a numeric column, a small MLP."""
    tf = _tf()
    v1 = tf.compat.v1
    fc = v1.feature_column
    with tf.Graph().as_default() as g:
        v1.set_random_seed(1)
        country, c_in = _sparse_inputs(v1, tf, "country", tf.string)
        level, l_in = _sparse_inputs(v1, tf, "level", tf.int64)
        age = v1.placeholder(tf.float32, [None, 1], name="age")
        cols = [fc.embedding_column(fc.categorical_column_with_vocabulary_list("country", COUNTRIES), 4,
                                    combiner="mean"),
                fc.indicator_column(fc.categorical_column_with_vocabulary_list("level", LEVELS, dtype=tf.int64)),
                fc.embedding_column(fc.categorical_column_with_vocabulary_list("level", LEVELS, dtype=tf.int64,
                                                                               num_oov_buckets=2), 3, combiner="sum"),
                fc.numeric_column("age")]
        emb = fc.input_layer({"country": country, "level": level, "age": age}, cols)
        h = dense(emb, 8, tf.nn.relu, "hidden")
        score = dense(h, 1, tf.sigmoid, "score")
        with v1.Session(graph=g) as sess:
            sess.run([v1.global_variables_initializer(), v1.tables_initializer()])
            return _freeze(sess, g, {"score": score, "embedding": emb},
                           {"country": c_in, "level": l_in, "age": age.name}, out_dir)


_ = np  # feeds helpers use numpy through the registry
