"""Round 8 of graphs written the ways users write them: one-row context features (a user's features fed once against
B candidates: frontend/row_broadcast.py, runtime/row_broadcast.py) in two-tower / attention graphs written with plain
TF, tf_keras and Keras 3, TF1 placeholder_with_default, Triton-style merged requests; and Estimator-era feature
columns served through tf.io.parse_example. Each probe feeds user rows 1 vs items B (B = 3, 1, 0), user rows = B and
user rows 2 vs items 3: every variant matches TF or raises TF's error class, never a different answer.

What was wrong and is now fixed:
- tf.broadcast_to of a feed's rows to the batch (tf.broadcast_to(user, tf.shape(items))) gave silent wrong answers:
  Relax's broadcast_to took the symbolic dim for the target's and read a one-row input past its end; 2 user rows
  against 3 items answered where TF raises. A dim that is 1 or the target's only at run time is now a gather of
  row 0 or row i, any other size TF's error (converters/array.py);
- tf.ensure_shape was not checked: ensure_shape(user, [1, d]) fed 3 rows answered where TF raises. It is checked
  before launch and pins the compiled value's static shape (a user pinned to one row broadcasts as in TF)
  (converters/math.py); the row analysis no longer takes an EnsureShape pinning dim 0 for row-wise;
- a one-row feed broadcast against a size fed as data (tf.zeros([n, d]) + user, n an int scalar or a shape
  vector) was repeated to the feed's shape, not its value: TF's answer refused (runtime/row_broadcast.py);
- user features sliced or split along their columns (user_dense[:, :2], x[..., 1:], tf.slice(x, [0, 0], [-1, 1]),
  tf.split(x, [1, 2], axis=1)) and tf_keras' Dot layer (a BatchMatMulV2 of [n, 1, d] @ [B, d, 1]) were not taken
  for row-wise, so a one-row user was refused there (frontend/row_broadcast.py; slices that drop, reverse or pick
  rows stay unlisted).

Refused by design (an error, as before): a user tower of several one-row features combined by an elementwise op
(Add) before meeting the items, tf_keras' LayerNormalization (reshaped to [1, n * ..., d, 1] for a fused batch
norm), a user embedding from a SparseTensor (tf.nn.embedding_lookup_sparse), a user matrix against the items'
(tf.matmul(q, k, transpose_b=True)); RaggedFeature and parse_single_example in the serving graph name the op and
node."""

from __future__ import annotations

import re

import numpy as np
import pytest

import recom_tvm
from recom_tvm import config

from conftest import FunctionModel, assert_matches_tf, outcome
from test_user_graphs_r6 import SavedModelCheck

D = 4
PAIRS = ((1, 3), (3, 3), (1, 1), (1, 0), (0, 0), (2, 3), (3, 1))  # (user rows, item rows)


@pytest.fixture()
def no_fallback(monkeypatch):
    monkeypatch.setattr(config, "host_fallback", False)


def _function(fn, *specs):
    import tensorflow as tf

    return tf.function(fn, input_signature=list(specs)).get_concrete_function()


def _specs():
    import tensorflow as tf

    return (tf.TensorSpec([None], tf.int64, "uid"), tf.TensorSpec([None, 3], tf.float32, "ud"),
            tf.TensorSpec([None], tf.int64, "iid"))


def _user(n):
    return np.full(n, 7, np.int64), np.tile(np.array([[0.5, -1.0, 2.0]], np.float32), (n, 1))


def _items(b, seed=0):
    return (np.random.default_rng(seed + b).integers(0, 30, b).astype(np.int64),)


def _tables():
    import tensorflow as tf

    rng = np.random.default_rng(8)
    return (tf.constant(rng.normal(size=(20, D)).astype(np.float32)),
            tf.constant(rng.normal(size=(30, D)).astype(np.float32)))


def _sweep(m, what, pairs=PAIRS, exact=True):
    """Every (user rows, item rows) pair: TF's answer or error (exact); else TF's answer or an
    InvalidArgumentError where TF answers (a feed whose rows matter is not repeated) -> the pairs refused."""
    refused = []
    for n, b in pairs:
        args = (*_user(n), *_items(b))
        feeds = dict(zip(m.names, args))
        if exact:
            m.check(feeds, args, f"{what}: user {n} items {b}")
            continue
        exp = outcome(lambda: m.tf(*args))
        for name, model in m.variants.items():
            got = outcome(lambda: model.run(feeds))
            if isinstance(got, recom_tvm.InvalidArgumentError) and not isinstance(exp, BaseException):
                refused.append((n, b))
                continue
            if isinstance(got, BaseException) or isinstance(exp, BaseException):
                assert_matches_tf(got, exp, f"{what} [{name}]: user {n} items {b}")
                continue
            for k in got:
                assert_matches_tf(got[k], exp[k], f"{what} [{name}] {k}: user {n} items {b}")
    return refused


def _listed(m) -> set:
    """The features listed as repeated one-row feeds (of a FunctionModel or a CompiledModel)."""
    spec = m.ispec if hasattr(m, "ispec") else m.spec
    return {f for g in spec.row_broadcast for f in g["features"]}


def test_broadcast_to_a_one_row_user(no_fallback):
    """tf.broadcast_to(user, tf.shape(items)): a silent wrong answer for one user row against three items (row i of
    a one-row input read past its end), answers for 2 rows against 3 and 3 against 1 (TF's errors)."""
    import tensorflow as tf

    ut, it = _tables()

    def f(uid, ud, iid):
        v = tf.gather(it, iid)
        u = tf.broadcast_to(tf.gather(ut, uid), tf.shape(v))
        w = tf.broadcast_to(ud[:, None, :], tf.stack([tf.shape(ud)[0], 2, 3]))  # (a static 1 broadcast)
        return {"s": tf.reduce_sum(u * v, 1), "w": tf.reduce_sum(w, [1, 2])}

    m = FunctionModel(_function(f, *_specs()), passes=False)
    _sweep(m, "broadcast_to")


def test_ensure_shape_is_checked_and_pins_the_rows(no_fallback):
    """tf.ensure_shape(user, [1, d]) passed unchecked (3 user rows answered); pinned, the one row broadcasts."""
    import tensorflow as tf

    ut, it = _tables()

    def f(uid, ud, iid):
        u = tf.ensure_shape(tf.gather(ut, uid), [1, D])
        x = tf.ensure_shape(ud, [None, 3])
        return {"s": tf.reduce_sum(u * tf.gather(it, iid), 1) + tf.reduce_sum(x)}

    m = FunctionModel(_function(f, *_specs()), passes=False)
    assert "uid" not in _listed(m), m.ispec.row_broadcast
    _sweep(m, "ensure_shape")


def test_sizes_fed_as_data_anchor_a_one_row_feed(no_fallback):
    """tf.zeros(shape) + user (a shape vector fed), tf.zeros([n, 4]) + user (an int scalar fed): the user's row is
    repeated to the fed size, read from the feed's values (it was read from its shape: TF's answer refused)."""
    import tensorflow as tf

    m = FunctionModel(_function(lambda shape, user: {"y": tf.zeros(shape) + user},
                                tf.TensorSpec([2], tf.int32, "shape"), tf.TensorSpec([None, 4], tf.float32, "user")),
                      passes=False)
    assert m.ispec.row_broadcast == [{"features": ["user"], "anchors": [["shape", "value", 0, "value"]]}]
    for rows in (3, 2, 1, 0):
        for n in {1, rows}:
            args = (np.array([rows, 4], np.int32), np.arange(4 * n, dtype=np.float32).reshape(n, 4))
            m.check(dict(zip(m.names, args)), args, f"shape [{rows}, 4], user {n}")
    args = (np.array([3, 4], np.int32), np.ones((2, 4), np.float32))
    m.check(dict(zip(m.names, args)), args, "2 user rows against 3 (TF's error)")
    m = FunctionModel(_function(lambda n, user: {"y": tf.zeros(tf.stack([n, 4])) + user},
                                tf.TensorSpec([], tf.int32, "n"), tf.TensorSpec([None, 4], tf.float32, "user")),
                      passes=False)
    for rows in (3, 1, 0):
        for n in {1, rows}:
            args = (np.int32(rows), np.ones((n, 4), np.float32))
            m.check(dict(zip(m.names, args)), args, f"n {rows}, user {n}")


def test_user_features_sliced_split_and_dotted(no_fallback):
    """The user's dense features sliced by column (x[:, :2], x[..., 1:3], tf.slice, tf.split along axis 1) and the
    user vector dotted with the item's as tf_keras' Dot layer writes it (BatchMatMulV2 of [n, 1, d] @ [B, d, 1]):
    row-wise, so one user row is repeated (it was refused)."""
    import tensorflow as tf

    ut, it = _tables()

    def f(uid, ud, iid):
        v = tf.gather(it, iid)
        a, b = tf.split(ud, [1, 2], axis=1)
        u = tf.concat([ud[:, :2], ud[..., 1:3]], 1) * tf.slice(ud, [0, 0], [-1, 1]) + \
            tf.reduce_sum(b, 1, keepdims=True) + a
        x = tf.nn.l2_normalize(tf.gather(ut, uid), axis=1)
        dot = tf.squeeze(tf.matmul(x[:, None, :], v[:, :, None]), [1, 2])
        return {"s": tf.reduce_sum(u * v, 1), "dot": dot}

    m = FunctionModel(_function(f, *_specs()), passes=False)
    assert {"uid", "ud"} <= _listed(m), m.ispec.row_broadcast
    _sweep(m, "sliced")


def test_rows_picked_reversed_or_used_as_matrix_rows_are_not_repeated(no_fallback):
    """Where the user's rows matter (the first row, reversed rows, rows as a matrix's rows in a batch matmul or
    a matmul against the items, a mean over the user's rows, a concat with the items), the feed is not listed:
    TF's answer or an error, never a different answer."""
    import tensorflow as tf

    ut, it = _tables()

    def picked(uid, ud, iid):
        v = tf.gather(it, iid)
        return {"s": tf.reduce_sum(ud[::-1] * v[:, :3], 1) + tf.reduce_sum(tf.gather(ut, uid)[0] * v, 1),
                "t": tf.reduce_sum(ud[:1] * v[:, :3], 1)}

    def matrix_rows(uid, ud, iid):
        v, x = tf.gather(it, iid), tf.gather(ut, uid)
        m2 = tf.matmul(x[None], tf.transpose(v)[None])  # [1, n, D] @ [1, D, B]
        att = tf.nn.softmax(tf.matmul(x, v, transpose_b=True), axis=-1)  # [n, B]
        return {"m2": tf.reduce_sum(m2, [0, 1]), "att": att, "m1": tf.reshape(tf.matmul(x[:, None], v[:, :, None]), [-1])}

    def used_twice(uid, ud, iid):
        v = tf.gather(it, iid)
        ctx = tf.reduce_mean(ud, axis=0, keepdims=True)  # over the user's rows
        return {"s": tf.reduce_sum(tf.gather(ut, uid) * v, 1) + tf.reduce_sum(ctx),
                "t": tf.reduce_sum(v * tf.matmul(ud, tf.ones([3, D])), 1)}

    def concat_mlp(uid, ud, iid):
        x = tf.concat([ud, tf.gather(it, iid)], 1)  # 1 user row against B items: TF's error
        return {"s": tf.reduce_sum(tf.nn.relu(tf.matmul(x, tf.ones([3 + D, 2]))), 1)}

    for fn, unlisted in ((picked, {"ud"}), (matrix_rows, {"uid"}), (used_twice, {"ud"}), (concat_mlp, {"ud"})):
        m = FunctionModel(_function(fn, *_specs()), passes=False)
        assert not unlisted & _listed(m), (fn.__name__, m.ispec.row_broadcast)
        _sweep(m, fn.__name__, pairs=((1, 3), (3, 3), (1, 1), (2, 3), (1, 0)), exact=False)


def test_attention_of_a_user_query_over_the_items(no_fallback):
    """A user query [1, d] scoring the candidate keys [B, d]: softmax over the items (axis 0 of the [B] scores),
    the pooled item vector scoring each item; the user's row is repeated (each row of q * k reads its own)."""
    import tensorflow as tf

    ut, it = _tables()
    w = tf.constant(np.random.default_rng(3).normal(size=(D, D)).astype(np.float32))

    def f(uid, ud, iid):
        q = tf.matmul(tf.gather(ut, uid), w)
        k = tf.gather(it, iid)
        a = tf.nn.softmax(tf.reduce_sum(q * k, 1) / 2.0, axis=0)
        pooled = tf.reduce_sum(a[:, None] * k, 0, keepdims=True)
        return {"a": a, "score": tf.reduce_sum(k * pooled, 1)}

    m = FunctionModel(_function(f, *_specs()), passes=False)
    assert "uid" in _listed(m), m.ispec.row_broadcast
    _sweep(m, "attention", pairs=PAIRS[:-1])
    # (the items' rows matter: a softmax over them; one item against 3 user rows is refused, not repeated)
    assert _sweep(m, "attention", pairs=((3, 1),), exact=False) == [(3, 1)] * len(m.variants)


def test_refused_context_forms_are_errors_not_answers(no_fallback, tmp_path):
    """Forms the analysis leaves as fed: several one-row context features added before meeting the items (a TF1
    placeholder_with_default of one row plus an hour embedding), a user embedding of a SparseTensor. A one-row
    user against B items is an InvalidArgumentError there; equal rows, defaults against one item, per-row hours
    match TF."""
    import tensorflow as tf

    from conftest import FrozenTF1Model

    v1 = tf.compat.v1
    rng = np.random.default_rng(3)
    tbl = rng.normal(size=(10, D)).astype(np.float32)
    htbl = rng.normal(size=(24, D)).astype(np.float32)

    def build():
        ctx = v1.placeholder_with_default(tf.constant([[0.1, 0.2, 0.3]]), [None, 3], name="ctx")
        hour = v1.placeholder_with_default(tf.constant([7], tf.int64), [None], name="hour")
        iid = v1.placeholder(tf.int64, [None], name="iid")
        w = tf.constant(rng.normal(size=(3, D)).astype(np.float32))
        u = tf.nn.tanh(tf.matmul(ctx, w)) + tf.gather(htbl, tf.math.floormod(hour, 24))
        return {"score": tf.reduce_sum(u * tf.gather(tbl, iid), 1, name="score")}

    m = FrozenTF1Model(build, {"ctx": "ctx:0", "hour": "hour:0", "iid": "iid:0"}, tmp_path)
    for b in (3, 1, 0):
        ids = rng.integers(0, 10, b).astype(np.int64)
        for req in ({"iid": ids, "hour": np.arange(b, dtype=np.int64)},
                    {"iid": ids, "ctx": np.ones((b, 3), np.float32), "hour": np.arange(b, dtype=np.int64)}):
            m.check(req, f"B={b}")
    m.check({"iid": np.arange(1, dtype=np.int64)}, "defaults, one item")
    for name, model in m.variants.items():  # defaults (one row each) against 3 items: TF answers, we refuse
        with pytest.raises(recom_tvm.InvalidArgumentError):
            model.run({"iid": np.arange(3, dtype=np.int64)})

    ut, it = (tf.constant(t) for t in (tbl, htbl[:10]))

    def sparse_user(uidx, uval, ushape, iid):
        u = tf.nn.embedding_lookup_sparse(ut, tf.SparseTensor(uidx, uval, ushape), None, combiner="mean")
        return {"s": tf.reduce_sum(u * tf.gather(it, iid), 1)}

    fm = FunctionModel(_function(sparse_user, tf.TensorSpec([None, 2], tf.int64, "uidx"),
                                 tf.TensorSpec([None], tf.int64, "uval"), tf.TensorSpec([2], tf.int64, "ushape"),
                                 tf.TensorSpec([None], tf.int64, "iid")), passes=False)
    for n, b in ((1, 3), (3, 3), (1, 1), (2, 3)):
        idx = np.array([[r, c] for r in range(n) for c in range(2)], np.int64).reshape(-1, 2)
        args = (idx, rng.integers(0, 10, len(idx)).astype(np.int64), np.array([n, 2], np.int64),
                rng.integers(0, 10, b).astype(np.int64))
        exp = outcome(lambda: fm.tf(*args))
        for model in fm.variants.values():
            got = outcome(lambda: model.run(dict(zip(fm.names, args))))
            if isinstance(got, recom_tvm.InvalidArgumentError) and not isinstance(exp, BaseException):
                assert (n, b) == (1, 3), got
                continue
            assert_matches_tf(got if isinstance(got, BaseException) else got["s"],
                              exp if isinstance(exp, BaseException) else exp["s"], f"sparse user {n} vs {b}")


@pytest.fixture(scope="module")
def keras3_two_tower():
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(1)
    uid = keras.Input((1,), dtype="string", name="user_id")
    iid = keras.Input((1,), dtype="int64", name="item_id")
    u = keras.layers.Flatten()(keras.layers.Embedding(5, 8)(keras.layers.StringLookup(vocabulary=["a", "b", "c"])(uid)))
    u = keras.layers.LayerNormalization()(keras.layers.Dense(6, activation="relu")(u))
    u = keras.layers.Dropout(0.5)(u)
    i = keras.layers.Flatten()(keras.layers.Embedding(9, 6)(keras.layers.IntegerLookup(vocabulary=[1, 2, 3, 4])(iid)))
    i = keras.layers.Dense(6)(i)
    outs = {"score": keras.layers.Dot(axes=1, normalize=True)([u, i]),
            "s2": keras.ops.sum(keras.layers.Multiply()([u, i]), axis=1), "user_emb": u}
    model = keras.Model({"user_id": uid, "item_id": iid}, outs)
    specs = (tf.TensorSpec([None, 1], tf.string, "user_id"), tf.TensorSpec([None, 1], tf.int64, "item_id"))

    def serve(keep_user):
        def f(user_id, item_id):
            res = model({"user_id": user_id, "item_id": item_id}, training=False)
            return {k: v for k, v in res.items() if keep_user or k != "user_emb"}
        return FunctionModel(_function(f, *specs), passes=False)

    return serve(False), serve(True)


@pytest.mark.parametrize("with_user_output", [False, True], ids=["scores", "scores_and_user_embedding"])
def test_keras3_two_tower(no_fallback, keras3_two_tower, with_user_output):
    """Keras 3 functional two-tower (StringLookup / IntegerLookup + Embedding + Dense + LayerNormalization +
    Dropout, Dot(axes=1, normalize=True) and Multiply + sum): one user row repeated; where the model also returns
    the user embedding (its rows would show) the user is not repeated and one row against B is refused."""
    m = keras3_two_tower[with_user_output]
    rng = np.random.default_rng(4)
    assert ("user_id" in _listed(m)) is not with_user_output, m.ispec.row_broadcast
    refused = []
    for n, b in ((1, 3), (3, 3), (1, 1), (1, 0), (2, 3), (3, 1)):
        users = np.array([[b"b"]] * n, object).reshape(n, 1)
        args = (users, rng.integers(0, 6, (b, 1)).astype(np.int64))
        if with_user_output and n == 1 and b not in (1,):
            for model in m.variants.values():
                assert isinstance(outcome(lambda: model.run(dict(zip(m.names, args)))), recom_tvm.InvalidArgumentError)
            refused.append((n, b))
            continue
        m.check(dict(zip(m.names, args)), args, f"user {n} items {b}")
    assert refused == ([(1, 3), (1, 0)] if with_user_output else [])


def _row_sum(t):
    import tensorflow as tf

    return tf.reduce_sum(t, axis=1, keepdims=True)


def test_tf_keras_two_tower_saved_model(no_fallback, tmp_path):
    """A tf_keras (Keras 2) functional two-tower saved as a SavedModel: StringLookup + Embedding + Flatten,
    Normalization, Dense, Dropout on the user side; IntegerLookup + Hashing embeddings added, BatchNormalization
    (inference) on the item side; tf_keras' Dot(normalize=True) is a BatchMatMulV2 (it was refused for one user
    row) beside Multiply + sum."""
    import tf_keras as K

    K.utils.set_random_seed(3)
    uid = K.Input((1,), dtype="string", name="user_id")
    age = K.Input((1,), dtype="float32", name="age")
    iid = K.Input((1,), dtype="int64", name="item_id")
    cat = K.Input((1,), dtype="string", name="cat")
    u = K.layers.Flatten()(K.layers.Embedding(4, 8)(K.layers.StringLookup(vocabulary=["u1", "u2", "u3"])(uid)))
    u = K.layers.Concatenate()([u, K.layers.Normalization(mean=30., variance=100.)(age)])
    u = K.layers.Dense(6)(K.layers.Dropout(0.3)(K.layers.Dense(8, activation="relu")(u)))
    i = K.layers.Flatten()(K.layers.Embedding(6, 6)(K.layers.IntegerLookup(vocabulary=[1, 2, 3, 5, 8])(iid)))
    i = K.layers.Add()([i, K.layers.Flatten()(K.layers.Embedding(7, 6)(K.layers.Hashing(7)(cat)))])
    i = K.layers.BatchNormalization()(i)
    s = K.layers.Dot(axes=1, normalize=True)([u, i])
    s2 = K.layers.Lambda(_row_sum)(K.layers.Multiply()([u, i]))
    path = str(tmp_path / "tk")
    K.models.save_model(K.Model([uid, age, iid, cat], {"score": s, "s2": s2}), path, save_format="tf")
    c = SavedModelCheck(path)
    assert {"age", "user_id"} <= _listed(c.variants["imported"]), c.variants["imported"].spec.row_broadcast
    rng = np.random.default_rng(2)
    for n, b in ((1, 3), (3, 3), (1, 1), (1, 0), (0, 0), (2, 3)):
        c.check({"user_id": np.array([b"u3"] * n, object).reshape(n, 1), "age": np.full((n, 1), 31.0, np.float32),
                 "item_id": rng.integers(0, 12, (b, 1)).astype(np.int64),
                 "cat": np.array([b"c%d" % (k % 3) for k in range(b)], object).reshape(b, 1)}, f"user {n} items {b}")


def test_merged_requests_of_one_user_each_get_their_answers(no_fallback):
    """Triton-style: requests each with one user row (a concatenated user tower) and 3, 1, 0, 5, 2 items, one
    with 2 users against 3 items (TF's error), 2 users against 1 item (TF broadcasts the item: refused here), an
    out-of-range item id: every answer is TF's for that request alone, errors TF's class."""
    import tensorflow as tf

    from recom_tvm.serving.executor import Executor

    ut, it = _tables()
    rng = np.random.default_rng(9)

    def f(uid, ud, iid):
        u = tf.nn.relu(tf.matmul(tf.concat([tf.gather(ut, uid), ud], 1), tf.ones([D + 3, D])))
        return {"s": tf.reduce_sum(u * tf.gather(it, iid), 1)}

    m = FunctionModel(_function(f, *_specs()), passes=False)
    reqs = [{"uid": np.array([k], np.int64), "ud": rng.normal(size=(1, 3)).astype(np.float32),
             "iid": rng.integers(0, 30, b).astype(np.int64)} for k, b in enumerate((3, 1, 0, 5, 2))]
    reqs += [{"uid": np.array([1, 2], np.int64), "ud": np.ones((2, 3), np.float32), "iid": np.arange(3)},
             {"uid": np.array([4], np.int64), "ud": np.ones((1, 3), np.float32), "iid": np.array([40])}]
    for model in m.variants.values():
        for r, got in zip(reqs, Executor(model).run(reqs)):
            exp = outcome(lambda: m.tf(r["uid"], r["ud"], r["iid"]))
            assert_matches_tf(got if isinstance(got, BaseException) else got["s"],
                              exp if isinstance(exp, BaseException) else exp["s"], str({k: v.shape for k, v in r.items()}))


def _example(d: dict) -> bytes:
    import tensorflow as tf

    f = {}
    for k, v in d.items():
        if isinstance(v[0], bytes):
            f[k] = tf.train.Feature(bytes_list=tf.train.BytesList(value=v))
        elif isinstance(v[0], float):
            f[k] = tf.train.Feature(float_list=tf.train.FloatList(value=v))
        else:
            f[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=v))
    return tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString()


def test_estimator_feature_columns_through_parse_example(no_fallback, tmp_path):
    """An Estimator-era TF1 SavedModel: parse_example of serialized tf.Examples into shared_embedding_columns
    (sqrtn), numeric_column of shape (2, 3) with a normalizer_fn, a bucketized multi-dim numeric with defaults,
    an indicator of its cross with a vocabulary list, an indicator of a hashed column, a weighted categorical
    column's embedding (sqrtn, max_norm, trainable=False). B = 3 / 1 / 0 and bad examples (an id out of range or
    negative, a wrong length, a float for an int feature, a missing feature without default, weights of another
    count) get TF's errors."""
    import tensorflow as tf

    v1 = tf.compat.v1
    fc = v1.feature_column
    g = tf.Graph()
    with g.as_default():
        ser = v1.placeholder(tf.string, [None], name="input_example_tensor")
        a, b = fc.categorical_column_with_identity("a", 10, default_value=0), fc.categorical_column_with_identity("b", 10)
        shared = fc.shared_embedding_columns([a, b], 4, combiner="sqrtn", initializer=v1.random_normal_initializer(seed=2))
        n = fc.numeric_column("n", shape=(2, 3), normalizer_fn=lambda x: (x - 1.0) / 2.0)
        pb = fc.bucketized_column(fc.numeric_column("p", shape=(2,), default_value=(0.5, -0.5)), [-1.0, 0.0, 1.0])
        cross = fc.crossed_column([pb, fc.categorical_column_with_vocabulary_list("c", ["x", "y", "z"],
                                                                                  num_oov_buckets=1)], 13)
        w = fc.weighted_categorical_column(fc.categorical_column_with_identity("wid", 8), "wv")
        ew = fc.embedding_column(w, 3, combiner="sqrtn", max_norm=0.5, trainable=False,
                                 initializer=v1.random_normal_initializer(seed=3))
        cols = shared + [n, pb, fc.indicator_column(cross),
                         fc.indicator_column(fc.categorical_column_with_hash_bucket("h", 5)), ew]
        net = fc.input_layer(v1.io.parse_example(ser, fc.make_parse_example_spec(cols)), cols)
        head = tf.constant(np.random.default_rng(4).normal(size=(int(net.shape[1]), 1)).astype(np.float32))
        outs = {"score": tf.reduce_sum(tf.matmul(net, head), 1), "emb": tf.identity(net)}
        sess = v1.Session(graph=g)
        sess.run([v1.global_variables_initializer(), v1.tables_initializer()])
        path = str(tmp_path / "est")
        v1.saved_model.simple_save(sess, path, inputs={"examples": ser}, outputs=outs)
    c = SavedModelCheck(path)
    good = [{"a": [4, 5], "b": [3, 9], "n": [float(i) for i in range(6)], "p": [0.3, -2.0], "c": [b"y"],
             "wid": [1, 7], "wv": [0.5, 2.0], "h": [b"hh"]},
            {"a": [30], "b": [0], "n": [1.0] * 6, "c": [b"zz", b"x"], "wid": [2], "wv": [1.5]},
            {"n": [0.0] * 6}]
    bad = [{**good[0], "b": [12]}, {**good[0], "b": [-1]}, {**good[0], "n": [1.0] * 5}, {**good[0], "b": [1.5]},
           {k: v for k, v in good[0].items() if k != "n"}, {**good[0], "wv": [1.0]}]
    for what, rows in [("B=3", good), ("B=1", good[:1]), ("B=0", [])] + [(f"bad {i}", [r]) for i, r in enumerate(bad)]:
        c.check({"examples": np.array([_example(r) for r in rows], object)}, what)


def test_parse_example_forms_in_the_serving_graph(no_fallback, tmp_path):
    """FixedLenFeature with a default and VarLenFeature into safe_embedding_lookup_sparse, SparseFeature to dense
    (an index out of its size is TF's error) match TF; RaggedFeature and parse_single_example are refused naming
    the op and node."""
    import tensorflow as tf

    from conftest import FrozenTF1Model

    v1 = tf.compat.v1
    tbl = np.random.default_rng(5).normal(size=(10, 2)).astype(np.float32)

    def fixed_varlen():
        ser = v1.placeholder(tf.string, [None], name="input_example_tensor")
        f = tf.io.parse_example(ser, {"fx": tf.io.FixedLenFeature([2], tf.float32, default_value=[1.0, 2.0]),
                                      "vl": tf.io.VarLenFeature(tf.int64)})
        e = tf.nn.safe_embedding_lookup_sparse(tf.constant(tbl), f["vl"], None, combiner="mean")
        return {"score": tf.reduce_sum(e * f["fx"], 1, name="score")}

    def sparse_feature():
        ser = v1.placeholder(tf.string, [None], name="input_example_tensor")
        f = tf.io.parse_example(ser, {"sp": tf.io.SparseFeature("idx", "val", tf.float32, 6)})
        return {"score": tf.reduce_sum(tf.sparse.to_dense(f["sp"]), 1, name="score")}

    feeds = {"examples": "input_example_tensor:0"}
    m = FrozenTF1Model(fixed_varlen, feeds, tmp_path)
    for what, rows in (("B=3", [{"fx": [3.0, 4.0], "vl": [1, 2, 3]}, {"vl": [9]}, {"fx": [0.5, 0.5]}]),
                       ("B=0", []), ("id out of range", [{"vl": [11]}]), ("fx short", [{"fx": [3.0]}])):
        m.check({"examples": np.array([_example(r) for r in rows] or [], object)}, what)
    m = FrozenTF1Model(sparse_feature, feeds, tmp_path)
    for what, rows in (("B=2", [{"idx": [1, 4], "val": [0.5, 2.0]}, {"idx": [0], "val": [1.0]}]),
                       ("index past the size", [{"idx": [7], "val": [1.0]}])):
        m.check({"examples": np.array([_example(r) for r in rows], object)}, what)

    def ragged():
        ser = v1.placeholder(tf.string, [None], name="input_example_tensor")
        rg = tf.io.parse_example(ser, {"rg": tf.io.RaggedFeature(tf.int64)})["rg"]
        return {"score": tf.reduce_sum(tf.cast(rg.to_tensor(0, shape=[None, 3]), tf.float32), 1, name="score")}

    def single():
        ser = v1.placeholder(tf.string, [None], name="input_example_tensor")
        x = tf.io.parse_single_example(ser[0], {"x": tf.io.FixedLenFeature([2], tf.float32)})["x"]
        return {"score": tf.reduce_sum(x[None], 1, name="score")}

    for build, why in ((ragged, "RaggedFeature"), (single, "string feed of shape [batch]")):
        with pytest.raises(recom_tvm.ConversionError, match=f"ParseExampleV2 node .*{re.escape(why)}"):
            FrozenTF1Model(build, feeds, tmp_path)
