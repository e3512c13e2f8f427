"""Conditionals and asserts as frozen graphs and SavedModels carry them: `tf.cond` on a flag known at export
(`training=False`: the dropout branch is dead) and on run-time values (both branches pure: a select), and
`tf.debugging.assert_*` guards, in four forms: TF1 control flow (`Switch` / `Merge` in a Session graph), control
flow v2 in a Session graph (`If` / `StatelessIf` + function library, frozen by `convert_variables_to_constants`),
a TF2 SavedModel (lowered to `Switch` / `Merge` when the importer freezes it), and a TF2 function frozen with
`lower_control_flow=False` (functional `If`s in the .pb)."""

from __future__ import annotations

import os


from . import registry as r

VOCAB = 40  # user ids < VOCAB; the graphs assert it
DIM = 4


def _tf():
    import tensorflow as tf

    return tf


def _feeds(rng, batch, hostile):
    lens = r.row_lengths(rng, batch, 3, hostile)
    # hostile ids break the graphs' asserts (TF raises, so must we): only in some requests, so the float
    # paths (NaN / inf through the selects) are compared too
    bad_ids = hostile and rng.random() < 0.4
    ids = r.ints(rng, int(lens.sum()), 0, VOCAB, bad_ids)
    return {"user": r.sparse(lens, ids), "dense": r.floats(rng, (batch, 4), hostile)}


def _tail(tf, emb, dense, training, weights):
    """The dense part: dropout behind `training`, a run-time conditional, an MLP."""
    w1, b1, w2 = weights
    h = tf.concat([emb, dense], axis=1)
    h = tf.cond(training, lambda: tf.nn.dropout(h, rate=0.5), lambda: h)  # dead branch at serving
    h = tf.nn.relu(tf.matmul(h, w1) + b1)
    # a run-time predicate (NaN compares false), both branches pure: computed both, selected
    h = tf.cond(tf.reduce_mean(dense) > 0.0, lambda: h * 2.0, lambda: tf.constant(1.0) - h)
    h = tf.cond(tf.shape(dense)[0] > 3, lambda: tf.nn.softmax(h), lambda: h)  # a symbolic predicate: B > 3
    return tf.sigmoid(tf.matmul(h, w2)), h


def _asserts(tf, sp):
    """What validating serving code writes: ids in range, finite-size batch (tf.debugging, AssertGuard)."""
    return [tf.debugging.assert_less(sp.values, tf.constant(VOCAB, tf.int64), message="user id out of range"),
            tf.debugging.assert_non_negative(sp.values, message="negative user id")]


def _session_model(out_dir: str, control_flow_v2: bool) -> dict:
    tf = _tf()
    v1 = tf.compat.v1
    from tensorflow.python.ops import control_flow_util

    saved = control_flow_util.ENABLE_CONTROL_FLOW_V2
    control_flow_util.ENABLE_CONTROL_FLOW_V2 = control_flow_v2
    try:
        with tf.Graph().as_default() as g:
            v1.set_random_seed(3)
            sp = v1.sparse_placeholder(tf.int64, [None, None], name="user")
            dense = v1.placeholder(tf.float32, [None, 4], name="dense")
            training = v1.placeholder_with_default(False, [], name="training")
            table = v1.get_variable("user_table", [VOCAB, DIM])
            w1 = v1.get_variable("w1", [DIM + 4, 8])
            b1 = v1.get_variable("b1", [8], initializer=v1.random_normal_initializer(stddev=0.1))
            w2 = v1.get_variable("w2", [8, 1])
            with tf.control_dependencies(_asserts(tf, sp)):
                ids = tf.identity(sp.values)
            emb = tf.nn.safe_embedding_lookup_sparse(table, tf.SparseTensor(sp.indices, ids, sp.dense_shape),
                                                     combiner="mean")
            score, _ = _tail(tf, emb, dense, training, (w1, b1, w2))
            with v1.Session(graph=g) as sess:
                sess.run(v1.global_variables_initializer())
                gd = v1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(),
                                                                  [score.op.name, emb.op.name])
    finally:
        control_flow_util.ENABLE_CONTROL_FLOW_V2 = saved
    ops = {n.op for n in gd.node}
    assert ("Switch" in ops) != control_flow_v2 and ("StatelessIf" in ops) == control_flow_v2, sorted(ops)
    with open(os.path.join(out_dir, "model.pb"), "wb") as f:
        f.write(gd.SerializeToString())
    return {"pb": "model.pb", "signature": {
        "inputs": {"user": {"indices": sp.indices.name, "values": sp.values.name, "dense_shape": sp.dense_shape.name},
                   "dense": dense.name},
        "outputs": {"score": score.name, "embedding": emb.name}}}


@r.entry("control_flow", feeds=_feeds)
def tf1_cond_switch_merge(out_dir: str) -> dict:
    """TF1 control flow (Switch / Merge) in a Session graph, frozen."""
    return _session_model(out_dir, control_flow_v2=False)


@r.entry("control_flow", feeds=_feeds)
def tf1_cond_functional_if(out_dir: str) -> dict:
    """Control flow v2 (TF2's default, also in Session graphs): If / StatelessIf with branch functions."""
    return _session_model(out_dir, control_flow_v2=True)


def _tf2_module(tf):
    mod = tf.Module()
    g = tf.random.Generator.from_seed(5)
    mod.table = tf.Variable(g.normal([VOCAB, DIM]))
    mod.w1 = tf.Variable(g.normal([DIM + 4, 8]) * 0.3)
    mod.b1 = tf.Variable(g.normal([8]) * 0.1)
    mod.w2 = tf.Variable(g.normal([8, 1]) * 0.3)

    @tf.function(input_signature=[{"user": tf.SparseTensorSpec([None, None], tf.int64),
                                   "dense": tf.TensorSpec([None, 4], tf.float32)}])
    def serve(features):
        sp, dense = features["user"], features["dense"]
        with tf.control_dependencies(_asserts(tf, sp)
                                     + [tf.debugging.Assert(tf.reduce_all(sp.dense_shape >= 0), ["bad shape"])]):
            ids = tf.identity(sp.values)
        emb = tf.nn.safe_embedding_lookup_sparse(mod.table, tf.SparseTensor(sp.indices, ids, sp.dense_shape),
                                                 combiner="sum")
        score, _ = _tail(tf, emb, dense, tf.constant(False), (mod.w1, mod.b1, mod.w2))
        return {"score": score, "embedding": emb}

    mod.serve = serve
    return mod


@r.entry("control_flow", feeds=_feeds)
def tf2_cond_saved_model(out_dir: str) -> dict:
    """tf.cond and asserts in a tf.function, saved as a SavedModel (StatelessIf / If in its functions)."""
    tf = _tf()
    mod = _tf2_module(tf)
    tf.saved_model.save(mod, os.path.join(out_dir, "sm"), signatures={"serving_default": mod.serve})
    return {"saved_model": "sm", "call": "serve"}


@r.entry("control_flow", feeds=_feeds)
def tf2_cond_frozen_unlowered(out_dir: str) -> dict:
    """The TF2 function frozen with `lower_control_flow=False`: functional If / StatelessIf in the .pb."""
    tf = _tf()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    cf = _tf2_module(tf).serve.get_concrete_function()
    frozen = convert_variables_to_constants_v2(cf, lower_control_flow=False)
    gd = frozen.graph.as_graph_def()
    assert any(n.op in ("If", "StatelessIf") for n in gd.node)
    with open(os.path.join(out_dir, "model.pb"), "wb") as f:
        f.write(gd.SerializeToString())
    flat = [t.name for t in frozen.inputs if t.dtype != tf.resource]
    # tf.nest order of {"dense", "user"}: dense, then user's indices / values / dense_shape
    outs = tf.nest.flatten(cf.structured_outputs, expand_composites=True)
    names = sorted(cf.structured_outputs)
    return {"pb": "model.pb", "signature": {
        "inputs": {"dense": flat[0], "user": dict(zip(("indices", "values", "dense_shape"), flat[1:4]))},
        "outputs": {k: frozen.outputs[i].name for i, k in enumerate(names) if i < len(outs)}}}

