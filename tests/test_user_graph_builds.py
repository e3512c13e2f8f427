"""User-written TF graphs that imported but failed in `recom_tvm.build` (TVM's lowering), each checked against TF
imported, through the passes and optimized, at several batches (1 included) with empty rows."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FunctionModel

# ---------------------------------------------------------------------------------- sparse_dense_matmul
# tf.sparse.sparse_dense_matmul(sp, W) with sp's dense shape fed: the converter matched the constant W to the
# fed inner dim with a match_cast, which TVM's KillAfterLastUse then killed as if it had a VM register (codegen:
# "Expected the object to be killed to be stored in a register ... kConstIdx"). The inner dim is now checked on
# the host (TF's "inner dimension does not match").


@pytest.fixture(scope="module")
def sparse_matmul():
    import tensorflow as tf

    w = tf.constant(np.arange(8, dtype=np.float32).reshape(4, 2))

    @tf.function(input_signature=[tf.SparseTensorSpec([None, 4], tf.float32)])
    def serve(x):
        return {"lin": tf.sparse.sparse_dense_matmul(x, w),
                "lin_t": tf.sparse.sparse_dense_matmul(x, tf.transpose(w), adjoint_b=True)}

    return FunctionModel(serve.get_concrete_function())


def _sparse(rows: list[list[tuple[int, float]]], width: int = 4):
    idx = np.array([[r, c] for r, row in enumerate(rows) for c, _ in row], np.int64).reshape(-1, 2)
    val = np.array([v for row in rows for _, v in row], np.float32)
    return idx, val, np.array([len(rows), width], np.int64)


@pytest.mark.parametrize("rows", [
    [[(1, 1.0), (3, 2.0)], [], [(0, -1.0)]],                       # B = 3, an empty row between
    [[(2, 0.5)]],                                                   # B = 1
    [[]],                                                           # B = 1, its row empty (no entries at all)
    [[], [(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0)], [], [], [(3, -2.0)], []],  # B = 6, empty rows at both ends
], ids=["b3", "b1", "b1_empty", "b6"])
def test_sparse_dense_matmul_with_fed_dense_shape(sparse_matmul, rows):
    import tensorflow as tf

    idx, val, shape = _sparse(rows)
    sparse_matmul.check({sparse_matmul.names[0]: (idx, val, shape)}, (tf.SparseTensor(idx, val, shape),),
                        f"B={len(rows)}")


@pytest.mark.parametrize("width", [3, 5])
def test_sparse_dense_matmul_inner_dimension_mismatch_raises_like_tf(sparse_matmul, width):
    """A dense shape whose inner dim is not W's rows: TF's InvalidArgumentError (an index out of a narrower
    shape: TF's error on the index)."""
    import tensorflow as tf

    idx, val, shape = _sparse([[(0, 1.0)], [(2, 2.0)]], width)
    results = sparse_matmul.check({sparse_matmul.names[0]: (idx, val, shape)}, (tf.SparseTensor(idx, val, shape),),
                                  f"width {width}")
    assert all(isinstance(r, Exception) for r in results.values()), results


# ------------------------------------------------------------------ embedding_lookup_sparse, ragged weights
# tf.nn.embedding_lookup_sparse over RaggedTensor ids with RaggedTensor weights, combiner mean: the weights' segment
# sum casts the ids' data-dependent row count (Where_count) to the weights' count. TVM's CanonicalizeBindings (in
# KillAfterLastUse) substituted nnz_w -> Where_count after it had removed Where_count's own cast (an alias of the
# legalized where's where_count): VMShapeLower failed with "PrimExpr Where_count * T.int64(8) ... has not been
# computed". recom_tvm.backend.symbol_aliases substitutes such aliases before it.


@pytest.fixture(scope="module")
def ragged_weighted():
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.RaggedTensorSpec([None, None], tf.int64),
                                  tf.RaggedTensorSpec([None, None], tf.float32)])
    def serve(ids, weights):
        return {"mean": tf.nn.embedding_lookup_sparse(table, ids, weights, combiner="mean")}

    return FunctionModel(serve.get_concrete_function())


@pytest.mark.parametrize("rows", [
    [[1, 4], [], [8, 19]],                # B = 3, an empty row between
    [[7]],                                # B = 1
    [[]],                                 # B = 1, its row empty
    [[], [2, 2, 5], [0], [], [11, 3]],    # B = 5, empty rows first and inside, a duplicate id
], ids=["b3", "b1", "b1_empty", "b5"])
def test_ragged_weighted_lookup_sparse_mean(ragged_weighted, rows):
    import tensorflow as tf

    splits = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    ids = np.array([i for r in rows for i in r], np.int64)
    weights = (np.arange(len(ids), dtype=np.float32) + 1) * 0.5
    tf_args = (tf.RaggedTensor.from_row_splits(ids, splits), tf.RaggedTensor.from_row_splits(weights, splits))
    ragged_weighted.check(dict(zip(ragged_weighted.names, [(ids, splits), (weights, splits)])), tf_args,
                          f"B={len(rows)}")


def test_ragged_weighted_lookup_sparse_weights_count_mismatch_raises_like_tf(ragged_weighted):
    """Weights fewer than the ids: TF's InvalidArgumentError (weights of other row splits but as many: TF's
    answer, the ids' rows deciding)."""
    import tensorflow as tf

    ids, splits = np.array([1, 4, 8, 19], np.int64), np.array([0, 2, 2, 4], np.int64)
    for weights, w_splits, raises in ((np.array([0.5, 2.0, 1.0], np.float32), np.array([0, 1, 1, 3], np.int64), True),
                                      (np.array([0.5, 2.0, 1.0, 3.0], np.float32), np.array([0, 1, 3, 4], np.int64),
                                       False)):
        tf_args = (tf.RaggedTensor.from_row_splits(ids, splits), tf.RaggedTensor.from_row_splits(weights, w_splits))
        results = ragged_weighted.check(dict(zip(ragged_weighted.names, [(ids, splits), (weights, w_splits)])),
                                        tf_args, f"{len(weights)} weights")
        assert all(isinstance(r, Exception) == raises for r in results.values()), results
