"""Segment reductions and GatherNd over indices the user feeds: TF-CPU checks them (range, sortedness) and raises
InvalidArgumentError; so does every build, instead of reading out of bounds or answering from unsorted segments
(issue 14, 7)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FunctionModel

ROWS = 9


@pytest.fixture(scope="module")
def segments():
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(2).normal(size=(ROWS, 3)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None], tf.int32)])
    def serve(idx, seg, data, dseg):
        return {"sparse_mean": tf.sparse.segment_mean(table, idx, seg),
                "sparse_sum_n": tf.sparse.segment_sum(table, idx, seg, num_segments=6),
                "sum": tf.math.segment_sum(data, dseg),
                "max": tf.math.segment_max(data, dseg)}

    return FunctionModel(serve.get_concrete_function())


def _run(model, idx, seg, data, dseg, what):
    args = tuple(np.asarray(a, np.float32 if i == 2 else np.int32) for i, a in enumerate((idx, seg, data, dseg)))
    return model.check(dict(zip(model.names, args)), args, what)


GOOD = dict(idx=[0, 3, 3, 8, 1], seg=[0, 0, 2, 2, 5], data=np.arange(12).reshape(4, 3), dseg=[0, 1, 1, 3])


def test_sorted_in_range_segments_match_tf(segments):
    _run(segments, **GOOD, what="valid")


@pytest.mark.parametrize("case,change", [
    ("index past the table", dict(idx=[0, 3, 3, ROWS, 1])),
    ("negative index", dict(idx=[0, 3, -1, 8, 1])),
    ("unsorted segment ids", dict(seg=[0, 2, 0, 2, 5])),
    ("negative segment id", dict(seg=[-1, 0, 2, 2, 5])),
    ("segment id >= num_segments", dict(seg=[0, 0, 2, 2, 6])),
    ("unsorted dense segment ids", dict(dseg=[1, 0, 1, 3])),
    ("negative dense segment id", dict(dseg=[-1, 0, 1, 3])),
])
def test_bad_segment_inputs_raise_like_tf(segments, case, change):
    results = _run(segments, **{**GOOD, **change}, what=case)
    assert all(isinstance(r, Exception) for r in results.values()), results


@pytest.fixture(scope="module")
def gather_nd():
    import tensorflow as tf

    table = tf.constant(np.arange(24, dtype=np.float32).reshape(4, 6))

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.int64), tf.TensorSpec([None, 1], tf.int32)])
    def serve(pairs, rows):
        return {"cells": tf.gather_nd(table, pairs), "rows": tf.gather_nd(table, rows)}

    return FunctionModel(serve.get_concrete_function())


@pytest.mark.parametrize("pairs,rows", [([[0, 0], [3, 5], [2, 1]], [[3], [0]]),
                                        ([[0, 0], [4, 0]], [[1]]), ([[0, 6]], [[1]]), ([[-1, 0]], [[1]]),
                                        ([[1, 1]], [[4]]), ([[1, 1]], [[-2]])])
def test_gather_nd_checks_indices_like_tf(gather_nd, pairs, rows):
    args = (np.asarray(pairs, np.int64).reshape(-1, 2), np.asarray(rows, np.int32).reshape(-1, 1))
    gather_nd.check(dict(zip(gather_nd.names, args)), args, f"pairs={pairs} rows={rows}")


@pytest.fixture(scope="module")
def bag_without_unique():
    """SparseFillEmptyRows + SparseSegmentSum straight over the table (no Unique / gather) + the empty-row Select:
    EliminateRedundancy makes it a bag; the ids are the segment op's indices, which TF range-checks."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(8).normal(size=(ROWS, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.SparseTensorSpec([None, None], tf.int64)])
    def serve(ids):
        filled, empty = tf.sparse.fill_empty_rows(ids, tf.constant(0, tf.int64))
        e = tf.sparse.segment_sum(table, filled.values, filled.indices[:, 0])
        e = tf.compat.v1.where(tf.tile(tf.reshape(empty, [-1, 1]), tf.stack([1, tf.shape(e)[1]])),
                               tf.zeros_like(e), e)
        return {"embedding": e}

    return FunctionModel(serve.get_concrete_function())


def test_bag_without_unique_is_a_bag(bag_without_unique):
    from recom_tvm import report

    counts = report.relax_op_counts(bag_without_unique.passes)
    assert counts.get("recom.embedding_bag") == 1 and not counts.get("recom.sparse_segment_reduce"), counts


@pytest.mark.parametrize("bad", [None, ROWS, -1])
def test_bag_without_unique_checks_ids_like_tf(bag_without_unique, bad):
    import tensorflow as tf

    idx = np.array([[0, 0], [0, 1], [2, 0], [3, 0]], np.int64)
    vals = np.array([1, 4, 8, 2], np.int64)
    if bad is not None:
        vals[2] = bad
    feeds = (idx, vals, np.array([5, 2], np.int64))
    bag_without_unique.check({bag_without_unique.names[0]: feeds}, (tf.SparseTensor(*feeds),), f"id {bad}")


@pytest.fixture(scope="module")
def masked_dense_ids():
    """Dense id feeds of int32 / int64 padded with -1, turned sparse by hand (tf.where(ids != -1) + gather_nd),
    as users write it without feature columns; a float feed the same way, summed per row."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(1).normal(size=(ROWS, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.int32), tf.TensorSpec([None, 4], tf.float32),
                                  tf.TensorSpec([None, 3], tf.int64)])
    def serve(ids, w, ids64):
        def sparse(x, pad):
            idx = tf.where(tf.not_equal(x, pad))
            return tf.SparseTensor(idx, tf.gather_nd(x, idx), tf.shape(x, out_type=tf.int64))

        return {"sum32": tf.nn.safe_embedding_lookup_sparse(table, sparse(ids, -1), combiner="sum"),
                "w": tf.sparse.reduce_sum(sparse(w, 0.5), axis=1),
                "mean64": tf.nn.safe_embedding_lookup_sparse(table, sparse(ids64, -1), combiner="mean")}

    return FunctionModel(serve.get_concrete_function())


@pytest.mark.parametrize("batch,low", [(1, -1), (7, -1), (64, -1), (3, -3), (3, ROWS)])
def test_masked_int32_ids_match_tf(masked_dense_ids, batch, low):
    """int32 ids through a mask: optimize() crashed here (the redundancy rules bound an id variable to +-2^40,
    not a constant of int32). low = -3: negative ids TF prunes; ROWS: ids past the table (TF's error)."""
    rng = np.random.default_rng(batch)
    ids = rng.integers(-1, ROWS, size=(batch, 4)).astype(np.int32)
    ids[0, 0] = low
    args = (ids, rng.choice([0.5, 1.0, 2.0], size=(batch, 4)).astype(np.float32),
            rng.integers(-1, ROWS, size=(batch, 3)).astype(np.int64))
    masked_dense_ids.check(dict(zip(masked_dense_ids.names, args)), args, f"B={batch} low={low}")
