"""Bad inputs give clear errors naming the feed, never a crash or a wrong answer."""

from __future__ import annotations

import numpy as np
import pytest

import recom_tvm
from recom_tvm.models import zoo

from conftest import assert_matches_tf, outcome

DEMO = zoo.demo()


def _feeds(batch=3):
    return DEMO.sample(batch, rng=1)


def test_missing_feed(demo):
    feeds = _feeds()
    del feeds["tags"]
    with pytest.raises(recom_tvm.FeedError, match="missing feed for feature tags"):
        demo.model.run(feeds)


def test_unknown_feed(demo):
    feeds = _feeds()
    feeds["nope"] = np.zeros(3)
    with pytest.raises(recom_tvm.FeedError, match=r"unknown feed\(s\) \['nope'\]"):
        demo.model.run(feeds)


def test_wrong_dtype(demo):
    feeds = _feeds()
    idx, vals, shape = feeds["category"]
    feeds["category"] = (idx, vals.astype(np.float32) + 0.5, shape)
    with pytest.raises(recom_tvm.FeedError, match="category.values.*int64"):
        demo.model.run(feeds)
    feeds = _feeds()
    feeds["age"] = feeds["age"].astype(object).astype(str)
    with pytest.raises(recom_tvm.FeedError, match="'age' must be float32"):
        demo.model.run(feeds)
    feeds = _feeds()
    idx, vals, shape = feeds["country"]
    feeds["country"] = (idx, np.arange(len(vals)), shape)  # ints where TF wants strings
    with pytest.raises(recom_tvm.FeedError, match="must hold strings"):
        demo.model.run(feeds)


def test_sparse_components_for_a_dense_feature(demo):
    """A SparseTensor's (indices, values, dense_shape) given for a dense input: a FeedError, not numpy's
    ValueError (seen with a Keras model exported with a dense signature for a sparse keras.Input)."""
    feeds = _feeds()
    feeds["age"] = (np.zeros((2, 2), np.int64), np.ones(2, np.float32), np.array([3, 1], np.int64))
    with pytest.raises(recom_tvm.FeedError, match="'age' must be one float32 array"):
        demo.model.run(feeds)


def test_lossless_casts_are_accepted(demo):
    feeds = _feeds()
    idx, vals, shape = feeds["category"]
    ref = demo.model.run(feeds)["score"]
    feeds["category"] = (idx.astype(np.int32), vals.astype(np.int32), shape.astype(np.int32))
    np.testing.assert_array_equal(demo.model.run(feeds)["score"], ref)


def test_wrong_rank_and_static_dim(demo):
    feeds = _feeds()
    feeds["age"] = feeds["age"].reshape(-1)
    with pytest.raises(recom_tvm.FeedError, match="'age' must have rank 2"):
        demo.model.run(feeds)
    feeds = _feeds()
    feeds["dense"] = np.zeros((3, 5), np.float32)
    with pytest.raises(recom_tvm.FeedError, match=r"'dense' must have shape \[\?, 4\]"):
        demo.model.run(feeds)


def test_indices_outside_dense_shape(demo):
    feeds = _feeds()
    idx, vals, shape = feeds["tags"]
    idx = idx.copy()
    idx[0, 0] = 3  # batch is 3: row 3 does not exist
    feeds["tags"] = (idx, vals, shape)
    with pytest.raises(recom_tvm.InvalidArgumentError, match=r"tags.*out of bounds of dense_shape \[3, \d+\]"):
        demo.model.run(feeds)
    idx[0, 0] = -1
    with pytest.raises(recom_tvm.InvalidArgumentError, match="out of bounds"):
        demo.model.run(feeds)


def test_nnz_mismatch(demo):
    feeds = _feeds()
    idx, vals, shape = feeds["tags"]
    feeds["tags"] = (idx, vals[:-1], shape)
    with pytest.raises(recom_tvm.FeedError, match=r"tags.*\d+ indices but \d+ values"):
        demo.model.run(feeds)


def test_batch_mismatch_between_features(demo):
    """TF raises in the concat of the columns; so do we, before launch, naming the op."""
    feeds = _feeds(3)
    feeds["age"] = DEMO.sample(5, rng=2)["age"]
    got, exp = demo.run_both(feeds)
    assert isinstance(exp, Exception)
    with pytest.raises(recom_tvm.InvalidArgumentError, match="must be equal|inconsistent sizes"):
        demo.model.run(feeds)


def test_malformed_sparse_feed(demo):
    feeds = _feeds()
    feeds["tags"] = np.zeros((3, 2))
    with pytest.raises(recom_tvm.FeedError, match="sparse feature 'tags'"):
        demo.model.run(feeds)
    feeds["tags"] = {"indices": np.zeros((0, 2), np.int64), "values": np.array([], object)}
    with pytest.raises(recom_tvm.FeedError, match="lacks"):
        demo.model.run(feeds)


def test_sparse_tensor_like_objects_and_placeholder_names(demo):
    class ST:  # anything with .indices / .values / .dense_shape, like tf.SparseTensor
        def __init__(self, triple):
            self.indices, self.values, self.dense_shape = triple

    feeds = _feeds()
    ref = demo.model.run(feeds)["score"]
    obj = dict(feeds)
    obj["tags"] = ST(feeds["tags"])
    np.testing.assert_array_equal(demo.model.run(obj)["score"], ref)
    by_placeholder = {k: v for k, v in feeds.items() if k != "tags"}
    tensors = demo.ispec.feature("tags")["tensors"]
    for part, value in zip(("indices", "values", "dense_shape"), feeds["tags"]):
        by_placeholder[tensors[part].split(":")[0]] = value
    np.testing.assert_array_equal(demo.model.run(by_placeholder)["score"], ref)


def test_feed_dtypes_never_wrap(demo):
    """Issue 14 (5): a feed of another integer dtype passes only when every value converts exactly; uint64
    2**64 - 1 is not the id -1 (a "missing" id). TF's typed signature refuses the dtype: a FeedError here."""
    import tensorflow as tf

    from recom_tvm.models import tf_export

    feeds = _feeds()
    idx, vals, shape = feeds["category"]
    ref = demo.model.run(feeds)["score"]
    feeds["category"] = (idx, vals.astype(np.uint64), shape)  # exact: the same answer
    np.testing.assert_array_equal(demo.model.run(feeds)["score"], ref)
    wrapped = vals.astype(np.uint64)
    wrapped[0] = np.uint64(2**64 - 1)
    feeds["category"] = (idx, wrapped, shape)
    got = outcome(lambda: demo.model.run(feeds))
    tf_feeds = tf_export.to_tf_feeds(DEMO, _feeds())
    st = tf_feeds["category"]
    tf_feeds["category"] = tf.SparseTensor(st.indices, tf.constant(wrapped), st.dense_shape)
    assert_matches_tf(got, outcome(lambda: demo.ref.run_tf(tf_feeds)), "uint64 ids")
    assert "category.values" in str(got) and "do not fit" in str(got), got


@pytest.mark.parametrize("value,dtype", [(np.array([2**32 - 1], np.uint32), "int32"),
                                         (np.array([2**40], np.int64), "int32"),
                                         (np.array([-1], np.int64), "uint64"),
                                         (np.array([0.1]), "float32")])
def test_inexact_dtype_conversions_are_refused(value, dtype):
    """Issue 14 (5): the dtype rules of recom_tvm.runtime.feeds, one by one (a wrap or a rounding is refused)."""
    from recom_tvm.runtime.feeds import _convert

    with pytest.raises(recom_tvm.FeedError, match="do not fit"):
        _convert("x", value, dtype, [-1])
    assert _convert("x", value[:0], dtype, [-1]).dtype == np.dtype(dtype)  # empty: nothing to lose


def test_float_array_for_a_string_feed(demo):
    """Issue 14 (5): np.dtype("float64") == None holds, so a float64 array once passed the string feed's dtype
    check and was hashed as if it were strings."""
    feeds = _feeds()
    idx, vals, shape = feeds["country"]
    feeds["country"] = (idx, np.arange(len(vals), dtype=np.float64), shape)
    with pytest.raises(recom_tvm.FeedError, match="country.values.*must hold strings"):
        demo.model.run(feeds)


def test_module_inputs_are_not_cast_with_a_wrap(compiled):
    """Issue 14 (5): the module's inputs are the host stage's arrays; one of another dtype than the module
    declares is converted only when exact (a host stage that produced uint64 ids would otherwise wrap them).
    (The imported module: the optimized one takes its ids packed, by recom_tvm.runtime.packer.)"""
    from recom_tvm.runtime.compiled_model import host_env

    model = compiled(DEMO).model
    env = host_env(model.spec, _feeds())
    inp = next(i for i in model.spec.module_inputs if i["source"] != "param" and i["kind"] == "tensor"
               and i["dtype"] == "int64" and i["ref"] in env and np.size(env[i["ref"]]))
    env[inp["ref"]] = np.full(np.shape(env[inp["ref"]]), 2**64 - 1, np.uint64)
    with pytest.raises(recom_tvm.FeedError, match="do not fit"):
        model.arguments(env)
