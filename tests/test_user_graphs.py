"""Graphs written the ways users write them (a survey of ~70 user-style graphs, 2026-12-07) that failed to import
or failed without saying why: each now converts and matches TF, or fails with an error naming the op, the node and
the reason."""

from __future__ import annotations

import numpy as np
import pytest

import recom_tvm
from recom_tvm import config
from recom_tvm.errors import ConversionError, InvalidArgumentError, RecomError

from conftest import FunctionModel


@pytest.fixture()
def no_fallback(monkeypatch):
    monkeypatch.setattr(config, "host_fallback", False)


@pytest.fixture()
def fallback(monkeypatch):
    monkeypatch.setattr(config, "host_fallback", True)  # (the suite runs with it off: conftest)


@pytest.mark.parametrize("op", ["equal", "not_equal", "less"])
def test_comparisons_on_a_symbolic_dim_convert(no_fallback, op):
    """tf.equal / tf.not_equal of tf.shape(x)[0] with a constant: `int == PrimExpr` gives TVM's EqualOp, which the
    importer's symbolic fold could not read (ConversionError; with the fallback, a silent co-run in TF)."""
    import tensorflow as tf

    fn = getattr(tf, op)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def serve(a):
        return {"o": tf.cast(fn(tf.shape(a)[0], 2), tf.float32) + a}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    for batch in (1, 2, 3):
        x = np.arange(4 * batch, dtype=np.float32).reshape(batch, 4)
        model.check({"a": x}, (x,), f"{op} B={batch}")


def test_a_python_default_argument_is_not_a_feed():
    """`def serve(ids, training=False)` with an input_signature: TF traces the Python constant in and serves one
    tensor input; the loader took the constant for an input ("unsupported input spec bool")."""
    import tensorflow as tf

    table = tf.constant(np.arange(40, dtype=np.float32).reshape(10, 4))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
    def serve(ids, training=False):
        e = tf.gather(table, ids)
        return {"e": tf.nn.dropout(e, 0.5) if training else e}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    assert model.names == ["ids"]
    ids = np.array([1, 2, 9], np.int64)
    model.check({"ids": ids}, (ids,), "training=False")


def test_what_the_co_run_cannot_hand_over_is_a_clear_error(fallback):
    """With the host co-run (the default), nodes that still cannot be translated after it raised the importer's
    internal UnconvertibleNodes ("N node(s) cannot be translated": no op, node or reason); now the error of each,
    and which ops ran through TensorFlow."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.SparseTensorSpec([None, None], tf.int64), tf.TensorSpec([], tf.int64)])
    def serve(sp, n):  # the sparse ids merged with themselves (SparseAdd of two SparseTensors has no converter)
        merged = tf.sparse.add(sp, tf.sparse.slice(sp, [0, 0], [n, 2]))
        return {"e": tf.nn.safe_embedding_lookup_sparse(table, merged, None, combiner="sum")}

    with pytest.raises(RecomError) as err:
        recom_tvm.from_tensorflow(serve.get_concrete_function())
    text = str(err.value)
    assert "embedding_lookup/SparseReshape" in text and "must be known" in text and "through TensorFlow" in text, \
        text


def test_a_co_run_reading_a_captured_table_is_a_clear_error(fallback):
    """A co-run (SparseAdd of two SparseTensors has no converter; this test's first op without one, SparseSlice,
    converts since 2026-12-07) that pulls in a Keras StringLookup's table lookup: the TF2
    function's captured table handle was made a feed the host stage never produces, and every request failed
    ("host stage stuck at recom_tvm/host_corun"); now the import names the lookup and the handle. (The same
    lookup padded by RaggedTensorToTensor, the first form of this test, converts since 2026-12-07: below.)"""
    import keras
    import tensorflow as tf

    lookup = keras.layers.StringLookup(vocabulary=["the", "cat", "sat"])
    table = tf.constant(np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(s):
        sp = lookup(tf.strings.split(s)).to_sparse()
        ids = tf.sparse.add(sp, tf.sparse.slice(sp, [0, 0], [tf.shape(s, out_type=tf.int64)[0], 5]))
        return {"e": tf.nn.safe_embedding_lookup_sparse(table, ids, None, combiner="sum")}

    with pytest.raises(ConversionError) as err:
        recom_tvm.from_tensorflow(serve.get_concrete_function())
    text = str(err.value)
    assert "LookupTableFindV2" in text and "host co-run" in text and "resource handle" in text, text


def test_string_lookup_padded_by_to_tensor(no_fallback):
    """StringLookup over split strings, padded with to_tensor(shape=[None, 5]), then an embedding sum: the
    RaggedTensorToTensor converter keeps it in the module (no co-run, no captured table handed to TF)."""
    import keras
    import tensorflow as tf

    lookup = keras.layers.StringLookup(vocabulary=["the", "cat", "sat"])
    table = tf.constant(np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(s):
        ids = lookup(tf.strings.split(s)).to_tensor(default_value=0, shape=[None, 5])
        return {"ids": ids, "e": tf.reduce_sum(tf.gather(table, ids), axis=1)}

    model = FunctionModel(serve.get_concrete_function())
    s = np.array([b"the cat sat on the mat today", b"", b"dog cat"], object)
    for feed in (s, s[:0]):
        model.check({"s": feed}, (feed,), f"{len(feed)} rows")


def test_a_scalar_feed_in_every_python_form(no_fallback):
    """A scalar placeholder fed a Python int / float or a numpy scalar (as TF accepts): the feed conversion made
    such a value rank 1 (np.ascontiguousarray) and the request failed ("expected 0 shape entries, got 1"); a 0-d
    array alone worked."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(1).normal(size=(10, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.int64),
                                  tf.TensorSpec([], tf.float32)])
    def serve(ids, k, scale):
        return {"e": tf.gather(table, ids + k) * scale}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    ids = np.array([1, 2, 5], np.int64)
    for k, scale in ((1, 2.0), (np.int64(2), np.float32(0.5)), (np.array(3, np.int64), np.array(1.5, np.float32))):
        model.check({"ids": ids, "k": k, "scale": scale}, (ids, np.int64(k), np.float32(scale)),
                    f"k={k!r} scale={scale!r}")


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min", "prod", "sqrt_n"])
def test_unsorted_segment_reductions_with_num_segments_fed(no_fallback, op):
    """tf.math.unsorted_segment_* with num_segments a scalar feed: the importer needed it known ("num_segments must
    be known when the model is compiled"); a scalar int feed is now a size symbol. Max / min / prod had no
    converter (also what tf.reduce_max of a ragged tensor runs). Empty segments (TF's 0 / 1 / lowest / highest),
    negative ids dropped, an id past num_segments and a negative num_segments raise TF's error."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(2).normal(size=(10, 4)).astype(np.float32))
    reduce = getattr(tf.math, f"unsorted_segment_{op}")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([], tf.int32)])
    def serve(ids, seg, nseg):
        emb = tf.gather(table, ids)
        return {"m": reduce(emb, seg, nseg), "emb": emb}

    model = FunctionModel(serve.get_concrete_function())
    ids = np.array([1, 2, 9, 3, 7], np.int64)
    seg = np.array([0, 2, 2, -1, 0], np.int32)
    for nseg in (3, 5, 2, 0, -1):  # exact, empty segments, an id past it (error), none, negative (error)
        n = np.int32(nseg)
        model.check({"ids": ids, "seg": seg, "nseg": n}, (ids, seg, n), f"{op} num_segments={nseg}")
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int32), np.int32(2))
    model.check(dict(zip(("ids", "seg", "nseg"), empty)), empty, f"{op} no ids")


def test_bincount_with_its_size_fed(no_fallback):
    """tf.math.bincount with minlength = maxlength = a scalar feed (DenseBincount's size): needed a constant;
    values past the size are dropped, a negative size is TF's error."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([], tf.int32)])
    def serve(x, n):
        return {"c": tf.math.bincount(x, minlength=n, maxlength=n, axis=-1),
                "b": tf.math.bincount(x, minlength=n, maxlength=n, axis=-1, binary_output=True)}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    x = np.array([[1, 2, 2], [0, 4, 1]], np.int32)
    for n in (5, 3, 0, -1):
        model.check({"x": x, "n": np.int32(n)}, (x, np.int32(n)), f"size={n}")


def test_max_pooling_over_string_split_ids(no_fallback):
    """tf.reduce_max / reduce_min over a ragged embedding of string-split tokens (UnsortedSegmentMax / Min with
    the row count as num_segments): had no converter; an empty row is TF's lowest / highest value."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(3).normal(size=(10, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(s):
        e = tf.nn.embedding_lookup(table, tf.strings.to_hash_bucket_fast(tf.strings.split(s), 10))
        return {"max": tf.reduce_max(e, axis=1), "min": tf.reduce_min(e, axis=1)}

    model = FunctionModel(serve.get_concrete_function())
    for s in (np.array([b"a b c", b"", b"d"], object), np.array([b"x"], object), np.array([], object)):
        model.check({"s": s}, (s,), f"{len(s)} rows")


def test_sparse_from_dense_of_a_string_feed(no_fallback):
    """tf.sparse.from_dense on a dense, ""-padded string feed (NotEqual against ZerosLike of the strings) then a
    hashed embedding: ZerosLike had no host-stage form; now "" of the input's shape, natively (no numpy op)."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(4).normal(size=(20, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.string)])
    def serve(s):
        sp = tf.sparse.from_dense(s)
        ids = tf.SparseTensor(sp.indices, tf.strings.to_hash_bucket_fast(sp.values, 20), sp.dense_shape)
        return {"e": tf.nn.safe_embedding_lookup_sparse(table, ids, None, combiner="mean")}

    model = FunctionModel(serve.get_concrete_function())
    rows = np.array([[b"a", b"", b"c"], [b"", b"", b""], [b"x", b"y", b"z"]], object)
    for s in (rows, rows[:1], rows[:0], rows.astype("U")):
        model.check({"s": s}, (s,), f"{s.shape} {s.dtype}")
        for name, built in model.variants.items():
            native = built.native_host()
            assert native is not None and not native.program.fallback_ops, (name, native and
                                                                            native.program.fallback_ops)
            staging = np.zeros(1 << 16, np.uint8)
            assert native.request(native.context(), {"s": s}, lambda n: (staging.ctypes.data, staging.size)) \
                is not None, native.last_refusal


def test_sparse_reshape_to_a_fed_shape(no_fallback):
    """tf.sparse.reshape of sparse ids to a shape fed at run time, then an embedding lookup: the importer could not
    prove the element counts equal; now they are checked on the host before launch (TF's error when they differ)."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(5).normal(size=(10, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.SparseTensorSpec([None, None], tf.int64), tf.TensorSpec([2], tf.int64)])
    def serve(sp, shape):
        return {"e": tf.nn.safe_embedding_lookup_sparse(table, tf.sparse.reshape(sp, shape), None, combiner="sum")}

    model = FunctionModel(serve.get_concrete_function())
    idx = np.array([[0, 0], [0, 3], [1, 1], [2, 5]], np.int64)
    vals = np.array([1, 2, 3, 9], np.int64)
    dense = np.array([3, 6], np.int64)
    for shape in ([6, 3], [2, 9], [3, 6], [18, 1], [4, 4]):  # the last: TF's error (16 vs 18 elements)
        shape = np.array(shape, np.int64)
        model.check({"sp": (idx, vals, dense), "shape": shape}, (tf.SparseTensor(idx, vals, dense), shape),
                    f"{dense} -> {shape}")
    # a fed -1 (TF infers that dim): every size symbol is compiled as >= 0, so it is refused, naming the feed
    for name, built in model.variants.items():
        with pytest.raises(InvalidArgumentError, match="shape:0: value -1 where the model needs a size"):
            built.run({"sp": (idx, vals, dense), "shape": np.array([-1, 6], np.int64)})


def test_keras_text_vectorization_padded_ids(no_fallback):
    """Keras 3 TextVectorization (output_sequence_length) into an Embedding: the padded ids are
    RaggedTensorToTensor over (rows, value row ids), which had no converter (the co-run then needed the layer's
    captured table and failed). Rows longer than the length are cut, empty rows are all padding; without a length,
    the ids are padded to the longest row."""
    import keras
    import tensorflow as tf

    vocab = ["the", "cat", "sat", "on", "mat"]
    tv = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=5, vocabulary=vocab)
    longest = keras.layers.TextVectorization(max_tokens=20, vocabulary=vocab)  # padded to the longest row
    emb = keras.layers.Embedding(20, 4)
    emb.build((None,))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(s):
        ids, ids2 = tv(s), longest(s)
        return {"ids": ids, "e": tf.reduce_mean(emb(ids), axis=1), "ids2": ids2,
                "e2": tf.reduce_sum(emb(ids2), axis=1)}

    model = FunctionModel(serve.get_concrete_function())
    s = np.array([b"the cat sat", b"", b"The mat on the cat sat again and again", b"dog"], object)
    for feed in (s, s[2:3], s[:0], s[1:2]):
        model.check({"s": feed}, (feed,), f"{len(feed)} rows")


def test_ragged_to_tensor_of_a_ragged_feed(no_fallback):
    """RaggedTensor.to_tensor(default_value, shape=[None, T]) by row splits, of ids and of their [nnz, 4]
    embeddings; without a row length (refused before) padded to the longest row, a masked mean over it."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(6).normal(size=(10, 4)).astype(np.float32))
    spec = tf.RaggedTensorSpec([None, None], tf.int64, ragged_rank=1, row_splits_dtype=tf.int64)

    @tf.function(input_signature=[spec])
    def serve(r):
        return {"ids": r.to_tensor(default_value=-1, shape=[None, 3]),
                "e": tf.ragged.map_flat_values(tf.gather, table, r).to_tensor(shape=[None, 3, 4])}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    values = np.array([1, 2, 3, 4, 5, 6], np.int64)
    for splits in ([0, 2, 2, 6], [0, 0], [0, 6], [0]):
        splits = np.array(splits, np.int64)
        vals = values[:splits[-1]]
        model.check({"r": (vals, splits)}, (tf.RaggedTensor.from_row_splits(vals, splits),), f"splits {splits}")

    @tf.function(input_signature=[spec])
    def unbounded(r):  # padded to the longest row: a data-dependent width
        ids = r.to_tensor()
        e = tf.gather(table, ids)
        mask = tf.cast(ids > 0, tf.float32)[:, :, None]
        pooled = tf.math.divide_no_nan(tf.reduce_sum(e * mask, 1), tf.reduce_sum(mask, 1))
        return {"ids": ids, "e": tf.ragged.map_flat_values(tf.gather, table, r).to_tensor(default_value=0.5),
                "pooled": pooled}

    model = FunctionModel(unbounded.get_concrete_function())
    for splits in ([0, 2, 2, 6], [0, 0, 0], [0, 6], [0]):
        splits = np.array(splits, np.int64)
        vals = values[:splits[-1]]
        model.check({"r": (vals, splits)}, (tf.RaggedTensor.from_row_splits(vals, splits),), f"splits {splits}")


def test_segment_mean_and_is_nan(no_fallback):
    """tf.math.segment_mean (SegmentSum / SegmentMax converted, SegmentMean not; SegmentMin / SegmentProd neither,
    float and int: a gap is 0 for min, 1 for prod) and tf.math.is_nan guarding a mean over an empty ragged row; gaps
    in the segment ids are TF's zero rows, unsorted ids TF's error."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(8).normal(size=(10, 3)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int64),
                                  tf.TensorSpec([None], tf.float32)])
    def serve(ids, seg, x):
        e = tf.gather(table, ids)
        return {"mean": tf.math.segment_mean(e, seg), "max": tf.math.segment_max(e, seg),
                "min": tf.math.segment_min(e, seg), "prod": tf.math.segment_prod(e, seg),
                "imin": tf.math.segment_min(ids, seg), "iprod": tf.math.segment_prod(ids + 1, seg),
                "clean": tf.where(tf.math.is_nan(x), tf.zeros_like(x), x),
                "finite": tf.cast(tf.math.is_finite(x), tf.float32) + tf.cast(tf.math.is_inf(x), tf.float32) * 2}

    model = FunctionModel(serve.get_concrete_function())
    x = np.array([1.0, np.nan, np.inf, -np.inf], np.float32)
    for ids, seg in (([1, 2, 3, 9], [0, 0, 2, 2]), ([], []), ([1, 2], [1, 0]), ([4], [3])):
        ids, seg = np.array(ids, np.int64), np.array(seg, np.int64)
        model.check({"ids": ids, "seg": seg, "x": x}, (ids, seg, x), f"segments {seg}")


def test_gather_with_batch_dims(no_fallback):
    """tf.gather(candidates, picks, batch_dims=1) (re-ranking: each example's own candidates) and batch_dims=2 over
    a [B, T, N, D] tensor: refused before ('batch_dims != 0'); indices outside [0, N) and a batch mismatch raise
    TF's error."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 5, 3], tf.float32), tf.TensorSpec([None, 2], tf.int32),
                                  tf.TensorSpec([None, 2, 4, 3], tf.float32), tf.TensorSpec([None, 2], tf.int64)])
    def serve(cands, pick, seq, pos):
        g = tf.gather(cands, pick, batch_dims=1)
        return {"g": g, "s": tf.reduce_sum(g, -1), "h": tf.gather(seq, pos, batch_dims=2)}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    rng = np.random.default_rng(9)
    for b, pick, pos in ((3, [[0, 4], [2, 2], [1, 3]], [[0, 3], [1, 1], [2, 0]]), (0, np.zeros((0, 2)), np.zeros((0, 2))),
                         (1, [[5, 0]], [[0, 0]]), (1, [[-1, 0]], [[0, 0]]), (1, [[0, 0]], [[0, 4]])):
        feeds = {"cands": rng.normal(size=(b, 5, 3)).astype(np.float32), "pick": np.array(pick, np.int32),
                 "seq": rng.normal(size=(b, 2, 4, 3)).astype(np.float32), "pos": np.array(pos, np.int64)}
        model.check(feeds, tuple(feeds.values()), f"B={b} pick={pick} pos={pos}")
    feeds = {"cands": np.zeros((2, 5, 3), np.float32), "pick": np.zeros((3, 2), np.int32),
             "seq": np.zeros((2, 2, 4, 3), np.float32), "pos": np.zeros((2, 2), np.int64)}
    model.check(feeds, tuple(feeds.values()), "batch 2 vs 3")


def test_unique_with_counts(no_fallback):
    """tf.unique_with_counts (had no converter): each unique id's row once, weighted by its count; over no ids
    the sum of the weighted rows is 0 (a reduction over nothing: backend/empty_reductions.py)."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(10).normal(size=(8, 3)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
    def serve(ids):
        u, idx, cnt = tf.unique_with_counts(ids)
        e = tf.gather(table, u) * tf.cast(cnt, tf.float32)[:, None]
        return {"weighted": tf.reduce_sum(e, 0), "idx": idx, "u": u, "cnt": cnt}

    model = FunctionModel(serve.get_concrete_function())
    for ids in ([3, 1, 3, 3, 7, 1], [], [5], [8, 1]):
        ids = np.array(ids, np.int64)
        model.check({"ids": ids}, (ids,), f"ids {ids}")


def test_sparse_tensor_spec_of_unknown_rank(no_fallback):
    """tf.SparseTensorSpec(None, tf.int64): a SparseTensor input of unknown rank is taken as rank 2 (was
    'unknown rank; give the input a shape')."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(12).normal(size=(10, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.SparseTensorSpec(None, tf.int64)])
    def serve(sp):
        return {"e": tf.nn.safe_embedding_lookup_sparse(table, sp, None, combiner="mean")}

    model = FunctionModel(serve.get_concrete_function())
    for idx, vals, shape in (([[0, 0], [0, 1], [2, 0]], [1, 2, 9], [3, 2]), (np.zeros((0, 2)), [], [2, 5]),
                             ([[0, 0]], [10], [1, 1])):
        idx, vals, shape = np.array(idx, np.int64).reshape(-1, 2), np.array(vals, np.int64), np.array(shape, np.int64)
        model.check({"sp": (idx, vals, shape)}, (tf.SparseTensor(idx, vals, shape),), f"{shape} {vals}")


def test_integer_division_by_a_zero_in_the_data(no_fallback):
    """x // y and floormod on int feeds: a 0 in y is TF's 'Integer division by zero' (the compiled division trapped:
    SIGFPE killed the serving process); a constant divisor is not checked; truncatediv / truncatemod round toward
    zero (TF raises InternalError for their zero divisor: ours is the same InvalidArgumentError)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int64)])
    def floor(x, y):
        x64 = tf.cast(x, tf.int64)
        return {"q": x64 // y, "m": tf.math.floormod(x64, y), "c": x // 3, "cm": tf.math.floormod(x, -4)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int64)])
    def trunc(x, y):
        return {"t": tf.truncatediv(x, y), "r": tf.truncatemod(x, y)}

    model = FunctionModel(floor.get_concrete_function(), passes=False)
    for x, y in (([7, -7, 5, 0], [2, 2, -3, 5]), ([7], [0]), ([], []), ([1, 2], [1, 0])):
        x, y = np.array(x, np.int32), np.array(y, np.int64)
        model.check({"x": x, "y": y}, (x, y), f"x {x} y {y}")
    model = FunctionModel(trunc.get_concrete_function(), passes=False)
    x, y = np.array([7, -7, 5, -5], np.int64), np.array([2, 2, -3, -3], np.int64)
    model.check({"x": x, "y": y}, (x, y), "truncation")
    for name, built in model.variants.items():
        with pytest.raises(InvalidArgumentError, match="Integer division by zero"):
            built.run({"x": x, "y": np.array([2, 0, 1, 1], np.int64)})


def test_numeric_ops_users_write(no_fallback):
    """Ops a survey of user feature code found unsupported (2026-12-07): cyclic time features (sin / cos), TF's
    banker's rounding (round, rint), expm1 undoing a log target, atan2, xdivy / xlogy, argmax / argmin (their
    ties: the first index), tf.reverse, bitwise ops and shifts on ids."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None, 4], tf.int64)])
    def serve(x, ids):
        return {"sin": tf.sin(x), "cos": tf.cos(x), "tan": tf.tan(x * 0.1), "atan": tf.atan(x),
                "round": tf.round(x), "rint": tf.math.rint(x), "expm1": tf.math.expm1(x * 1e-4),
                "expm1b": tf.math.expm1(x), "atan2": tf.math.atan2(x, x[:, ::-1] + 0.5),
                "xdivy": tf.math.xdivy(x, x + 10.0), "xlogy": tf.math.xlogy(x, tf.abs(x) + 1.0),
                "argmax": tf.argmax(x, axis=1), "argmin": tf.argmin(ids, axis=0, output_type=tf.int32),
                "rev": tf.reverse(x, [1]), "rev2": tf.reverse(ids, [0, 1]),
                "and": tf.bitwise.bitwise_and(ids, 6), "or": tf.bitwise.bitwise_or(ids, 8),
                "xor": tf.bitwise.bitwise_xor(ids, ids[:, ::-1]), "inv": tf.bitwise.invert(ids),
                "shl": tf.bitwise.left_shift(ids, 2), "shr": tf.bitwise.right_shift(ids, 1)}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    x = np.array([[0.5, 1.5, 2.5, -0.5], [-1.5, 2.4999, 3.0, 3.0], [0.0, -2.5, 1e-7, 100.0]], np.float32)
    ids = np.array([[1, 5, 7, 2], [9, 9, 0, 12], [3, 3, 3, 3]], np.int64)
    for rows in (slice(None), slice(0, 1)):
        model.check({"x": x[rows], "ids": ids[rows]}, (x[rows], ids[rows]), f"rows {rows}")
    # argmin over an empty axis 0: TF's InvalidArgumentError
    model.check({"x": x[:0], "ids": ids[:0]}, (x[:0], ids[:0]), "B = 0")


def test_ragged_bincount_multi_hot_and_count(no_fallback):
    """Keras 3 StringLookup(output_mode='multi_hot' / 'count') over split tokens and tf.math.bincount of a ragged
    tensor (RaggedBincount, unsupported before): per-row counts padded from the longest row; values past the
    size ignored, a negative value TF's error; weights; B = 0 and all-empty rows."""
    import keras
    import tensorflow as tf

    vocab = ["a", "b", "c"]
    multi = keras.layers.StringLookup(vocabulary=vocab, output_mode="multi_hot")
    count = keras.layers.StringLookup(vocabulary=vocab, output_mode="count")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def strings(tags):
        tokens = tf.strings.split(tags, sep=",")
        return {"multi": multi(tokens), "count": count(tokens)}

    model = FunctionModel(strings.get_concrete_function(), passes=False)
    tags = np.array([b"a,b,a", b"", b"c,zz,c,c", b"b"], object)
    for feed in (tags, tags[1:2], tags[:0]):
        model.check({"tags": feed}, (feed,), f"{len(feed)} rows")

    spec = tf.RaggedTensorSpec([None, None], tf.int64, ragged_rank=1, row_splits_dtype=tf.int64)

    @tf.function(input_signature=[spec, tf.TensorSpec([None], tf.float32)])
    def ids(r, w):
        rw = tf.RaggedTensor.from_row_splits(w, r.row_splits)
        return {"n": tf.math.bincount(r, minlength=5, maxlength=5, axis=-1),
                "w": tf.math.bincount(r, weights=rw, minlength=5, maxlength=5, axis=-1),
                "b": tf.math.bincount(r, minlength=5, maxlength=5, axis=-1, binary_output=True)}

    model = FunctionModel(ids.get_concrete_function(), passes=False)
    for values, splits in (([1, 1, 4, 7, 0], [0, 3, 3, 5]), ([], [0, 0]), ([2, -1], [0, 2])):
        values, splits = np.array(values, np.int64), np.array(splits, np.int64)
        w = np.linspace(0.5, 2.0, len(values)).astype(np.float32)
        model.check({"r": (values, splits), "w": w}, (tf.RaggedTensor.from_row_splits(values, splits), w),
                    f"values {values} splits {splits}")


def test_ragged_to_sparse_into_embedding_lookup_sparse(no_fallback):
    """RaggedTensor.to_sparse() feeding tf.nn.embedding_lookup_sparse (RaggedTensorToSparse, unsupported before):
    the sparse tensor itself and the pooled embeddings, empty rows, B = 0, an id past the table (TF's error)."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(73).normal(size=(12, 3)).astype(np.float32))
    spec = tf.RaggedTensorSpec([None, None], tf.int64, ragged_rank=1, row_splits_dtype=tf.int64)

    @tf.function(input_signature=[spec])
    def serve(r):
        sp = r.to_sparse()
        return {"idx": sp.indices, "vals": sp.values, "shape": sp.dense_shape,
                "e": tf.nn.embedding_lookup_sparse(table, sp, None, combiner="mean")}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    for values, splits in (([5, 6, 11], [0, 2, 2, 3]), ([1, 2, 3, 4], [0, 4]), ([], [0]), ([], [0, 0, 0]),
                           ([3, 12], [0, 1, 2])):
        values, splits = np.array(values, np.int64), np.array(splits, np.int64)
        model.check({"r": (values, splits)}, (tf.RaggedTensor.from_row_splits(values, splits),),
                    f"values {values} splits {splits}")


def test_searchsorted_buckets_by_per_row_boundaries(no_fallback):
    """tf.searchsorted (LowerBound / UpperBound, unsupported before): a price bucketized by each row's own
    boundaries, the bucket's embedding summed, both sides, int32 / int64 ids. Compared with TF: NaN prices (left:
    0, right: past the end), infinities, repeated boundaries, rows that are not sorted or hold NaN (TF's binary
    search, step for step), B = 0, and boundaries and values of different batches (TF's error)."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(5).normal(size=(6, 3)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 5], tf.float32), tf.TensorSpec([None, None], tf.float32)])
    def serve(bounds, price):
        left = tf.searchsorted(bounds, price, side="left", out_type=tf.int64)
        right = tf.searchsorted(bounds, price, side="right")
        return {"left": left, "right": right, "e": tf.reduce_sum(tf.gather(table, right), axis=1)}

    model = FunctionModel(serve.get_concrete_function())
    rng = np.random.default_rng(0)
    bounds = np.sort(rng.integers(0, 6, size=(4, 5)).astype(np.float32), axis=1)
    price = rng.integers(-1, 7, size=(4, 6)).astype(np.float32)
    price[0, :3] = [np.nan, np.inf, -np.inf]
    shuffled = rng.normal(size=(4, 5)).astype(np.float32)
    shuffled[1, 2] = np.nan
    for b, p, what in ((bounds, price, "sorted rows"), (shuffled, price, "unsorted rows, NaN"),
                       (bounds[:0], price[:0], "B = 0"), (bounds, price[:3], "batches differ")):
        model.check({"bounds": b, "price": p}, (b, p), what)


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_searchsorted_at_the_bounds_of_integer_dtypes(no_fallback, dtype):
    """Integer LowerBound / UpperBound with the dtype's extremes as boundaries and values, rows of 1 to 17."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, None], dtype), tf.TensorSpec([None, 4], dtype)])
    def serve(seq, x):
        return {"l": tf.searchsorted(seq, x, side="left"), "r": tf.searchsorted(seq, x, side="right")}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    info, rng = np.iinfo(dtype), np.random.default_rng(1)
    for n in (1, 2, 5, 17):
        seq = np.sort(rng.integers(info.min, info.max, size=(2, n), endpoint=True, dtype=dtype), axis=1)
        seq[0, 0], seq[1, -1] = info.min, info.max
        x = np.array([[info.min, info.max, seq[0, 0], 0], [seq[1, -1], -1, info.max, info.min]], dtype)
        model.check({"seq": seq, "x": x}, (seq, x), f"rows of {n}")


@pytest.mark.parametrize("op", ["cumprod", "cumsum"])
@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_cumulative_products_and_sums(no_fallback, op, exclusive, reverse):
    """tf.math.cumprod (Cumprod, unsupported before; one converter with Cumsum): a decay weight per position of
    a behaviour sequence, over floats and ints, exclusive / reverse. Folded in TF's order, so the imported model
    is bit-exact on the CPU (NaN, -0.0 and infinities included); B = 0."""
    import tensorflow as tf

    fn = getattr(tf.math, op)
    table = tf.constant(np.random.default_rng(2).normal(size=(7, 3)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32), tf.TensorSpec([None, 6], tf.int64)])
    def serve(decay, ids):
        w = fn(decay, axis=1, exclusive=exclusive, reverse=reverse)
        return {"w": w, "k": fn(ids, axis=-1, exclusive=exclusive, reverse=reverse),
                "e": tf.reduce_sum(tf.gather(table, ids) * w[..., None], axis=1)}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    rng = np.random.default_rng(3)
    decay = rng.uniform(0.5, 1.5, size=(3, 6)).astype(np.float32)
    decay[1, 2], decay[2, 0], decay[2, 4] = np.nan, -0.0, np.inf
    ids = rng.integers(0, 7, size=(3, 6))
    for d, i, what in ((decay, ids, "B = 3"), (decay[:0], ids[:0], "B = 0")):
        got = model.check({"decay": d, "ids": i}, (d, i), what)
        np.testing.assert_array_equal(got["imported"]["w"], model.tf(d, i)["w"])  # bit for bit (NaN == NaN)


def _sparse_rows(rows, width=None):
    """(indices, values, dense_shape) of id lists in row-major order."""
    idx = np.array([[r, j] for r, row in enumerate(rows) for j in range(len(row))], np.int64).reshape(-1, 2)
    width = max([len(r) for r in rows] + [0]) if width is None else width
    return idx, np.array([v for row in rows for v in row], np.int64), np.array([len(rows), width], np.int64)


def test_sparse_concat_of_id_features_before_embedding_lookup(no_fallback):
    """tf.sparse.concat(axis=1) of three sparse id features into one embedding_lookup_sparse (SparseConcat,
    unsupported before): the merged SparseTensor (TF's row-major order, which the segment mean reads) and the
    pooled embeddings. Empty rows, B = 0, an input out of order with a repeated index (TF sorts it), and
    features of different batches (TF's error)."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(81).normal(size=(10, 3)).astype(np.float32))
    spec = tf.SparseTensorSpec([None, None], tf.int64)

    @tf.function(input_signature=[spec, spec, spec])
    def serve(a, b, c):
        m = tf.sparse.concat(axis=1, sp_inputs=[a, b, c])
        return {"idx": m.indices, "vals": m.values, "shape": m.dense_shape,
                "e": tf.nn.embedding_lookup_sparse(table, m, None, combiner="mean")}

    model = FunctionModel(serve.get_concrete_function())
    shuffled = (np.array([[1, 0], [0, 1], [0, 0], [0, 1]], np.int64), np.array([1, 2, 3, 4], np.int64),
                np.array([2, 2], np.int64))
    cases = [([[1, 2], [], [3]], [[4], [5, 6], []], [[7], [8], [9, 9]]), ([[9]], [[]], [[]]), ([], [], []),
             (shuffled, [[5], [6]], [[7, 8], []]), ([[1]], [[2], [3]], [[4]])]
    for case in cases:
        feeds = [x if isinstance(x, tuple) else _sparse_rows(x) for x in case]
        model.check(dict(zip("abc", feeds)), tuple(tf.SparseTensor(*f) for f in feeds), str(case))


def test_concat_of_two_ragged_id_lists(no_fallback):
    """tf.concat of two RaggedTensors along axis 1 (one id list per row from two features), gathered and
    summed: TF writes RaggedGather over the two row partitions, interleaved (unsupported before). The merged
    values and row splits, and the embedding sums; empty rows, B = 0, an id past the table and features of
    different batches (TF's errors)."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(73).normal(size=(12, 3)).astype(np.float32))
    vec = tf.TensorSpec([None], tf.int64)

    @tf.function(input_signature=[vec, vec, vec, vec])
    def serve(a, a_splits, b, b_splits):
        r = tf.concat([tf.RaggedTensor.from_row_splits(a, a_splits),
                       tf.RaggedTensor.from_row_splits(b, b_splits)], axis=1)
        return {"vals": r.values, "splits": r.row_splits, "e": tf.reduce_sum(tf.gather(table, r), axis=1)}

    model = FunctionModel(serve.get_concrete_function())
    for a, a_splits, b, b_splits in (([1, 2], [0, 2, 2], [3], [0, 0, 1]), ([1, 2, 3], [0, 3], [4, 5], [0, 2]),
                                     ([], [0, 0, 0], [], [0, 0, 0]), ([], [0], [], [0]),
                                     ([1, 2, 13], [0, 1, 3], [4, 5], [0, 1, 2]), ([1, 2], [0, 2], [4, 5], [0, 1, 2])):
        feeds = {k: np.array(v, np.int64) for k, v in zip(("a", "a_splits", "b", "b_splits"),
                                                            (a, a_splits, b, b_splits))}
        model.check(feeds, tuple(feeds.values()), str(feeds))
