"""Round 4 of graphs written the ways users write them (the survey of 2026-12-08, what still failed after round 3):
ops that failed to import now match TF (TF's errors for bad input)."""

from __future__ import annotations

import numpy as np
import pytest

from recom_tvm import config

from conftest import FunctionModel


@pytest.fixture()
def no_fallback(monkeypatch):
    monkeypatch.setattr(config, "host_fallback", False)


def test_reverse_sequence_and_repeat(no_fallback):
    """GRU4Rec-style preprocessing: tf.reverse_sequence (ReverseSequence, unsupported before) of the history, most
    recent first, before an embedding and a position-weighted sum; seq_axis 0 / batch_axis 1 with int32 lengths
    on [T, B, D]; tf.repeat of the user vector per candidate. A length past T or negative: TF's error."""
    import tensorflow as tf

    rng = np.random.default_rng(33)
    emb = tf.constant(rng.normal(size=(10, 3)).astype(np.float32))
    pw = tf.constant([1.0, 0.5, 0.25, 0.125])

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.int64), tf.TensorSpec([None], tf.int64),
                                  tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32)])
    def serve(hist, lengths, lengths32, counts):
        r = tf.reverse_sequence(hist, lengths, seq_axis=1, batch_axis=0)
        e = tf.gather(emb, hist)
        u = tf.reduce_sum(tf.gather(emb, r) * pw[None, :, None], 1)
        tbd = tf.reverse_sequence(tf.transpose(e, [1, 0, 2]), lengths32, seq_axis=0, batch_axis=1)
        return {"r": r, "u": u, "rep": tf.repeat(u, counts, axis=0), "tbd": tbd}

    model = FunctionModel(serve.get_concrete_function())

    def check(hist, lengths, counts, what):
        args = (np.array(hist, np.int64).reshape(-1, 4), np.array(lengths, np.int64),
                np.array(lengths, np.int32), np.array(counts, np.int32))
        model.check(dict(zip(("hist", "lengths", "lengths32", "counts"), args)), args, what)

    check([[1, 2, 3, 0], [0, 0, 0, 0], [4, 5, 6, 7]], [3, 0, 4], [2, 0, 1], "B=3")
    check([[9, 8, 7, 6]], [1], [3], "B=1")
    check([], [], [], "B=0")
    check([[1, 2, 3, 4]], [5], [1], "length past T")
    check([[1, 2, 3, 4]], [-1], [1], "negative length")


def test_scatter_nd_multi_hot(no_fallback):
    """A multi-hot built by scatter (ScatterNd, TensorScatterUpdate / Add / Sub / Max / Min: unsupported before):
    tf.scatter_nd of ones at (row, id) pairs of a SparseTensor (repeated pairs add up), tf.tensor_scatter_nd_update
    on a zeros base with repeated pairs holding different values (TF-CPU applies them in order: the last wins),
    _max / _min / _add / _sub, rows of a [V, 2] table replaced by index depth 1 (slices), NaN updates. An id past V
    or negative: TF-CPU's error."""
    import tensorflow as tf

    V = 6
    W = tf.constant(np.random.default_rng(34).normal(size=(V, 2)).astype(np.float32))

    @tf.function(input_signature=[tf.SparseTensorSpec([None, None], tf.int64), tf.TensorSpec([None], tf.float32)])
    def serve(ids, x):
        idx = tf.stack([ids.indices[:, 0], ids.values], 1)
        B = ids.dense_shape[0]
        cnt = tf.scatter_nd(idx, tf.ones_like(ids.values, tf.float32), tf.stack([B, V]))
        base = tf.zeros(tf.stack([B, V]))
        pos = tf.cast(ids.indices[:, 1] + 1, tf.float32) * x
        rows = tf.tensor_scatter_nd_update(W, ids.values[:, None], tf.stack([pos, -pos], 1))
        return {"cnt": cnt, "y": cnt @ W, "upd": tf.tensor_scatter_nd_update(base, idx, pos),
                "mx": tf.tensor_scatter_nd_max(base, idx, pos), "mn": tf.tensor_scatter_nd_min(base, idx, pos),
                "add": tf.tensor_scatter_nd_add(cnt, idx, pos), "sub": tf.tensor_scatter_nd_sub(cnt, idx, pos),
                "rows": rows}

    model = FunctionModel(serve.get_concrete_function())

    def check(rows, x, what):
        idx = [[r, c] for r, row in enumerate(rows) for c in range(len(row))]
        sp = (np.array(idx, np.int64).reshape(-1, 2), np.array([v for row in rows for v in row], np.int64),
              np.array([len(rows), max([len(r) for r in rows] + [0])], np.int64))
        x = np.array(x, np.float32)
        model.check({"ids": sp, "x": x}, (tf.SparseTensor(*sp), x), what)

    check([[1, 1, 5, 1], [], [0]], [1, 1, 1, 1, 1], "B=3, repeated ids")
    check([[2, 3]], [-1, 2], "B=1")
    check([[2, 2, 2]], [np.nan, 1, -2], "NaN updates")
    check([], [], "B=0")
    check([[6]], [1], "id 6")
    check([[0], [-1]], [1, 1], "id -1")


def test_unsorted_segment_reductions_of_2d_ids(no_fallback):
    """tf.math.unsorted_segment_sqrt_n / sum / max / mean / min / prod with segment ids [B, T] (a slot per history
    position, -1 = padding dropped) over data [B, T, D] (refused before: 'segment ids of rank other than 1'); TF
    reduces data's leading dims of the ids' shape as one. num_segments = B * S, reshaped to [B, S * D]. A slot past
    S in the last row (an id >= num_segments): TF's error."""
    import tensorflow as tf

    rng = np.random.default_rng(13)
    emb = tf.constant(rng.normal(size=(10, 3)).astype(np.float32))
    S = 3

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.int32), tf.TensorSpec([None, 4], tf.int32)])
    def serve(items, slot):
        e = tf.gather(emb, items)
        B = tf.shape(items)[0]
        seg = tf.where(slot >= 0, slot + tf.range(B)[:, None] * S, -1)
        out = {}
        for name, fn in (("sqrtn", tf.math.unsorted_segment_sqrt_n), ("sum", tf.math.unsorted_segment_sum),
                         ("max", tf.math.unsorted_segment_max), ("mean", tf.math.unsorted_segment_mean),
                         ("min", tf.math.unsorted_segment_min), ("prod", tf.math.unsorted_segment_prod)):
            out[name] = tf.reshape(fn(e, seg, B * S), [B, S * 3])
        out["count"] = tf.math.unsorted_segment_sum(tf.ones_like(items), seg, B * S)
        return out

    model = FunctionModel(serve.get_concrete_function())
    for what, items, slot in (("B=3", [[1, 2, 3, 4], [0, 0, 0, 0], [9, 8, 7, 6]],
                               [[0, 0, 2, -1], [-1, -1, -1, -1], [1, 1, 1, 0]]),
                              ("B=1", [[5, 5, 5, 5]], [[2, 2, -1, 2]]),
                              ("B=0", [], []),
                              ("slot 3 in the last row", [[1, 1, 1, 1]], [[3, 0, 0, 0]])):
        args = (np.array(items, np.int32).reshape(-1, 4), np.array(slot, np.int32).reshape(-1, 4))
        model.check({"items": args[0], "slot": args[1]}, args, what)


def _sparse(rows, dtype=np.int64, width=None):
    """(indices, values, dense_shape) of a list of rows (lists of values), entries at columns 0, 1, ..."""
    idx = [[r, c] for r, row in enumerate(rows) for c in range(len(row))]
    width = max([len(r) for r in rows] + [0]) if width is None else width
    return (np.array(idx, np.int64).reshape(-1, 2), np.array([v for row in rows for v in row], dtype),
            np.array([len(rows), width], np.int64))


def test_sparse_reduce_max_sum_and_to_indicator(no_fallback):
    """tf.sparse.to_indicator (a SparseReorder of indices built from the ids: refused before, 'computed in the
    module') into a dense layer; tf.sparse.reduce_max (SparseReduceMax, unsupported before) and reduce_sum over
    axis 1, keepdims, axis 0, all axes, of float and int weights: 0 where a row has no entry, NaN as TF-CPU's
    kernel reduces it (a NaN followed by a number gives the number, a NaN last gives NaN); tf.sparse.to_dense with
    default -1. An id past the vocabulary: TF's error."""
    import tensorflow as tf

    rng = np.random.default_rng(19)
    W = tf.constant(rng.normal(size=(6, 2)).astype(np.float32))

    @tf.function(input_signature=[tf.SparseTensorSpec([None, None], tf.int64),
                                  tf.SparseTensorSpec([None, None], tf.float32)])
    def serve(ids, w):
        mh = tf.cast(tf.sparse.to_indicator(ids, 6), tf.float32)
        iw = tf.SparseTensor(ids.indices, ids.values - 3, ids.dense_shape)
        return {"mh": mh, "y": mh @ W, "wsum": tf.sparse.reduce_sum(w, axis=1),
                "wmax": tf.sparse.reduce_max(w, axis=1), "wmax_keep": tf.sparse.reduce_max(w, axis=1, keepdims=True),
                "wmax0": tf.sparse.reduce_max(w, axis=0), "wmax_all": tf.sparse.reduce_max(w),
                "wsum_keep": tf.sparse.reduce_sum(w, axis=-1, keepdims=True), "imax": tf.sparse.reduce_max(iw, 1),
                "dense": tf.sparse.to_dense(ids, default_value=-1)}

    model = FunctionModel(serve.get_concrete_function())

    def check(ids, w, what):
        a, b = _sparse(ids), _sparse(w, np.float32)
        model.check({"ids": a, "w": b}, (tf.SparseTensor(*a), tf.SparseTensor(*b)), what)

    check([[1, 2, 2], [], [5]], [[1., -2., 3.], [], [-1.]], "B=3")
    check([[0], [3, 3]], [[np.nan, 1.], [1., np.nan]], "NaN first / last")
    check([[0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]], [[1., 5., np.nan, -7., 2., 9., 3., 4., 0., 1., -1., 2.]],
          "a long row")
    check([[0]], [[np.nan]], "B=1 NaN")
    check([], [], "B=0")
    check([[6]], [[1.]], "id 6")


def test_half_precision_tables(no_fallback):
    """Embedding tables stored in float16 and bfloat16 (to save memory; a bfloat16 constant could not be decoded
    before: 'cannot decode a constant of dtype bfloat16'), gathered then cast to float32; bfloat16 arithmetic (a
    scale and a bias in bfloat16, each result rounded to bfloat16 as TF does); a float16 dense layer: large
    inputs overflow to inf. An id past the table: TF's error."""
    import tensorflow as tf

    rng = np.random.default_rng(36)
    t16 = tf.constant(rng.normal(size=(8, 4)).astype(np.float16))
    tbf = tf.cast(tf.constant(rng.normal(size=(8, 4)).astype(np.float32)), tf.bfloat16)
    bias = tf.cast(tf.constant(rng.normal(size=(4,)).astype(np.float32)), tf.bfloat16)
    W16 = tf.constant(rng.normal(size=(1, 4)).astype(np.float16))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, 1], tf.float32)])
    def serve(ids, x):
        e = tf.gather(tbf, ids)
        scaled = e * tf.cast(x, tf.bfloat16) + bias
        return {"a": tf.cast(tf.gather(t16, ids), tf.float32), "b": tf.cast(e, tf.float32),
                "scaled": tf.cast(scaled, tf.float32), "c": tf.cast(tf.cast(x, tf.float16) @ W16, tf.float32)}

    model = FunctionModel(serve.get_concrete_function())
    for what, ids, x in (("B=3", [0, 7, 3], [[1.], [70000.], [np.nan]]),
                         ("B=4", [1, 2, 4, 5], [[.1], [-3.3], [1e-3], [7.]]),
                         ("B=0", [], np.zeros((0, 1))), ("id 8", [8], [[1.]])):
        args = (np.array(ids, np.int64), np.array(x, np.float32).reshape(-1, 1))
        model.check({"ids": args[0], "x": args[1]}, args, what)


def test_sparse_bincount(no_fallback):
    """tf.sparse.bincount (SparseCountSparseOutput, DenseCountSparseOutput, RaggedCountSparseOutput: unsupported
    before) of a SparseTensor, a dense [B, N] and a ragged tensor of ids, per row (axis=-1, minlength = maxlength =
    8), binary_output and with weights, into tf.sparse.to_dense and as its (row, id) pairs; ids >= 8 dropped, a
    negative one TF's error; a SparseTensor of no rows is TF's error too ('Cannot allocate 0 batches')."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.SparseTensorSpec([None, None], tf.int64),
                                  tf.SparseTensorSpec([None, None], tf.float32), tf.TensorSpec([None, 3], tf.int32),
                                  tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int64)])
    def serve(ids, w, dense, values, splits):
        a = tf.sparse.bincount(ids, minlength=8, maxlength=8, binary_output=True, axis=-1)
        b = tf.sparse.bincount(ids, weights=w, minlength=8, maxlength=8, axis=-1)
        d = tf.sparse.bincount(dense, minlength=8, maxlength=8, axis=-1)
        r = tf.sparse.bincount(tf.RaggedTensor.from_row_splits(values, splits), maxlength=8, binary_output=True,
                               axis=-1)
        return {"a": tf.sparse.to_dense(a), "b": tf.sparse.to_dense(b), "b_idx": b.indices, "b_vals": b.values,
                "d": tf.sparse.to_dense(d), "d_idx": d.indices, "r": tf.sparse.to_dense(r)}

    model = FunctionModel(serve.get_concrete_function())

    def check(ids, w, dense, values, splits, what):
        a, b = _sparse(ids), _sparse(w, np.float32)
        rest = (np.array(dense, np.int32).reshape(-1, 3), np.array(values, np.int32), np.array(splits, np.int64))
        model.check(dict(zip(("ids", "w", "dense", "values", "splits"), (a, b) + rest)),
                    (tf.SparseTensor(*a), tf.SparseTensor(*b)) + rest, what)

    check([[1, 1, 7], [], [9, 0]], [[1., 2., 3.], [], [4., .5]], [[1, 1, 2], [9, 0, 0]], [3, 3, 8, 1], [0, 3, 3, 4],
          "B=3")
    check([[3]], [[np.nan]], [[7, 7, 7]], [], [0, 0], "B=1, NaN weight")
    check([[-1]], [[1.]], [[0, 0, 0]], [0], [0, 1], "id -1")
    check([], [], [], [], [0], "no rows")
