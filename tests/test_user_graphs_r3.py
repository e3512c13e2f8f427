"""Round 3 of graphs written the ways users write them (a survey of ~38 user-style graphs, 2026-12-08): what gave
a silent wrong answer, crashed or failed to import now matches TF (or fails with an error naming the op)."""

from __future__ import annotations

import numpy as np
import pytest

from recom_tvm import config

from conftest import FrozenTF1Model, FunctionModel


@pytest.fixture()
def no_fallback(monkeypatch):
    monkeypatch.setattr(config, "host_fallback", False)


def test_division_by_a_constant_as_tf_serves_it(no_fallback):
    """TF serves graphs through Grappler, which divides a float by a constant it folds as x * (1 / c) and pushes
    constants down chains of Mul: 70 / 100 * 10 floors to 6 in a served graph (7 in eager TF, and in recom_tvm
    before): tf.histogram_fixed_width_bins, tf.cast(price / 10), x / sqrt(const). A variable or a captured tensor
    is fed to the graph at run time: there TF divides."""
    import tensorflow as tf

    captured = tf.constant(100.0)
    var = tf.Variable(100.0)
    std = tf.constant(np.array([3.0, 7.0, 0.1], np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([None, 3], tf.float32)])
    def serve(price, x):
        return {"cast": tf.cast(price / 10.0 * 3.0, tf.int64), "floor": tf.floor(price / 100.0 * 10.0),
                "sqrt": tf.floor(price / tf.sqrt(tf.constant(10000.0)) * 10.0),
                "add_chain": tf.floor((price / 7.0 + 0.1) + 0.2),
                "captured": tf.floor(price / captured * 10.0), "variable": tf.floor(price / var * 10.0),
                "norm": tf.floor((x - tf.constant([1., 2., 3.])) / tf.constant([3.0, 7.0, 0.1]) * 100.0),
                "norm_captured": tf.floor(x / std * 100.0),
                "hist": tf.histogram_fixed_width_bins(price, [0.0, 100.0], nbins=10),
                "f64": tf.floor(tf.cast(price, tf.float64) / 100.0 * 10.0)}

    model = FunctionModel(serve.get_concrete_function())
    price = np.array([10, 20, 30, 70, 0.7, 9.99, 140, -70, 6.3, 2.1, np.nan, np.inf], np.float32)
    x = np.array([[1 + 3 * k, 2 + 7 * k, 3 + 0.1 * k] for k in (0.3, 0.7, 0.9, 1.3, 2.1, 5.7)], np.float32)
    x = np.resize(x, (12, 3))
    got = model.check({"price": price, "x": x}, (price, x), "served rounding")
    assert got["imported"]["hist"][3] == 6 and got["imported"]["variable"][3] == 7  # (the two roundings)
    model.check({"price": price[:0], "x": x[:0]}, (price[:0], x[:0]), "B=0")


def test_division_by_a_constant_in_a_frozen_graph(no_fallback, tmp_path):
    """A frozen TF1 graph: its variables are Consts, which Grappler folds: x / w is x * (1 / w) there."""
    import tensorflow as tf

    v1 = tf.compat.v1

    def build():
        price = v1.placeholder(tf.float32, [None], name="price")
        w = v1.get_variable("w", initializer=np.float32(100.0))
        return {"bucket": tf.identity(tf.cast(price / w * 10.0, tf.int32), name="bucket")}

    m = FrozenTF1Model(build, {"price": "price:0"}, tmp_path)
    m.check({"price": np.array([10, 20, 30, 70, 140, -70, 5], np.float32)}, "x / frozen variable")


def test_band_part_causal_mask(no_fallback):
    """Hand-written causal self-attention: tf.linalg.band_part(ones, -1, 0) (MatrixBandPart, unsupported before)
    times the padding mask, masked softmax, the last valid position by gather(batch_dims=1); and band_part of a
    computed [B, T, T] tensor with both bands."""
    import tensorflow as tf

    rng = np.random.default_rng(30)
    T, D = 4, 4
    emb = tf.constant(rng.normal(size=(12, D)).astype(np.float32))
    wq, wk = (tf.constant(rng.normal(size=(D, D)).astype(np.float32)) for _ in range(2))

    @tf.function(input_signature=[tf.TensorSpec([None, T], tf.int32), tf.TensorSpec([None], tf.int32)])
    def serve(hist, length):
        x = tf.gather(emb, hist)
        s = tf.matmul(x @ wq, x @ wk, transpose_b=True)
        m = tf.linalg.band_part(tf.ones([T, T]), -1, 0)[None] * tf.cast(hist != 0, tf.float32)[:, None, :]
        o = tf.nn.softmax(s + (1.0 - m) * -1e9) @ x
        return {"last": tf.gather(o, tf.maximum(length - 1, 0), batch_dims=1),
                "band": tf.linalg.band_part(s, 1, 2), "lower": tf.linalg.band_part(s, 0, -1)}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    for hist, length in (([[1, 2, 3, 0], [0, 0, 0, 0], [4, 0, 5, 11]], [3, 0, 4]), ([[7, 7, 7, 7]], [2]),
                         (np.zeros((0, T)), [])):
        hist, length = np.array(hist, np.int32).reshape(-1, T), np.array(length, np.int32)
        model.check({"hist": hist, "length": length}, (hist, length), f"B={len(hist)}")
    bad = (np.ones((1, T), np.int32), np.array([5], np.int32))
    model.check(dict(zip(("hist", "length"), bad)), bad, "length past T")


def test_string_columns_of_a_rankless_sparse_placeholder(no_fallback, tmp_path):
    """TF1 input_layer over string sparse_placeholders without a shape, in a partitioned variable scope: the
    columns' rank test is a StatelessIf whose inlined outputs (an IdentityN) carry the string values; the host
    stage had no IdentityN ('it works on strings ... must run in the host stage'). Hash bucket embedding with
    max_norm / sqrtn, hash bucket indicator, numeric with normalizer_fn, bucketized."""
    import tensorflow as tf

    v1 = tf.compat.v1
    fc = v1.feature_column

    def build():
        q = v1.sparse_placeholder(tf.string, name="q")
        cat = v1.sparse_placeholder(tf.string, name="cat")
        x = v1.placeholder(tf.float32, [None, 2], name="x")
        cols = [fc.embedding_column(fc.categorical_column_with_hash_bucket("q", 50), 8, combiner="sqrtn",
                                    max_norm=1.0),
                fc.numeric_column("x", shape=(2,), normalizer_fn=lambda t: (t - 1.5) / 3.0),
                fc.bucketized_column(fc.numeric_column("x", shape=(2,)), [0.0, 2.0]),
                fc.indicator_column(fc.categorical_column_with_hash_bucket("cat", 5))]
        with v1.variable_scope("dnn", partitioner=v1.min_max_variable_partitioner(max_partitions=3,
                                                                                   min_slice_size=64)):
            h = fc.input_layer({"q": q, "cat": cat, "x": x}, cols)
        return {"emb": tf.identity(h, name="emb")}

    def parts(name):
        return {"indices": f"{name}/indices:0", "values": f"{name}/values:0", "dense_shape": f"{name}/shape:0"}

    def sparse(rows):
        idx = [[r, c] for r, row in enumerate(rows) for c in range(len(row))]
        return (np.array(idx, np.int64).reshape(-1, 2), np.array([v for row in rows for v in row], object),
                np.array([len(rows), max([len(r) for r in rows] + [1])], np.int64))

    m = FrozenTF1Model(build, {"q": parts("q"), "cat": parts("cat"), "x": "x:0"}, tmp_path)
    m.check({"q": sparse([[b"shoe", b"red"], [], [b"a"]]), "cat": sparse([[b"a"], [b"zz", b"b"], []]),
             "x": np.array([[1, 2], [np.nan, 0], [3, 4]], np.float32)}, "B=3")
    m.check({"q": sparse([[b""]]), "cat": sparse([[b"c"]]), "x": np.zeros((1, 2), np.float32)}, "B=1")


def test_gather_nd_with_batch_dims(no_fallback):
    """tf.gather_nd(params, indices, batch_dims=1) (re-ranking by argsort): TF's BatchGatherND unstacks the batch
    size from the shape, and the importer's Unpack of a symbolic shape gave a bare tirx Var instead of an array
    (a crash: 'dtype is only available on a Var with BufferType')."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 5], tf.float32), tf.TensorSpec([None, 5], tf.int64)])
    def serve(scores, cand):
        order = tf.argsort(scores, axis=-1, direction="DESCENDING", stable=True)
        return {"ids": tf.gather(cand, order, batch_dims=1),
                "ids_nd": tf.gather_nd(cand, order[:, :2, None], batch_dims=1)}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    scores = np.array([[.1, .5, .5, -1, 0], [0] * 5, [3, 2, 1, 5, 4]], np.float32)
    cand = np.arange(15, dtype=np.int64).reshape(3, 5)
    model.check({"scores": scores, "cand": cand}, (scores, cand), "B=3")
    model.check({"scores": scores[:0], "cand": cand[:0]}, (scores[:0], cand[:0]), "B=0")
