"""Serving from serialized tf.Examples: ParseExampleV2 runs in the host stage (VarLen -> sparse, FixedLen ->
dense with defaults, TF's errors for missing required features and mistyped values), from every source, and the
Estimator-style model of issue 3 (TF1, tf.Example input, vocabulary file, crossed, shared, weighted columns)."""

from __future__ import annotations

import numpy as np
import pytest

from recom_tvm import report
from recom_tvm.models import zoo
from recom_tvm.runtime.examples import serialize_examples

from conftest import assert_matches_tf

SPEC = zoo.example_mix()


@pytest.mark.parametrize("source", ["pb", "saved_model", "tf1"])
def test_example_input_matches_tf(compiled, source):
    for optimized in (False, True):
        c = compiled(SPEC, source=source, optimized=optimized)
        for batch in (1, 7, 300):
            for hostile in (False, True):
                got, exp = c.run_both(SPEC.sample(batch, rng=batch + hostile, hostile=hostile))
                assert_matches_tf(got, exp, f"{source} optimized={optimized} batch={batch} hostile={hostile}")


def test_estimator_style_model(compiled):
    spec = zoo.example_mix(estimator=True)
    for optimized in (False, True):
        c = compiled(spec, source="tf1", optimized=optimized)
        assert [f["name"] for f in c.ispec.features] == ["examples"]
        for batch in (1, 64):
            for hostile in (False, True):
                got, exp = c.run_both(spec.sample(batch, rng=batch + hostile, hostile=hostile))
                assert_matches_tf(got, exp, f"optimized={optimized} batch={batch} hostile={hostile}")
    counts = report.relax_op_counts(c.mod)
    assert counts["recom.fused_embedding"] == 1 and report.device_syncs(c.mod) == 0
    assert [n["op"] for n in c.ispec.host_plan].count("ParseExampleV2") == 1


def _features(batch=3):
    """Sampled features of SPEC (before serialization), to edit."""
    import dataclasses

    plain = dataclasses.replace(SPEC, example_input=False)
    return plain.sample(batch, rng=0)


def _serialize(feats):
    return {"examples": serialize_examples(feats, {k for k, v in feats.items() if isinstance(v, tuple)})}


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "fused"])
def test_missing_required_feature_raises_like_tf(compiled, optimized):
    c = compiled(SPEC, optimized=optimized)
    feats = _features()
    del feats["price"]  # FixedLen without a default: required
    got, exp = c.run_both(_serialize(feats))
    assert isinstance(exp, Exception)
    assert_matches_tf(got, exp)
    assert "price" in str(got) and "required" in str(got), got


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "fused"])
def test_mistyped_and_malformed_examples_raise_like_tf(compiled, optimized):
    c = compiled(SPEC, optimized=optimized)
    feats = _features()
    idx, vals, shape = feats["country"]
    feats["country"] = (idx, np.arange(len(vals), dtype=np.int64), shape)  # ints where TF wants strings
    got, exp = c.run_both(_serialize(feats))
    assert isinstance(exp, Exception)
    assert_matches_tf(got, exp)
    assert "country" in str(got), got
    good = _serialize(_features())
    good["examples"] = np.array(list(good["examples"][:2]) + [b"\xff\x00garbage"], dtype=object)
    got, exp = c.run_both(good)
    assert isinstance(exp, Exception)
    assert_matches_tf(got, exp)


def test_absent_varlen_features_are_empty_rows(compiled):
    c = compiled(SPEC, optimized=True)
    feats = _features(4)
    feats["country"] = (np.zeros((0, 2), np.int64), np.array([], dtype=object), np.array([4, 1], np.int64))
    got, exp = c.run_both(_serialize(feats))
    assert_matches_tf(got, exp)
