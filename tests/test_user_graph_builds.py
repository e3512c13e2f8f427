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
