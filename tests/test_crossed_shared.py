"""crossed_column (SparseCross, hashed, in the host stage) and shared embedding columns (one table, TF1), against
TensorFlow from every source, imported and fused."""

from __future__ import annotations

import numpy as np
import pytest

from recom_tvm import report
from recom_tvm.models import zoo
from recom_tvm.passes import identify_columns
from recom_tvm.runtime.cross import sparse_cross_hashed

from conftest import assert_matches_tf


@pytest.mark.parametrize("source", ["pb", "saved_model", "tf1"])
def test_crossed_columns_match_tf(compiled, source):
    spec = zoo.crossed_mix()
    for optimized in (False, True):
        c = compiled(spec, source=source, optimized=optimized)
        for batch in (1, 7, 300):
            for hostile in (False, True):
                got, exp = c.run_both(spec.sample(batch, rng=batch + hostile, hostile=hostile))
                assert_matches_tf(got, exp, f"{source} optimized={optimized} batch={batch} hostile={hostile}")


def test_crossed_columns_fuse(compiled):
    c = compiled(zoo.crossed_mix(), optimized=True)
    ops = {col.name: col.op for col in identify_columns(c.mod)}
    assert ops["a_X_b_embedding"] == ops["a_X_b_X_c_embedding"] == "recom.fused_embedding"
    assert [n["op"] for n in c.ispec.host_plan].count("SparseCross") == 3
    counts = report.relax_op_counts(c.mod)
    assert counts["recom.fused_embedding"] == 1 and counts["recom.write_slice"] == 1  # the crossed indicator
    assert report.device_syncs(c.mod) == 0


def test_sparse_cross_is_bit_exact_with_tf():
    """Random string / int / dense crosses, empty rows, unsorted rows (TF stops at the first backward row)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)

    def sparse(kind, batch, shuffle):
        cnt = rng.integers(0, 4, batch)
        rows = np.repeat(np.arange(batch), cnt)
        cols = np.concatenate([np.arange(k) for k in cnt]) if cnt.sum() else np.zeros(0, np.int64)
        idx = np.stack([rows, cols], 1).astype(np.int64).reshape(-1, 2)
        n = len(idx)
        vals = np.array([f"s{v}".encode() for v in rng.integers(0, 50, n)], dtype=object) if kind == "s" else \
            rng.integers(-5, 1000, n).astype(np.int64)
        if shuffle and n > 2:
            p = rng.permutation(n)
            idx, vals = idx[p], vals[p]
        return idx, vals, np.array([batch, max(int(cnt.max()) if batch else 1, 1)], np.int64)

    for t in range(40):
        batch = int(rng.integers(0, 6))
        sp = [sparse(rng.choice(["s", "i"]), batch, t % 5 == 0) for _ in range(int(rng.integers(1, 4)))]
        dn = [rng.integers(0, 9, (batch, int(rng.integers(1, 3)))).astype(np.int64) for _ in range(t % 2)]
        nb = int(rng.choice([0, 7, 1000]))
        ref = tf.sparse.cross_hashed(
            [tf.SparseTensor(i, tf.constant(v, tf.string if v.dtype == object else tf.int64), s) for i, v, s in sp]
            + [tf.constant(d) for d in dn], num_buckets=nb)
        idx, vals, shape = sparse_cross_hashed(sp, dn, nb, 0xDECAFCAFFE)
        np.testing.assert_array_equal(idx, ref.indices.numpy(), err_msg=str(t))
        np.testing.assert_array_equal(vals, ref.values.numpy(), err_msg=str(t))
        np.testing.assert_array_equal(shape, ref.dense_shape.numpy(), err_msg=str(t))


def test_shared_embedding_columns_tf1(compiled):
    """shared_embedding_columns (TF1 only): two columns read one table, which stays one parameter."""
    spec = zoo.shared_mix()
    for optimized in (False, True):
        c = compiled(spec, source="tf1", optimized=optimized)
        shared = {col.table for col in identify_columns(c.mod) if "shared" in col.table}
        assert len(shared) == 1
        for batch in (1, 7, 300):
            for hostile in (False, True):
                got, exp = c.run_both(spec.sample(batch, rng=batch + hostile, hostile=hostile))
                assert_matches_tf(got, exp, f"optimized={optimized} batch={batch}")
    with pytest.raises(ValueError, match="TF1 graphs only"):
        from recom_tvm.models import tf_export

        tf_export.export(spec)


@pytest.fixture(scope="module")
def cross_only():
    """A crossed embedding whose features feed nothing else: only SparseCross sees their batch sizes."""
    import tensorflow as tf

    from conftest import FunctionModel

    table = tf.constant(np.random.default_rng(4).normal(size=(40, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.SparseTensorSpec([None, None], tf.string),
                                  tf.SparseTensorSpec([None, None], tf.int64), tf.TensorSpec([None, 1], tf.int64)])
    def serve(a, b, d):
        crossed = tf.sparse.cross_hashed([a, b, d], num_buckets=40)
        e = tf.nn.embedding_lookup_sparse(table, crossed, None, combiner="sum")
        return {"embedding": e, "score": tf.reduce_sum(e, axis=1, keepdims=True)}

    return FunctionModel(serve.get_concrete_function())


def _cross_feeds(rng, batches):
    def sparse(batch, strings):
        cnt = rng.integers(1, 3, batch)
        rows = np.repeat(np.arange(batch), cnt)
        cols = np.concatenate([np.arange(k) for k in cnt]) if batch else np.zeros(0, np.int64)
        vals = rng.integers(0, 30, len(rows))
        vals = np.array([f"s{v}" for v in vals], dtype=object) if strings else vals.astype(np.int64)
        return (np.stack([rows, cols], 1).astype(np.int64).reshape(-1, 2), vals,
                np.array([batch, max(int(cnt.max()) if batch else 1, 1)], np.int64))

    a, b, d = sparse(batches[0], True), sparse(batches[1], False), rng.integers(0, 9, (batches[2], 1))
    return a, b, d.astype(np.int64)


@pytest.mark.parametrize("batches", [(4, 4, 4), (4, 6, 4), (4, 2, 4), (4, 4, 7), (5, 3, 3)])
def test_sparse_cross_checks_every_input_batch(cross_only, batches):
    """Issue 14 (3): TF's SparseCross raises "Expected batch size" for any input whose batch differs from the
    first's; the rows beyond the first input's batch were dropped silently."""
    import tensorflow as tf

    a, b, d = _cross_feeds(np.random.default_rng(sum(batches)), batches)
    tf_args = (tf.SparseTensor(a[0], tf.constant(a[1].astype(str)), a[2]), tf.SparseTensor(*b), d)
    results = cross_only.check(dict(zip(cross_only.names, (a, b, d))), tf_args, f"batches {batches}")
    if len(set(batches)) > 1:
        for name, got in results.items():
            assert "Expected batch size" in str(got), (name, got)
