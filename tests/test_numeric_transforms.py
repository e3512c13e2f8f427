"""Numeric columns with a normalizer_fn, and other transforms of a concat input, beside embedding columns:
FuseColumns reads only a real numeric feed; anything else is computed beside the kernel and written into its
slice, never dropped, and never read as a narrower buffer (issue 14, 2)."""

from __future__ import annotations

import numpy as np
import pytest

from recom_tvm import report
from recom_tvm.models.spec import NORMALIZERS, ColumnSpec, ModelSpec

from conftest import FunctionModel, assert_matches_tf

# numeric_column("x", normalizer_fn=lambda v: v / 100.0) & co., beside two embedding columns in one DenseFeatures
SPEC = ModelSpec("normalized_numeric", tuple(
    [ColumnSpec(f"n_{k}", "numeric", 2, normalizer=k) for k in sorted(NORMALIZERS)]
    + [ColumnSpec("plain", "numeric", 3),
       ColumnSpec("h", "hash_string", 4, "mean", buckets=40, ids_per_row=(0, 3)),
       ColumnSpec("i", "identity", 8, "sum", buckets=20, vocab=20, ids_per_row=(1, 2))]), top_mlp=(4,), seed=2)


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "optimized"])
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_normalized_numeric_columns_match_tf(compiled, optimized, batch):
    c = compiled(SPEC, optimized=optimized)
    for hostile in (False, True):
        got, exp = c.run_both(SPEC.sample(batch, rng=batch + hostile, hostile=hostile))
        assert_matches_tf(got, exp, f"batch={batch} hostile={hostile}")


def test_only_the_plain_numeric_feed_is_read_by_the_kernel(compiled):
    """The embedding columns and the untransformed numeric column fuse; each normalized column is written beside
    the kernel (recom.write_slice) with its transform."""
    c = compiled(SPEC, optimized=True)
    counts = report.relax_op_counts(c.mod)
    assert counts.get("recom.fused_embedding") == 1, counts
    assert counts.get("recom.write_slice") == len(NORMALIZERS), counts
    kinds = sorted(col["kind"] for col in c.ispec.fused["columns"])
    assert kinds == ["csr", "csr", "numeric"], kinds


@pytest.fixture(scope="module")
def reshaped():
    """Concat inputs that are one op away from a feed, some changing the width: tile, broadcast, a slice, a
    gather of ids [B, 2] (two rows per example, read as one [B, 2D] row)."""
    import tensorflow as tf

    rng = np.random.default_rng(5)
    t_a = tf.constant(rng.normal(size=(10, 4)).astype(np.float32))
    t_b = tf.constant(rng.normal(size=(10, 3)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, 2], tf.int64),
                                  tf.TensorSpec([None, 1], tf.float32), tf.TensorSpec([None, 4], tf.float32)])
    def serve(a, pair, x, y):
        e = tf.concat([tf.gather(t_a, a),  # fused ("one")
                       tf.reshape(tf.gather(t_b, pair), [-1, 6]),  # two rows, one [B, 6] slice
                       tf.tile(x, [1, 3]),  # [B, 1] feed -> [B, 3]
                       tf.broadcast_to(x, tf.stack([tf.shape(x)[0], 2])),
                       y[:, 1:3],  # a narrower slice of a [B, 4] feed
                       y,  # fused ("numeric")
                       tf.reshape(y, [-1, 4]) * 0.5], axis=1)
        return {"embedding": e, "score": tf.reduce_sum(e, axis=1, keepdims=True)}

    return FunctionModel(serve.get_concrete_function())


def test_width_changing_inputs_are_written_beside_the_kernel(reshaped):
    counts = report.relax_op_counts(reshaped.opt)
    assert counts.get("recom.fused_embedding") == 1 and counts.get("recom.write_slice") == 5, counts


@pytest.mark.parametrize("batch", [1, 5, 33])
def test_width_changing_inputs_match_tf(reshaped, batch):
    rng = np.random.default_rng(batch)
    args = (rng.integers(0, 10, batch).astype(np.int64), rng.integers(0, 10, (batch, 2)).astype(np.int64),
            rng.normal(size=(batch, 1)).astype(np.float32), rng.normal(size=(batch, 4)).astype(np.float32))
    reshaped.check(dict(zip(reshaped.names, args)), args, f"batch={batch}")
