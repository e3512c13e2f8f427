"""A one-row feed TF broadcasts against the batch (frontend/row_broadcast.py finds it, runtime/row_broadcast.py
repeats it): request-level context features in a two-tower score, a placeholder_with_default of one row. Where the
repeat would change the answer (the feed's rows reach an output, are reduced or counted, or meet the batch in a
concat) the model is left as it was: TF's broadcast is refused with an error, never answered differently."""

from __future__ import annotations

import numpy as np
import pytest

import recom_tvm
from recom_tvm import config

from conftest import FunctionModel, assert_matches_tf


@pytest.fixture()
def no_fallback(monkeypatch):
    monkeypatch.setattr(config, "host_fallback", False)


def _function(fn, *specs):
    import tensorflow as tf

    return tf.function(fn, input_signature=list(specs)).get_concrete_function()


def test_two_tower_score_with_one_user_row(no_fallback):
    """A two-tower ranker served per request: the user's features (a hashed string id, a table lookup of a country,
    dense features, concatenated into one user vector through a small MLP) fed once, the B candidates' features
    B times; the score is the dot product. TF broadcasts the user's row; B user rows give the same answer, as do
    B = 1 and B = 0. A user fed with 2 rows against 3 items is TF's error."""
    import tensorflow as tf

    rng = np.random.default_rng(5)
    user_table = tf.constant(rng.normal(size=(50, 4)).astype(np.float32))
    item_table = tf.constant(rng.normal(size=(30, 4)).astype(np.float32))
    w_user = tf.constant(rng.normal(size=(4 + 2 + 3, 4)).astype(np.float32))
    countries = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(["de", "fr", "us"]), tf.constant([0, 1, 2], tf.int64)), default_value=-1)

    def score(user_id, country, user_dense, item_id, item_price):
        u = tf.gather(user_table, tf.strings.to_hash_bucket_fast(user_id, 50))
        c = tf.one_hot(countries.lookup(country), 2)  # (an unknown country: -1, all zeros)
        u = tf.nn.relu(tf.matmul(tf.concat([u, c, user_dense], axis=1), w_user))
        u = u / (tf.norm(u, axis=1, keepdims=True) + 1e-3)
        v = tf.gather(item_table, tf.math.floormod(item_id, 30)) * tf.math.log1p(item_price)
        return {"score": tf.reduce_sum(u * v, axis=1), "item_emb": v}

    cf = _function(score, tf.TensorSpec([None], tf.string, "user_id"), tf.TensorSpec([None], tf.string, "country"),
                   tf.TensorSpec([None, 3], tf.float32, "user_dense"), tf.TensorSpec([None], tf.int64, "item_id"),
                   tf.TensorSpec([None, 1], tf.float32, "item_price"))
    m = FunctionModel(cf)
    # the user's features, repeated together to the items' rows; the two item features broadcast against each
    # other too (TF would, an item_price of one row)
    groups = {tuple(sorted(g["features"])): {a[0] for a in g["anchors"]} for g in m.ispec.row_broadcast}
    assert groups == {("country", "user_dense", "user_id"): {"item_id"}, ("item_id",): {"item_price"},
                      ("item_price",): {"item_id"}}, groups

    def user(n):
        return (np.array([b"alice"] * n, object), np.array([b"fr"] * n, object),
                np.tile(np.array([[0.5, -1.0, 2.0]], np.float32), (n, 1)))

    for b in (3, 1, 0):
        items = (rng.integers(-40, 40, b).astype(np.int64), rng.uniform(0, 9, (b, 1)).astype(np.float32))
        for n in {1, b}:
            args = (*user(n), *items)
            m.check(dict(zip(m.names, args)), args, f"{n} user row(s), {b} items")
    items = (np.arange(3, dtype=np.int64), np.ones((3, 1), np.float32))
    m.check(dict(zip(m.names, (*user(2), *items))), (*user(2), *items), "2 user rows, 3 items (TF's error)")
    # one of the user's features with one row, another with three: TF's concat fails, so does the model
    uid, country, dense = user(1)
    args = (uid, np.array([b"fr"] * 3, object), dense, *items)
    m.check(dict(zip(m.names, args)), args, "user features of 1 and 3 rows (TF's error)")


def test_placeholder_with_default_of_one_row(tmp_path):
    """A TF1 SavedModel whose per-request scale is a placeholder_with_default of one row: left out, fed with one
    row, or fed per row, imported and optimized; merged Triton-style batches of requests leaving it out get each
    request's answer."""
    import tensorflow as tf

    from recom_tvm.serving.executor import Executor

    v1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        ids = v1.placeholder(tf.int64, [None, 2], name="ids")
        w = v1.placeholder_with_default(tf.ones([1, 1]), [None, 1], name="w")
        table = tf.constant(np.random.default_rng(7).normal(size=(12, 4)).astype(np.float32))
        emb = tf.reshape(tf.gather(table, tf.minimum(ids, 11)), [-1, 8], name="emb")
        score = tf.identity(tf.reduce_sum(emb, 1, keepdims=True) * w, name="score")
        sess = v1.Session(graph=g)
        path = str(tmp_path / "sm")
        v1.saved_model.simple_save(sess, path, inputs={"ids": ids, "w": w}, outputs={"emb": emb, "score": score})
    mod, params, spec = recom_tvm.from_tensorflow(path)
    assert spec.row_broadcast == [{"features": ["w"], "anchors": [["ids", "value", 0, "shape"]]}]
    x = np.array([[1, 2], [8, 0], [3, 3]], np.int64)
    rng = np.random.default_rng(1)
    for name, m in (("imported", recom_tvm.build(mod, "llvm", params)),
                    ("optimized", recom_tvm.build(recom_tvm.optimize(mod), "llvm", params))):
        for what, feeds, tf_feeds in (
                ("left out", {"ids": x}, {ids: x}),
                ("one row", {"ids": x, "w": np.full((1, 1), 0.5, np.float32)}, {ids: x, w: np.full((1, 1), 0.5)}),
                ("per row", {"ids": x, "w": np.arange(3, dtype=np.float32)[:, None]}, {ids: x, w: np.arange(3)[:, None]}),
                ("no rows", {"ids": x[:0]}, {ids: x[:0]})):
            exp = sess.run({"emb": emb, "score": score}, tf_feeds)
            got = m.run(feeds)
            for out in ("emb", "score"):
                assert_matches_tf(got[out], exp[out], f"{name}, w {what}: {out}")
        with pytest.raises(recom_tvm.InvalidArgumentError):  # TF: Incompatible shapes [2, 1] vs [3, 1]
            m.run({"ids": x, "w": np.ones((2, 1), np.float32)})
        for reqs in ([{"ids": rng.integers(0, 12, (b, 2))} for b in (2, 3, 4)],  # w left out
                     [{"ids": rng.integers(0, 12, (b, 2)), "w": rng.normal(size=(1, 1)).astype(np.float32)}
                      for b in (2, 3, 4)]):  # one w row each (three users)
            ex = Executor(m)
            for r, got in zip(reqs, ex.run(reqs)):
                assert not isinstance(got, Exception), got
                tf_feeds = {ids: r["ids"], **({w: r["w"]} if "w" in r else {})}
                np.testing.assert_allclose(got["score"], sess.run(score, tf_feeds), rtol=1e-6, atol=1e-6)
            assert ex.counters.merged_runs == 1 and ex.counters.merged_requests == 3, ex.counters
    sess.close()


# each: (why repeating the one-row feed w would change TF's answer, the graph of x [B, 2] and w [None, 2])
NOT_ROW_WISE = [
    ("a cumulative sum over the rows", lambda tf, x, w: {"y": x * tf.cumsum(w, axis=0)}),
    ("its row count read as data", lambda tf, x, w: {"y": x * w + tf.cast(tf.shape(w)[0], tf.float32)}),
    ("returned as it is", lambda tf, x, w: {"y": x * w, "w": tf.identity(w)}),
    ("reduced over the rows", lambda tf, x, w: {"y": x * w, "n": tf.reduce_sum(w, axis=0)}),
    ("concatenated with the batch", lambda tf, x, w: {"y": tf.concat([x, w], axis=1)}),
    ("added without broadcasting", lambda tf, x, w: {"y": tf.add_n([x, w])}),
    ("reshaped across rows", lambda tf, x, w: {"y": x * tf.reshape(tf.reshape(w, [-1]), [-1, 2])[:1]}),
]


@pytest.mark.parametrize("why,body", NOT_ROW_WISE, ids=[w for w, _ in NOT_ROW_WISE])
def test_a_one_row_feed_whose_rows_matter_is_not_repeated(no_fallback, why, body):
    """Where the feed's rows matter before the broadcast (or after it, in an output), it is not listed, and a
    one-row w against three rows of x is refused (an error naming both) where TF may answer: never a different
    answer. Equal rows match TF; where x is listed instead (its rows do not matter), its one row against w's
    three matches TF."""
    import tensorflow as tf

    cf = _function(lambda x, w: body(tf, x, w), tf.TensorSpec([None, 2], tf.float32, "x"),
                   tf.TensorSpec([None, 2], tf.float32, "w"))
    m = FunctionModel(cf, passes=False)
    listed = {f for g in m.ispec.row_broadcast for f in g["features"]}
    assert "w" not in listed, (why, m.ispec.row_broadcast)
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    w1 = np.array([[0.5, -2.0]], np.float32)
    for name, model in m.variants.items():
        got = None
        try:
            got = model.run({"x": x, "w": w1})
        except recom_tvm.InvalidArgumentError:
            pass
        if got is not None:  # (where the compiled model never ties w's rows to x's, it answers as TF does)
            exp = m.tf(x, w1)
            for k in got:
                assert_matches_tf(got[k], exp[k], f"{why} [{name}] {k}")
    w3 = np.arange(6, dtype=np.float32).reshape(3, 2) - 2
    if why != "reshaped across rows":
        m.check({"x": x, "w": w3}, (x, w3), why)
    if "x" in listed:  # x's own row, broadcast against w's three, is repeated: TF's answer
        m.check({"x": x[:1], "w": w3}, (x[:1], w3), f"{why}: one row of x")


def test_an_explicit_tile_and_a_sink_after_row_wise_ops():
    """tf.tile of the user row to the batch (the explicit way; the build crashed in TVM's CanonicalizeBindings on
    the cast of its x * w rows to x's: now a host check and a view) is not listed; a one-row feed through an embedding lookup, a reshape that keeps dim 0 (Keras' Flatten) and a softmax over its last axis
    before meeting the batch is."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(2).normal(size=(10, 3)).astype(np.float32))

    def tiled(x, w):
        return {"y": x * tf.tile(w, [tf.shape(x)[0], 1])}

    def flat(x, ids):
        e = tf.gather(table, ids)  # [n, 2, 3]
        e = tf.reshape(e, [tf.shape(e)[0], -1])  # [n, 6] (Flatten)
        return {"y": tf.nn.softmax(e, axis=-1) * x}

    x = np.arange(18, dtype=np.float32).reshape(3, 6)
    m = FunctionModel(_function(tiled, tf.TensorSpec([None, 6], tf.float32, "x"),
                                tf.TensorSpec([None, 6], tf.float32, "w")), passes=False)
    assert m.ispec.row_broadcast == []
    w1 = np.linspace(-1, 1, 6, dtype=np.float32)[None]
    m.check({"x": x, "w": w1}, (x, w1), "tiled")
    w2 = np.concatenate([w1, w1])  # tiled to 6 rows against x's 3: TF's error (before: the build crashed)
    m.check({"x": x, "w": w2}, (x, w2), "two rows tiled")
    m = FunctionModel(_function(flat, tf.TensorSpec([None, 6], tf.float32, "x"),
                                tf.TensorSpec([None, 2], tf.int32, "ids")), passes=False)
    assert sorted(m.ispec.row_broadcast, key=lambda g: g["features"]) == [
        {"features": ["ids"], "anchors": [["x", "value", 0, "shape"]]},
        {"features": ["x"], "anchors": [["ids", "value", 0, "shape"]]}]  # (either side may be the one row)
    for ids in (np.array([[1, 7]], np.int32), np.array([[1, 7], [0, 0], [9, 2]], np.int32)):
        m.check({"x": x, "ids": ids}, (x, ids), f"{len(ids)} id row(s)")
    ids = np.array([[1, 7], [0, 0], [9, 2]], np.int32)
    m.check({"x": x[:1], "ids": ids}, (x[:1], ids), "one row of x")


def test_requests_of_different_users_merge():
    """Triton-style batches of two-tower requests, each with its own user (one row of a hashed id and dense
    features, concatenated) and its own items: the executor repeats each user's row to its items, the requests
    merge into one run (every user feature counted as aligned, whatever order the spec lists the groups in) and
    each gets its own answer."""
    import tensorflow as tf

    from recom_tvm.serving.batching import Merger
    from recom_tvm.serving.executor import Executor

    rng = np.random.default_rng(9)
    ut = tf.constant(rng.normal(size=(20, 3)).astype(np.float32))
    it = tf.constant(rng.normal(size=(15, 4)).astype(np.float32))
    w = tf.constant(rng.normal(size=(5, 4)).astype(np.float32))

    def score(uid, ud, iid):
        u = tf.nn.relu(tf.matmul(tf.concat([tf.gather(ut, uid), ud], 1), w))
        return {"s": tf.reduce_sum(u * tf.gather(it, iid), 1)}

    cf = _function(score, tf.TensorSpec([None], tf.int64, "uid"), tf.TensorSpec([None, 2], tf.float32, "ud"),
                   tf.TensorSpec([None], tf.int64, "iid"))
    mod, params, spec = recom_tvm.from_tensorflow(cf)
    assert not any(f["shared"] for f in Merger(spec).features), Merger(spec).features
    model = recom_tvm.build(recom_tvm.optimize(mod), "llvm", params)
    reqs = [{"uid": np.array([u], np.int64), "ud": rng.normal(size=(1, 2)).astype(np.float32),
             "iid": rng.integers(0, 15, b).astype(np.int64)} for u, b in ((3, 4), (7, 1), (11, 6))]
    ex = Executor(model)
    for r, got in zip(reqs, ex.run(reqs)):
        assert not isinstance(got, Exception), got
        assert_matches_tf(got["s"], cf(*(tf.constant(r[k]) for k in ("uid", "ud", "iid")))["s"].numpy(), "merged")
    assert ex.counters.merged_runs == 1 and ex.counters.merged_requests == 3, ex.counters
