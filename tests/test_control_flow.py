"""Conditionals in frozen graphs against TF: TF1 `Switch` / `Merge` and functional `If` / `StatelessIf` (with the
function library), folded when the predicate is known at compile time, selected when it is not (both branches
pure), asserts inside branches checked only when their branch runs, and clear errors where neither works."""

from __future__ import annotations

import os

import numpy as np
import pytest

import recom_tvm

from conftest import assert_matches_tf


def _session_graph(build, cfv2: bool, tmp_path, name: str):
    """Build `build(tf, x) -> outputs dict` in a TF1 graph with control flow v1 or v2, freeze it; (pb, signature,
    TF runner)."""
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util

    v1 = tf.compat.v1
    saved = control_flow_util.ENABLE_CONTROL_FLOW_V2
    control_flow_util.ENABLE_CONTROL_FLOW_V2 = cfv2
    try:
        with tf.Graph().as_default() as g:
            x = v1.placeholder(tf.float32, [None, 4], name="x")
            outs = build(tf, x)
            with v1.Session(graph=g) as sess:
                gd = v1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(),
                                                                  [t.op.name for t in outs.values()])
    finally:
        control_flow_util.ENABLE_CONTROL_FLOW_V2 = saved
    ops = {n.op for n in gd.node}
    assert ({"If", "StatelessIf"} & ops) if cfv2 else ("Switch" in ops), ops
    pb = os.path.join(str(tmp_path), f"{name}_{cfv2}.pb")
    with open(pb, "wb") as f:
        f.write(gd.SerializeToString())
    sig = {"inputs": {"x": "x:0"}, "outputs": {k: t.name for k, t in outs.items()}}
    from recom_tvm.models.tf_graph import FrozenGraphRunner

    return pb, sig, FrozenGraphRunner(pb, sig)


def _check(pb, sig, ref, xs, what):
    mod, params, spec = recom_tvm.from_tensorflow(pb, signature=sig)
    for optimized in (False, True):
        model = recom_tvm.build(recom_tvm.optimize(mod) if optimized else mod, "llvm", params)
        for i, x in enumerate(xs):
            try:
                exp = ref({"x": x})
            except Exception as err:  # noqa: BLE001 - TF's InvalidArgumentError of a failed assert
                exp = err
            try:
                got = model.run({"x": x})
            except Exception as err:  # noqa: BLE001
                got = err
            label = f"{what} optimized={optimized} feed {i}"
            if isinstance(exp, Exception) or isinstance(got, Exception):
                assert_matches_tf(got, exp, label)
                continue
            for k in exp:
                assert_matches_tf(got[k], exp[k], f"{label} {k}")


def _feeds():
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(b, 4)).astype(np.float32) for b in (1, 3, 7)]
    xs.append(np.array([[np.nan, 1, 2, 3], [-np.inf, 0, -0.0, 1e-45]], np.float32))  # NaN predicate: false
    xs.append(-np.abs(xs[1]))  # the other branch of a sign predicate
    return xs


def _conds(tf, x):
    """A flag known at export (dead dropout branch), a run-time predicate with pure branches, a nested cond, a
    cond returning a constant in one branch (dead by its control edge from the pivot)."""
    training = tf.compat.v1.placeholder_with_default(False, [], name="training")
    h = tf.cond(training, lambda: tf.nn.dropout(x, rate=0.5), lambda: x)
    pos = tf.reduce_mean(x) > 0.0
    y = tf.cond(pos, lambda: h * 2.0, lambda: tf.nn.relu(h) - 1.0)
    z = tf.cond(tf.reduce_max(x) > 1.0,
                lambda: tf.cond(pos, lambda: y + 1.0, lambda: tf.constant(0.5) * y),
                lambda: tf.zeros_like(y))
    c = tf.cond(pos, lambda: tf.constant(3.0), lambda: tf.reduce_sum(x))
    return {"y": y, "z": z, "c": tf.reshape(c, [1])}


@pytest.mark.parametrize("cfv2", [False, True], ids=["switch_merge", "functional_if"])
def test_conditionals_match_tf(cfv2, tmp_path):
    pb, sig, ref = _session_graph(_conds, cfv2, tmp_path, "conds")
    _check(pb, sig, ref, _feeds(), "conds")


def _asserted(tf, x):
    """An assert guarding the output, and one inside a branch (checked only when that branch runs)."""
    check = tf.debugging.assert_less(tf.reduce_max(x), 100.0, message="x too large")
    with tf.control_dependencies([check]):
        y = tf.identity(x)
    pos = tf.reduce_min(x) > -5.0

    def guarded():
        a = tf.debugging.assert_greater(tf.reduce_sum(x), -1.0, message="sum too small")
        with tf.control_dependencies([a]):
            return y * 2.0

    return {"y": tf.cond(pos, guarded, lambda: y - 1.0)}


@pytest.mark.parametrize("cfv2", [False, True], ids=["switch_merge", "functional_if"])
def test_asserts_in_and_around_branches(cfv2, tmp_path):
    pb, sig, ref = _session_graph(_asserted, cfv2, tmp_path, "asserted")
    ok = np.ones((2, 4), np.float32)
    too_large = ok * 200.0  # the outer assert fails
    sum_small = -np.ones((2, 4), np.float32)  # the branch runs (min > -5) and its assert fails
    branch_off = np.full((2, 4), -10.0, np.float32)  # the branch does not run: its assert must not fire
    _check(pb, sig, ref, [ok, too_large, sum_small, branch_off], "asserts")


def test_impure_branch_on_run_time_predicate_is_a_clear_error(tmp_path):
    def build(tf, x):
        table = tf.constant(np.arange(40, dtype=np.float32).reshape(10, 4))
        ids = tf.cast(tf.abs(x[:, 0]), tf.int32)
        return {"y": tf.cond(tf.reduce_mean(x) > 0.0, lambda: tf.gather(table, ids), lambda: x)}

    pb, sig, _ = _session_graph(build, False, tmp_path, "impure")
    with pytest.raises(recom_tvm.RecomError, match="GatherV2.*predicate is only known at run time"):
        recom_tvm.from_tensorflow(pb, signature=sig)


def test_output_inside_an_untaken_branch_is_a_clear_error(tmp_path):
    def build(tf, x):
        from tensorflow.python.ops import control_flow_ops

        _, true_side = control_flow_ops.switch(x, tf.constant(False))
        return {"y": true_side * 2.0}

    pb, sig, _ = _session_graph(build, False, tmp_path, "dead_output")
    with pytest.raises(recom_tvm.RecomError, match="never taken"):
        recom_tvm.from_tensorflow(pb, signature=sig)


def test_called_functions_are_inlined(tmp_path):
    """A TF2 function's own graph (written as it is: no variables to freeze) keeps a nested tf.function as a
    (Stateful)PartitionedCall of the library, and the cond inside it as a StatelessIf."""
    import tensorflow as tf

    @tf.function
    def inner(v):
        return tf.cond(tf.reduce_sum(v) > 0, lambda: v * 3.0, lambda: -v)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def outer(x):
        return {"y": inner(x) + 1.0}

    cf = outer.get_concrete_function()
    gd = cf.graph.as_graph_def()
    assert {"PartitionedCall", "StatefulPartitionedCall"} & {n.op for n in gd.node}
    pb = os.path.join(str(tmp_path), "calls.pb")
    with open(pb, "wb") as f:
        f.write(gd.SerializeToString())
    sig = {"inputs": {"x": cf.inputs[0].name}, "outputs": {"y": cf.outputs[0].name}}
    from recom_tvm.models.tf_graph import FrozenGraphRunner

    _check(pb, sig, FrozenGraphRunner(pb, sig), _feeds(), "calls")
