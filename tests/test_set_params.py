"""Parameters given after the build (`CompiledModel.set_params`): each TF table stays its own parameter even when
two start out equal, and a value of the wrong shape is refused instead of being read with the built layout
(issue 14, 6)."""

from __future__ import annotations

import numpy as np
import pytest

from recom_tvm.passes import identify_columns

from conftest import FunctionModel, assert_matches_tf, outcome


@pytest.fixture(scope="module")
def equal_tables():
    """Two embedding tables with equal initial values (zeros: an untrained checkpoint), fused with a third."""
    import tensorflow as tf

    va = tf.Variable(np.zeros((10, 4), np.float32), name="table_a")
    vb = tf.Variable(np.zeros((10, 4), np.float32), name="table_b")
    vc = tf.Variable(np.ones((7, 8), np.float32), name="table_c")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)] * 3)
    def serve(a, b, c):
        e = tf.concat([tf.gather(va, a, name="gather_a"), tf.gather(vb, b, name="gather_b"),
                       tf.gather(vc, c, name="gather_c")], axis=1)
        return {"embedding": e, "score": tf.reduce_sum(e, axis=1, keepdims=True)}

    model = FunctionModel(serve.get_concrete_function())
    return model, (va, vb, vc)


def _table_of(mod) -> dict:
    return {c.table: c for c in identify_columns(mod)}


def test_equal_tables_stay_two_parameters(equal_tables):
    model, _ = equal_tables
    tables = sorted(c.table for c in identify_columns(model.mod))
    assert len(set(tables)) == 3, tables


def test_real_weights_for_equal_tables_match_tf(equal_tables):
    """set_params with trained weights (different per table) on every build == TF with those weights."""
    model, variables = equal_tables
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=v.shape).astype(np.float32) for v in variables]
    names = {}
    for c in identify_columns(model.mod):  # the imported module's table parameter of each gather
        names[c.table] = next(i for i, n in enumerate(("gather_a", "gather_b", "gather_c")) if n in c.table)
    assert sorted(names.values()) == [0, 1, 2], names
    for var, w in zip(variables, weights):
        var.assign(w)
    try:
        for built in model.variants.values():
            built.set_params({t: weights[i] for t, i in names.items()})
        args = tuple(rng.integers(0, n, 9).astype(np.int64) for n in (10, 10, 7))
        model.check(dict(zip(model.names, args)), args, "trained weights")
    finally:
        for var, w in zip(variables, (np.zeros((10, 4)), np.zeros((10, 4)), np.ones((7, 8)))):
            var.assign(w.astype(np.float32))
        for built in model.variants.values():
            built.set_params({t: np.asarray(model.params[t]) for t in names})


def test_set_params_checks_shapes(equal_tables):
    """A table of another shape than the built one (the fused kernel's layout: rows, row length) is refused."""
    model, _ = equal_tables
    table = next(c.table for c in identify_columns(model.mod) if "gather_c" in c.table)
    for name, built in model.variants.items():
        for bad in (np.zeros((8, 8), np.float32), np.zeros((7, 4), np.float32), np.zeros(56, np.float32)):
            with pytest.raises(ValueError, match="shape"):
                built.set_params({table: bad})
        with pytest.raises(ValueError, match="float32"):
            built.set_params({table: np.zeros((7, 8), object)})
        args = tuple(np.arange(3, dtype=np.int64) for _ in range(3))
        exp = outcome(lambda: model.tf(*args))
        assert_matches_tf(built.run(dict(zip(model.names, args)))["embedding"], exp["embedding"], name)
