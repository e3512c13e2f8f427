"""Round 5 of graphs written the ways users write them (the survey of 2026-12-09: Keras preprocessing layers in a
served model, two-tower heads, tf.nn / tf.sparse / tf.ragged ops, integer and float edge cases): what gave a silent
wrong answer, crashed or failed to import now matches TF (or fails with an error naming the node and op)."""

from __future__ import annotations

import numpy as np
import pytest

import recom_tvm
from recom_tvm import config

from conftest import FunctionModel


@pytest.fixture()
def no_fallback(monkeypatch):
    monkeypatch.setattr(config, "host_fallback", False)


def _sparse(rows, dtype=np.int64, width=None):
    """(indices, values, dense_shape) of a list of rows (lists of values), entries at columns 0, 1, ..."""
    idx = [[r, c] for r, row in enumerate(rows) for c in range(len(row))]
    width = max([len(r) for r in rows] + [0]) if width is None else width
    return (np.array(idx, np.int64).reshape(-1, 2), np.array([v for row in rows for v in row], dtype),
            np.array([len(rows), width], np.int64))


INF, NAN, LOW = np.inf, np.nan, float(np.finfo(np.float32).min)


def test_argmax_argmin_as_tf_cpu(no_fallback):
    """tf.argmax / tf.argmin (a predicted class, the best candidate) as TF-CPU's Eigen reducer gives them: NaN is
    skipped and a value must beat the dtype's lowest (highest) to be taken, so a row of -inf gives 0. TVM's
    argmax gave -1 there and let NaN win ([-inf, NaN, -inf] gave 1, [inf, inf, NaN, 1] gave 2; TF: 0, 0): a
    silent wrong index, which a gather downstream read out of bounds. Ints: a row of INT_MIN gives 0."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None, 3], tf.int32)])
    def serve(x, i):
        return {"max": tf.argmax(x, 1), "min": tf.argmin(x, 1), "max0": tf.argmax(x, 0),
                "min32": tf.argmin(x, 1, output_type=tf.int32), "imax": tf.argmax(i, 1), "imin": tf.argmin(i, 1)}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    x = np.array([[-INF] * 4, [-INF, NAN, -INF, -INF], [NAN, -INF, 1, 1], [NAN, 1, 2, 3], [1, NAN, 1, 5],
                  [NAN] * 4, [LOW, -INF, LOW, 0], [-INF, LOW, -INF, -INF], [3, NAN, 2, 2], [INF, INF, NAN, 1],
                  [-0.0, 0.0, -1, -2]], np.float32)
    lo, hi = np.iinfo(np.int32).min, np.iinfo(np.int32).max
    i = np.array([[lo, lo, lo], [hi, hi, 0], [0, hi, hi], [5, -1, 5], [lo, 0, lo], [1, 2, 3], [3, 2, 1],
                  [0, 0, 0], [7, 7, 8], [hi, lo, hi], [-4, -4, -5]], np.int32)
    model.check({"x": x, "i": i}, (x, i), "B=11")
    model.check({"x": x[:1], "i": i[:1]}, (x[:1], i[:1]), "B=1")


def test_nan_through_not_equal_sign_and_empty_max(no_fallback):
    """x != 0 is true at NaN in TF: tf.math.count_nonzero counted a NaN as 0 (TVM's llvm codegen lowers a float
    != to an ordered compare) and tf.sparse.from_dense dropped it; tf.sign(NaN) is NaN (TVM's gave 0);
    tf.reduce_max over an empty axis is -inf (the NaN check's max over no flags read as a NaN); tf.equal(mask,
    True) on a bool feed failed LLVM's verifier (a float compare of two i1)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None, 3], tf.bool)])
    def serve(x, m):
        sp = tf.sparse.from_dense(x)
        return {"cnz": tf.math.count_nonzero(x, 1), "ne": tf.math.not_equal(x, 1.0), "sgn": tf.sign(x),
                "sp_idx": sp.indices, "sp_vals": sp.values, "maxe": tf.reduce_max(x[:, :0], 1),
                "mine": tf.reduce_min(x[:, :0], 1), "max": tf.reduce_max(x, 1),
                "on": tf.cast(tf.equal(m, True), tf.int32), "off": tf.cast(tf.not_equal(m, True), tf.int32),
                "masked": tf.where(tf.equal(m, False), 0.0, x)}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    x = np.array([[NAN, 0, -0.0], [1, NAN, 2], [-INF, INF, 0], [1, 1, 1]], np.float32)
    m = np.array([[True, False, True], [False] * 3, [True] * 3, [False, True, False]])
    model.check({"x": x, "m": m}, (x, m), "B=4")
    model.check({"x": x[:0], "m": m[:0]}, (x[:0], m[:0]), "B=0")


def test_softplus_log_sigmoid_and_log1p(no_fallback):
    """tf.nn.softplus / tf.math.log_sigmoid (= -softplus(-x)) as TF's kernel: x above -t, exp(x) below t,
    log1p(exp(x)) between (t = log(eps) + 2). log(exp(x) + 1) overflowed to inf at x = 100 and gave -inf for
    log_sigmoid(-100) (TF: 100, -100); tf.math.log1p lost small x (log(1 + 1e-8) = 0; TF: 1e-8)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.float64)])
    def serve(x, y):
        return {"sp": tf.nn.softplus(x), "ls": tf.math.log_sigmoid(x), "l1p": tf.math.log1p(x),
                "sp64": tf.nn.softplus(y), "l1p64": tf.math.log1p(y),
                "bce": tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(x), x)}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    x = np.array([100, -100, 20, -20, 13.9, -13.9, 0, 1e-8, -1e-7, 3e-5, -1, NAN, INF, -INF], np.float32)
    y = np.array([800, -800, 40, -40, 36.0, 1e-17, -1e-12, 0.5, -1, NAN, INF, -INF, 2, 0], np.float64)
    got = model.check({"x": x, "y": y}, (x, y), "hostile")
    exp = model.tf(x, y)
    for name in ("l1p", "l1p64", "sp", "sp64"):  # (tiny values: relative error, which the atol hides)
        tiny = np.finfo(exp[name].dtype).tiny  # (TF-CPU flushes denormal results: softplus(-100) is 0 there)
        small = (np.abs(exp[name]) < 1e-4) & (np.abs(exp[name]) >= tiny)
        np.testing.assert_allclose(got["imported"][name][small], exp[name][small], rtol=1e-6, err_msg=name)


def test_where_with_a_scalar_branch_and_a_row_condition(no_fallback):
    """tf.where(cond [B, 1], 1.0, x [B, 3]) and tf.where(cond, x, row [1, 3]): the condition's batch and x's are
    separate feed symbols; pairing only the branches left Relax without the result's shape and the op unlowered
    (a crash at build: 'CodeGenVM cannot emit this Relax operator directly')."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None, 1], tf.bool),
                                  tf.TensorSpec([None], tf.int64)])
    def serve(x, c, a):
        return {"scalar": tf.where(c, 1.0, x), "row": tf.where(c, x, tf.constant([[1., 2., 3.]])),
                "both": tf.where(c, -1.0, 2.0), "nan0": tf.where(tf.math.is_nan(x), tf.zeros_like(x), x),
                "ints": tf.where(a[:, None] > 0, a[:, None] // 3, tf.math.floormod(a, 7)[:, None])}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    x = np.array([[1, NAN, 3], [-0.0, INF, -INF], [4, 5, 6]], np.float32)
    c = np.array([[True], [False], [True]])
    a = np.array([-15, 14, -2 ** 63], np.int64)
    model.check({"x": x, "c": c, "a": a}, (x, c, a), "B=3")
    model.check({"x": x[:1], "c": c[:1], "a": a[:1]}, (x[:1], c[:1], a[:1]), "B=1")
    model.check({"x": x, "c": c[:2], "a": a}, (x, c[:2], a), "batches differ")


@pytest.fixture(scope="module")
def padded_history():
    """A history padded (tf.pad, to a length computed from its own: Pad / PadV2 were unsupported) to T = 5 and
    cut there, embedded and summed; a float pad on both sides with constant_values."""
    import tensorflow as tf

    rng = np.random.default_rng(51)
    emb = tf.constant(rng.normal(size=(10, 2)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64)])
    def serve(hist):
        n = tf.shape(hist)[1]
        p = tf.pad(hist, [[0, 0], [0, tf.maximum(5 - n, 0)]])[:, :5]
        return {"p": p, "e": tf.reduce_sum(tf.gather(emb, p), 1),
                "f": tf.pad(tf.cast(hist, tf.float32), [[1, 0], [2, 1]], constant_values=-1.0)}

    return FunctionModel(serve.get_concrete_function())


@pytest.mark.parametrize("width", [2, 5, 7, 0])
def test_history_padded_with_tf_pad(no_fallback, padded_history, width):
    hist = (np.arange(3 * width, dtype=np.int64).reshape(3, width) * 7) % 10
    padded_history.check({"hist": hist}, (hist,), f"T={width}")


def test_two_tower_cosine_and_norms(no_fallback):
    """A TFRS-style two-tower head: l2_normalize'd towers, cosine per pair and all-pairs scores, Keras' cosine
    similarity, tf.norm and tf.math.reduce_euclidean_norm (EuclideanNorm: unsupported before) of a zero vector
    too; ids past the tables: TF's error."""
    import tensorflow as tf

    rng = np.random.default_rng(52)
    users = tf.constant(rng.normal(size=(5, 4)).astype(np.float32))
    items = tf.constant(np.vstack([rng.normal(size=(4, 4)), np.zeros((1, 4))]).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int64)])
    def serve(u, i):
        eu, ei = tf.gather(users, u), tf.gather(items, i)
        a, b = tf.nn.l2_normalize(eu, axis=-1), tf.math.l2_normalize(ei, axis=1, epsilon=1e-6)
        return {"cos": tf.reduce_sum(a * b, -1), "all": tf.matmul(a, b, transpose_b=True),
                "keras_cos": -tf.keras.losses.cosine_similarity(eu, ei), "norm": tf.norm(ei, axis=1),
                "en": tf.math.reduce_euclidean_norm(eu, 1), "en_keep": tf.math.reduce_euclidean_norm(ei, [0, 1], True)}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    for what, u, i in (("B=3", [0, 1, 4], [4, 0, 1]), ("B=1", [2], [4]), ("B=0", [], []), ("id 5", [5], [0])):
        args = (np.array(u, np.int64), np.array(i, np.int64))
        model.check({"u": args[0], "i": args[1]}, args, what)


@pytest.fixture(scope="module")
def sparse_times_dense():
    """A SparseTensor's values scaled by dense tensors (sp * dense, sp * per-row [B, 1], sp * 2.0, sp / a row:
    SparseDenseCwiseMul / Div, unsupported before) and tf.sparse.add(sp, dense) (SparseTensorDenseAdd), the scaled
    weights then feeding safe_embedding_lookup_sparse."""
    import tensorflow as tf

    rng = np.random.default_rng(53)
    table = tf.constant(rng.normal(size=(6, 3)).astype(np.float32))

    @tf.function(input_signature=[tf.SparseTensorSpec([None, 4], tf.int64), tf.SparseTensorSpec([None, 4], tf.float32),
                                  tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None, 1], tf.float32)])
    def serve(ids, w, d, scale):
        sw = w * scale
        return {"mul": tf.sparse.to_dense(w * d), "row": sw.values, "const": (w * 2.0).values,
                "div": (w / d[0]).values, "add": tf.sparse.add(w, d),
                "emb": tf.nn.safe_embedding_lookup_sparse(table, ids, sw, combiner="mean")}

    return FunctionModel(serve.get_concrete_function())


@pytest.mark.parametrize("case", ["B=3", "all empty", "a zero divisor", "id 6"])
def test_sparse_values_times_dense(no_fallback, sparse_times_dense, case):
    ids = {"B=3": [[1, 2], [], [5, 0, 0, 3]], "all empty": [[], []], "a zero divisor": [[1], [2]],
           "id 6": [[6], []]}[case]
    w = [[float(k + 1) * (-1) ** k for k in range(len(r))] for r in ids]
    b = len(ids)
    d = np.arange(b * 4, dtype=np.float32).reshape(b, 4) + (0 if case == "a zero divisor" else 1)
    scale = np.array([[0.5], [NAN], [-2.0]][:b], np.float32)
    a, sw = _sparse(ids, width=4), _sparse(w, np.float32, width=4)
    sparse_times_dense.check({"ids": a, "w": sw, "d": d, "scale": scale},
                             (_tf_sparse(a), _tf_sparse(sw), d, scale), case)


def _tf_sparse(parts):
    import tensorflow as tf

    return tf.SparseTensor(*parts)


def test_sparse_slice_of_a_history(no_fallback):
    """tf.sparse.slice (SparseSlice: unsupported before) keeping the first 2 entries of each row, and a window of
    rows: the entries inside, shifted, with TF's output shape (the overlap of the slice and the input)."""
    import tensorflow as tf

    rng = np.random.default_rng(54)
    emb = tf.constant(rng.normal(size=(10, 2)).astype(np.float32))

    @tf.function(input_signature=[tf.SparseTensorSpec([None, None], tf.int64)])
    def serve(ids):
        head = tf.sparse.slice(ids, [0, 0], tf.stack([ids.dense_shape[0], 2]))
        rows = tf.sparse.slice(ids, [1, 1], [2, 10])
        return {"e": tf.nn.safe_embedding_lookup_sparse(emb, head, combiner="sum"), "head": tf.sparse.to_dense(head),
                "rows_idx": rows.indices, "rows_vals": rows.values, "rows_shape": rows.dense_shape}

    model = FunctionModel(serve.get_concrete_function())
    for what, rows in (("B=3", [[1, 2, 3], [], [4, 5]]), ("B=1", [[7]]), ("all empty", [[], [], [], []]),
                       ("B=4", [[1], [2, 3, 4, 5], [6, 7, 8], [9]])):
        a = _sparse(rows)
        model.check({"ids": a}, (tf.SparseTensor(*a),), what)


def test_ragged_times_dense_weights(no_fallback):
    """A ragged id list weighted by a per-row dense value (ragged * dense broadcasting writes RaggedRange:
    unsupported before, and its shape asserts compare bools, which crashed the build) then reduced; ragged
    boolean_mask, to_tensor(default_value, shape) and reduce_mean of rows the mask empties (NaN, as TF)."""
    import tensorflow as tf

    rng = np.random.default_rng(55)
    emb = tf.constant(rng.normal(size=(10, 3)).astype(np.float32))

    @tf.function(input_signature=[tf.RaggedTensorSpec([None, None], tf.int64, row_splits_dtype=tf.int64),
                                  tf.TensorSpec([None], tf.float32)])
    def serve(r, w):
        keep = tf.ragged.boolean_mask(r, r > 0)
        return {"wsum": tf.reduce_sum(tf.cast(r, tf.float32) * w[:, None], 1),
                "mean": tf.reduce_mean(tf.gather(emb, keep), axis=1), "lens": keep.row_lengths(),
                "dense": keep.to_tensor(default_value=-1, shape=[None, 3]),
                "range": tf.ragged.range(tf.cast(r.row_lengths(), tf.int32)).flat_values}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    for what, vals, splits, w in (("B=4", [1, 0, 3, -2, 5, 6, 7, 8, 9], [0, 2, 2, 4, 9], [1, NAN, 3, -4]),
                                  ("B=1 empty", [], [0, 0], [2]), ("B=0", [], [0], [])):
        vals, splits, w = np.array(vals, np.int64), np.array(splits, np.int64), np.array(w, np.float32)
        model.check({"r": (vals, splits), "w": w}, (tf.RaggedTensor.from_row_splits(vals, splits), w), what)


def test_sparse_sparse_ops_are_a_clear_error(no_fallback):
    """tf.sparse.add of two SparseTensors (SparseAdd: a sorted union) and tf.sparse.maximum (SparseSparseMaximum)
    have no converter: the import fails naming each node and op."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.SparseTensorSpec([None, 4], tf.float32)] * 2)
    def serve(a, b):
        return {"add": tf.sparse.to_dense(tf.sparse.add(a, b)), "max": tf.sparse.to_dense(tf.sparse.maximum(a, b))}

    with pytest.raises(recom_tvm.UnsupportedOpError) as err:
        recom_tvm.from_tensorflow(serve.get_concrete_function())
    text = str(err.value)
    assert "'SparseAdd' at node 'SparseAdd'" in text and "'SparseSparseMaximum' at node" in text, text
