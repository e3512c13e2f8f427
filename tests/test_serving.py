"""Serving: many threads of one process, request limits, empty batches, NaN / inf numerics, all against the
single-threaded answers and TensorFlow."""

from __future__ import annotations


import numpy as np
import pytest

import recom_tvm
from recom_tvm.models import zoo

from conftest import assert_matches_tf, in_threads

DEMO = zoo.demo()


def test_threads_give_the_single_threaded_answers(compiled):
    """8 threads x 1,000 requests of different inputs (batch 1..48, hostile or not) == one thread, bit for bit."""
    c = compiled(DEMO, optimized=True)
    requests = [DEMO.sample(1 + (k * 7) % 48, rng=1000 + k, hostile=k % 3 == 0) for k in range(64)]
    expected = [c.model.run(f)["score"] for f in requests]
    mismatches = []

    def serve(t: int) -> None:
        for i in range(1000):
            k = (i * (2 * t + 1) + t) % len(requests)
            got = c.model.run(requests[k])["score"]
            if not np.array_equal(got, expected[k]):
                mismatches.append((t, i, k))

    errors = in_threads(serve)
    assert not errors, errors[:3]
    assert not mismatches, mismatches[:5]


def test_requests_above_the_limits_are_refused(demo, monkeypatch):
    feeds = DEMO.sample(40, rng=3)
    monkeypatch.setattr(recom_tvm.config, "max_batch", 32)
    with pytest.raises(recom_tvm.RequestTooLargeError, match="batch 40 is above the serving limit 32"):
        demo.model.run(feeds)
    # a sparse feature claiming a huge batch with few entries: the output alone would be B x width floats
    monkeypatch.setattr(recom_tvm.config, "max_batch", 1 << 20)
    idx, vals, _ = feeds["tags"]
    huge = dict(feeds, tags=(idx, vals, np.array([1 << 40, 6], np.int64)))
    with pytest.raises(recom_tvm.RequestTooLargeError, match="'tags': batch 1099511627776"):
        demo.model.run(huge)
    monkeypatch.setattr(recom_tvm.config, "max_request_elements", 100)
    with pytest.raises(recom_tvm.RequestTooLargeError, match="above the serving limit 100"):
        demo.model.run(feeds)
    monkeypatch.setattr(recom_tvm.config, "max_request_elements", 1 << 27)
    assert demo.model.run(feeds)["score"].shape == (40, 1)


def test_empty_batch(demo):
    feeds = DEMO.sample(0, rng=0)
    got, exp = demo.run_both(feeds)
    assert_matches_tf(got, exp, "B=0")
    assert got.shape == (0, 1)


def test_nan_and_inf_in_numeric_columns(demo):
    """Bucketize puts NaN and +inf in the last bucket and -inf in the first (TF's upper_bound); a numeric column
    passes NaN through to the score, as TF does."""
    feeds = DEMO.sample(6, rng=2)
    feeds["age"] = np.array([[np.nan], [np.inf], [-np.inf], [0.0], [95.0], [-0.0]], np.float32)
    got, exp = demo.run_both(feeds)
    assert_matches_tf(got, exp, "NaN / inf bucketized")
    assert np.isfinite(got).all()
    feeds["price"] = np.array([[np.nan], [1.0], [np.inf], [2.0], [-np.inf], [3.0]], np.float32)
    got, exp = demo.run_both(feeds)
    finite = [1, 3, 5]
    assert_matches_tf(got[finite], exp[finite], "numeric rows beside NaN / inf rows")
    assert np.isnan(got[0, 0]) and np.isfinite(got[finite]).all()
    if _tf_fused_relu_drops_nan():
        # TF disagrees with itself here: its Relu op keeps NaN, but Grappler fuses MatMul + BiasAdd + Relu into
        # _FusedMatMul, whose relu maps NaN to 0 on some CPUs (this one). We keep NaN, as the Relu op does.
        assert np.isnan(got[[0, 2]]).all()
    else:
        assert_matches_tf(got, exp, "NaN / inf numeric")


def _tf_fused_relu_drops_nan() -> bool:
    """Does TF on this machine turn NaN into 0 in a graph-mode relu(matmul + bias) (the fused kernel)?"""
    import tensorflow as tf

    f = tf.function(lambda x, w, b: tf.nn.relu(tf.matmul(x, w) + b))
    out = f(tf.constant([[np.nan, 1.0]]), tf.ones((2, 2)), tf.zeros((2,))).numpy()
    return bool(np.all(out == 0))


def test_memory_pool_is_released_after_many_shapes(compiled, monkeypatch):
    """The VM's pool caches buffers per size class; after config.pool_max_shapes distinct request shapes the
    cached ones are released (answers unchanged)."""
    c = compiled(DEMO, optimized=True)
    monkeypatch.setattr(recom_tvm.config, "pool_max_shapes", 2)
    before = c.model.pool_releases
    for b in range(101, 107):  # shapes this model has not seen
        got, exp = c.run_both(DEMO.sample(b, rng=b))
        assert_matches_tf(got, exp, f"batch {b}")
    assert c.model.pool_releases - before >= 2


def test_memory_pool_is_keyed_by_what_allocations_depend_on(compiled, monkeypatch):
    """The build records the symbols the module's allocations are sized by (the fused model's: its batch alone);
    requests of one batch whose packed lengths differ (nearly every request in production) are one size for the
    pool: no release. An unfused model's allocations depend on counts the module computes itself: every
    argument's shape keys it, as before."""
    from recom_tvm.runtime.compiled_model import pool_key_index
    from recom_tvm.runtime.spec import InputSpec

    c = compiled(DEMO, optimized=True)
    model = c.model
    symbols = model.spec.pool_symbols
    assert symbols and all(s.startswith("B_") for s in symbols), symbols
    assert InputSpec.from_json(model.spec.to_json()).pool_symbols == symbols  # exported with the model
    assert pool_key_index(model.spec) is not False
    monkeypatch.setattr(recom_tvm.config, "pool_max_shapes", 2)
    model.__dict__.pop("_shapes_seen", None)
    before = model.pool_releases
    lengths = set()
    for seed in range(8):  # batch 57 throughout, different ids per request
        feeds = DEMO.sample(57, rng=1000 + seed)
        lengths.add(tuple(np.shape(a) for a in model.prepare(feeds)))
        got, exp = c.run_both(feeds)
        assert_matches_tf(got, exp, f"seed {seed}")
    assert len(lengths) > 2  # the argument shapes did differ...
    assert model.pool_releases == before and len(model._shapes_seen) == 1  # ...the pool's key did not
    imported = compiled(DEMO).model  # sized by nnz, unique and where counts too, some computed in the module
    assert len(imported.spec.pool_symbols) > len(symbols) and pool_key_index(imported.spec) is False
