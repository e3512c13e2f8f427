"""Differential tests against TensorFlow: every column type and input format, at batch 1, 7 and 512, with
ordinary and hostile inputs (empty rows, negative / out-of-range / duplicate ids, a row with many ids)."""

from __future__ import annotations

import numpy as np
import pytest

from recom_tvm.models import zoo
from recom_tvm.models.spec import ColumnSpec, ModelSpec

from conftest import assert_matches_tf

TYPES = zoo.per_column_type()


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "optimized"])
@pytest.mark.parametrize("name", sorted(TYPES))
@pytest.mark.parametrize("batch", [1, 7, 512])
def test_column_type_matches_tf(compiled, name, batch, optimized):
    c = compiled(TYPES[name], optimized=optimized)
    for hostile in (False, True):
        feeds = c.spec.sample(batch, rng=batch * 10 + hostile, hostile=hostile)
        got, exp = c.run_both(feeds)
        assert not isinstance(exp, Exception), f"the sampler produced inputs TF rejects: {exp}"
        assert_matches_tf(got, exp, f"{name} batch={batch} hostile={hostile}")


@pytest.mark.parametrize("combiner", ["mean", "sum", "sqrtn"])
def test_combiners(compiled, combiner):
    spec = ModelSpec(f"comb_{combiner}", (ColumnSpec("x", "hash_int", 8, combiner, buckets=50, ids_per_row=(0, 6)),),
                     top_mlp=(4,))
    c = compiled(spec)
    for batch in (1, 7, 512):
        got, exp = c.run_both(spec.sample(batch, rng=batch, hostile=True))
        assert_matches_tf(got, exp, f"{combiner} batch={batch}")


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "optimized"])
def test_identity_without_default_out_of_range_raises_like_tf(compiled, optimized):
    c = compiled(TYPES["identity"], optimized=optimized)
    indices = np.array([[0, 0], [1, 0], [1, 1]], dtype=np.int64)
    feeds = c.spec.sample(2, rng=0)
    feeds["x"] = (indices, np.array([3, 25, 4], dtype=np.int64), np.array([2, 2], dtype=np.int64))
    got, exp = c.run_both(feeds)
    assert isinstance(exp, Exception)
    assert_matches_tf(got, exp)
    assert "not in [0, 20)" in str(got) and "x_embedding" in str(got), str(got)
    # negative ids are dropped by the feature column's filter, as in TF: no error
    feeds["x"] = (indices, np.array([3, -7, 4], dtype=np.int64), np.array([2, 2], dtype=np.int64))
    got, exp = c.run_both(feeds)
    assert_matches_tf(got, exp)


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "optimized"])
def test_identity_with_default_maps_out_of_range_to_default(compiled, optimized):
    c = compiled(TYPES["identity_default"], optimized=optimized)
    feeds = c.spec.sample(3, rng=0)
    feeds["x"] = (np.array([[0, 0], [1, 0], [2, 0]], np.int64), np.array([19, 20, 10**12], np.int64),
                  np.array([3, 1], np.int64))
    got, exp = c.run_both(feeds)
    assert_matches_tf(got, exp)


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "optimized"])
def test_all_rows_empty_and_zero_ids(compiled, optimized):
    c = compiled(TYPES["hash_string"], optimized=optimized)
    feeds = c.spec.sample(4, rng=0)
    feeds["x"] = (np.zeros((0, 2), np.int64), np.array([], dtype=object), np.array([4, 1], np.int64))
    got, exp = c.run_both(feeds)
    assert_matches_tf(got, exp)


def test_unicode_strings(compiled):
    c = compiled(TYPES["hash_string"])
    vals = np.array(["", "日本語", "emoji 🎉", "x" * 300, "a;b"], dtype=object)
    idx = np.array([[0, 0], [0, 1], [1, 0], [2, 0], [2, 1]], np.int64)
    feeds = c.spec.sample(3, rng=0)
    feeds["x"] = (idx, vals, np.array([3, 2], np.int64))
    got, exp = c.run_both(feeds)
    assert_matches_tf(got, exp)


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "optimized"])
def test_demo_model_saved_model_and_pb_agree_with_tf(compiled, optimized):
    spec = zoo.demo()
    for source in ("pb", "saved_model"):
        c = compiled(spec, source, optimized)
        for batch in (1, 64):
            got, exp = c.run_both(spec.sample(batch, rng=batch, hostile=True))
            assert_matches_tf(got, exp, f"{source} batch={batch}")


def test_export_saves_the_serving_function_without_keras_layer_traces():
    """tf_export.save_serving: tf_keras's own traces of every layer (the DenseFeatures over all columns ~12 times)
    made a 1,200-column model's export take ~13 GB; the SavedModel holds the serving function only (the test
    above runs it)."""
    from tensorflow.core.protobuf import saved_model_pb2

    from recom_tvm.models import tf_export

    sm = saved_model_pb2.SavedModel()
    with open(tf_export.export(zoo.demo())["saved_model"] + "/saved_model.pb", "rb") as f:
        sm.ParseFromString(f.read())
    names = [fn.signature.name for fn in sm.meta_graphs[0].graph_def.library.function]
    assert not [n for n in names if "layer_call" in n], names
    assert any("lambda" in n for n in names) and "serving_default" in sm.meta_graphs[0].signature_def, names


@pytest.mark.parametrize("name", ["hash_int", "identity", "identity_default", "indicator_identity_default"])
def test_unsorted_sparse_rows_match_tf(compiled, name):
    """TF's SparseFillEmptyRows sorts by row; the optimized module gets the same answer by sorting on the host."""
    for optimized in (False, True):
        c = compiled(TYPES[name], optimized=optimized)
        feeds = c.spec.sample(6, rng=3)
        idx, vals, shape = feeds["x"]
        perm = np.random.default_rng(0).permutation(len(vals))
        feeds["x"] = (idx[perm], vals[perm], shape)
        got, exp = c.run_both(feeds)
        assert_matches_tf(got, exp, f"{name} optimized={optimized}")


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "optimized"])
def test_indicator_rejects_repeated_indices_like_tf(compiled, optimized):
    """indicator_column's SparseToDense validates its indices: repeated ones are TF's InvalidArgumentError."""
    c = compiled(TYPES["indicator_identity_default"], optimized=optimized)
    feeds = c.spec.sample(3, rng=0)
    feeds["x"] = (np.array([[0, 0], [1, 0], [1, 0]], np.int64), np.array([1, 2, 3], np.int64),
                  np.array([3, 2], np.int64))
    got, exp = c.run_both(feeds)
    assert isinstance(exp, Exception)
    assert_matches_tf(got, exp)
    assert "is repeated" in str(got), got
