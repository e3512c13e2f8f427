"""weighted_categorical_column (per-id weights) against TensorFlow: TF pairs ids and weights by position, prunes
negative ids and (unless the combiner is sum) non-positive weights, and divides by sum(w) / sqrt(sum(w^2)) with
div_no_nan. The fused kernel must keep all of it, including the out-of-range error only for ids TF still sees."""

from __future__ import annotations

import numpy as np
import pytest

import recom_tvm
from recom_tvm import report
from recom_tvm.models import zoo
from recom_tvm.passes import identify_columns

from conftest import assert_matches_tf

MIX = zoo.weighted_mix()


def test_weighted_columns_fuse_into_one_kernel(compiled):
    c = compiled(MIX, optimized=True)
    cols = identify_columns(c.mod)
    assert {col.op for col in cols} == {"recom.fused_embedding"}
    assert {col.name: col.combiner for col in cols if col.name.startswith(("a_", "b_", "c_", "e_"))} == {
        "a_weighted_by_a_weight_embedding": "mean", "b_weighted_by_b_weight_embedding": "sum",
        "c_weighted_by_c_weight_embedding": "sqrtn", "e_weighted_by_e_weight_embedding": "mean"}
    assert report.device_syncs(c.mod) == 0
    assert report.relax_op_counts(c.mod)["recom.fused_embedding"] == 1


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "fused"])
@pytest.mark.parametrize("batch", [1, 7, 512])
def test_weighted_mix_matches_tf(compiled, optimized, batch):
    c = compiled(MIX, optimized=optimized)
    for hostile in (False, True):
        got, exp = c.run_both(MIX.sample(batch, rng=batch + 100 * hostile, hostile=hostile))
        assert not isinstance(exp, Exception), exp
        assert_matches_tf(got, exp, f"batch={batch} hostile={hostile}")


def _feeds_with_e(ids, weights, batch=3):
    feeds = MIX.sample(batch, rng=5)
    idx = np.array([[i % batch, i // batch] for i in range(len(ids))], np.int64)
    order = np.lexsort((idx[:, 1], idx[:, 0]))
    feeds["e"] = (idx[order], np.asarray(ids, np.int64)[order], np.array([batch, 4], np.int64))
    feeds["e_weight"] = (idx[order], np.asarray(weights, np.float32)[order], np.array([batch, 4], np.int64))
    return feeds


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "fused"])
def test_out_of_range_id_errors_only_where_tf_sees_it(compiled, optimized):
    """Identity without default: an id past the table raises in TF only if its weight survives the pruning."""
    c = compiled(MIX, optimized=optimized)
    got, exp = c.run_both(_feeds_with_e([1, 25, 4, 7], [0.5, 0.0, 2.0, 1.0]))  # 25 pruned (weight 0)
    assert not isinstance(exp, Exception), exp
    assert_matches_tf(got, exp, "pruned out-of-range id")
    got, exp = c.run_both(_feeds_with_e([1, 25, 4, 7], [0.5, -3.0, 2.0, 1.0]))  # pruned (negative weight)
    assert_matches_tf(got, exp, "negative weight")
    got, exp = c.run_both(_feeds_with_e([1, 25, 4, 7], [0.5, 0.25, 2.0, 1.0]))  # 25 kept: TF raises
    assert isinstance(exp, Exception)
    assert_matches_tf(got, exp)
    assert "not in [0, 20)" in str(got) and "e_weighted_by_e_weight_embedding" in str(got), str(got)


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "fused"])
def test_rows_whose_weights_are_all_pruned_give_zeros(compiled, optimized):
    """mean over a row with only non-positive weights: TF's div_no_nan gives 0, not NaN."""
    c = compiled(MIX, optimized=optimized)
    got, exp = c.run_both(_feeds_with_e([1, 2, 3, 4, 5, 6], [0.0, -1.0, 0.0, 2.0, 1e-30, -0.0]))
    assert_matches_tf(got, exp, "all-pruned rows")
    assert np.isfinite(got).all()


def test_weights_not_paired_with_ids_is_a_clear_error(compiled):
    c = compiled(MIX, optimized=True)
    feeds = _feeds_with_e([1, 2, 3, 4], [1.0, 1.0, 1.0, 1.0])
    idx, w, shape = feeds["e_weight"]
    feeds["e_weight"] = (idx[:3], w[:3], shape)
    with pytest.raises(recom_tvm.RecomError, match="e_weight"):
        c.model.run(feeds)
