"""Every model source imports and matches TF: TF2 SavedModel, TF1 (Estimator-style) SavedModel, frozen .pb
(without TensorFlow installed), and a tf.function ConcreteFunction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

import recom_tvm
from recom_tvm.models import tf_export
from recom_tvm.models.spec import ColumnSpec, ModelSpec

from conftest import assert_matches_tf

MIXED = ModelSpec("sources_mix", (
    ColumnSpec("a", "bucketized", 4, "mean", boundaries=(0.0, 1.0, 2.0)),
    ColumnSpec("b", "hash_string", 4, "sum", buckets=40, ids_per_row=(0, 3)),
    ColumnSpec("c", "identity", 4, "sqrtn", buckets=10, default_value=0, input="dense", ids_per_row=(1, 3), vocab=12),
    ColumnSpec("d", "hash_int", 4, "mean", buckets=30, input="dense", ids_per_row=(1, 2)),
    ColumnSpec("e", "numeric", 2),
), dense_width=2, bottom_mlp=(3,), top_mlp=(5,), seed=3)


def test_tf1_estimator_style_saved_model(compiled):
    c = compiled(MIXED, "tf1")
    assert {f["name"] for f in c.ispec.features} == {"a", "b", "c", "d", "e", "dense"}
    assert c.ispec.feature("b")["kind"] == "sparse"
    for batch in (1, 7, 512):
        got, exp = c.run_both(MIXED.sample(batch, rng=batch, hostile=True))
        assert_matches_tf(got, exp, f"tf1 batch={batch}")


def test_tf2_saved_model_groups_sparse_components(compiled):
    c = compiled(MIXED, "saved_model")
    assert c.ispec.feature("b") == {"name": "b", "kind": "sparse", "tensors": c.ispec.feature("b")["tensors"]}
    for batch in (1, 7):
        got, exp = c.run_both(MIXED.sample(batch, rng=batch, hostile=True))
        assert_matches_tf(got, exp)


def test_concrete_function():
    import tensorflow as tf

    model, sig = tf_export.build_keras(MIXED)
    cf = tf.function(lambda f: {"score": model(f)}).get_concrete_function(sig)
    mod, params, spec = recom_tvm.from_tensorflow(cf)
    feeds = MIXED.sample(9, rng=4, hostile=True)
    exp = cf(tf_export.to_tf_feeds(MIXED, feeds))["score"].numpy()
    for m in (mod, recom_tvm.optimize(mod)):
        assert_matches_tf(recom_tvm.build(m, "llvm", params).run(feeds)["score"], exp)


def test_frozen_pb_imports_without_tensorflow(tmp_path):
    """A subprocess where `import tensorflow` fails imports the .pb, builds and runs it; outputs match TF."""
    paths = tf_export.export(MIXED)
    feeds = MIXED.sample(6, rng=5, hostile=True)
    exp = tf_export.TFReference(MIXED, paths)(feeds)
    np.save(tmp_path / "exp.npy", exp)
    script = textwrap.dedent(f"""
        import sys, numpy as np
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "tf_keras", "keras"):
                    raise ImportError("TensorFlow is blocked in this test")
        sys.meta_path.insert(0, Block())
        import recom_tvm
        from recom_tvm.models import zoo  # numpy-only
        from recom_tvm.models.spec import ModelSpec
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_sources import MIXED
        mod, params, spec = recom_tvm.from_tensorflow({paths['pb']!r}, signature={paths['signature']!r})
        model = recom_tvm.build(mod, "llvm", params)
        got = model.run(MIXED.sample(6, rng=5, hostile=True))["score"]
        assert "tensorflow" not in sys.modules
        np.testing.assert_allclose(got, np.load({str(tmp_path / 'exp.npy')!r}), rtol=1e-5, atol=2e-5)
        print("OK")
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-3000:]
    with open(paths["signature"]) as f:
        assert set(json.load(f)["inputs"]) == {"a", "b", "c", "d", "e", "dense"}


def test_positional_signature_names(tmp_path):
    """Positional (list) inputs: the serving signature flattens them under generated names (input_1 / input_2 for a
    subclassed tf_keras model saved as is, inputs / inputs_1 for a traced call, xs / xs_1 for a tf.Module's list
    argument); the restored call function's python arguments (training=) are not inputs. Each imports under the
    signature's names and matches TF."""
    import tensorflow as tf
    import tf_keras

    import recom_tvm

    class Sub(tf_keras.Model):
        def __init__(self):
            super().__init__()
            self.d1, self.d2 = tf_keras.layers.Dense(4), tf_keras.layers.Dense(1)

        def call(self, inputs, training=False):
            a, b = inputs
            return self.d2(tf.concat([self.d1(a), b], axis=1))

    m = Sub()
    x, y = np.random.default_rng(0).random((2, 3), np.float32), np.random.default_rng(1).random((2, 2), np.float32)
    m([tf.constant(x), tf.constant(y)])
    sub_path = str(tmp_path / "sub")
    call = tf.function(lambda inputs: m(inputs)).get_concrete_function(
        [tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None, 2], tf.float32)])
    tf.saved_model.save(m, sub_path, signatures={"serving_default": call})
    plain_path = str(tmp_path / "plain")
    tf.saved_model.save(m, plain_path)
    mod = tf.Module()
    mod.m = m
    mod.serve = tf.function(lambda xs: m(xs), input_signature=[[tf.TensorSpec([None, 3], tf.float32),
                                                                 tf.TensorSpec([None, 2], tf.float32)]])
    mod_path = str(tmp_path / "module")
    tf.saved_model.save(mod, mod_path, signatures={"serving_default": mod.serve.get_concrete_function()})
    for path in (sub_path, plain_path, mod_path):
        sig = tf.saved_model.load(path).signatures["serving_default"]
        names = sorted(sig.structured_input_signature[1])
        ref = list(sig(**dict(zip(names, (tf.constant(x), tf.constant(y))))).values())[0].numpy()
        mod_r, params, spec = recom_tvm.from_tensorflow(path)
        assert sorted(f["name"] for f in spec.features) == names
        got = list(recom_tvm.build(mod_r, "llvm", params).run(dict(zip(names, (x, y)))).values())[0]
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_saved_model_signature_picks_the_function_it_wraps(tmp_path):
    """Issue 14 (4): two signatures with the same inputs (scores and embeddings): each imports the function it
    wraps (the nested one, keeping the feature names), not the first restored function with matching inputs."""
    import tensorflow as tf

    model, sig = tf_export.build_keras(MIXED)
    dense_features = next(layer for layer in model.layers if "dense_features" in layer.name)
    mod = tf.Module()
    mod.model = model
    mod.embeddings = tf.function(lambda f: {"embedding": dense_features({k: v for k, v in f.items()
                                                                         if k != "dense"})},
                                 input_signature=[sig])
    mod.scores = tf.function(lambda f: {"score": model(f)}, input_signature=[sig])
    path = str(tmp_path / "two_signatures")
    tf.saved_model.save(mod, path, signatures={"serving_default": mod.scores.get_concrete_function(),
                                               "embeddings": mod.embeddings.get_concrete_function()})
    loaded = tf.saved_model.load(path)
    feeds = MIXED.sample(6, rng=2, hostile=True)
    tf_feeds = tf_export.to_tf_feeds(MIXED, feeds)
    for signature, output, fn in (("serving_default", "score", loaded.scores),
                                  ("embeddings", "embedding", loaded.embeddings)):
        mod_r, params, spec = recom_tvm.from_tensorflow(path, signature=signature)
        assert [o["name"] for o in spec.outputs] == [output], spec.outputs
        assert spec.feature("b")["kind"] == "sparse"  # the nested function: features keep their names
        exp = fn(tf_feeds)[output]
        for opt in (False, True):
            got = recom_tvm.build(recom_tvm.optimize(mod_r) if opt else mod_r, "llvm", params).run(feeds)[output]
            assert_matches_tf(got, exp.numpy(), f"{signature} optimized={opt}")


def _dotted_feeds(rng, batch):
    def sparse(n_max):
        cnt = rng.integers(0, n_max + 1, batch)
        rows = np.repeat(np.arange(batch), cnt)
        cols = np.concatenate([np.arange(k) for k in cnt]) if cnt.sum() else np.zeros(0, np.int64)
        return (np.stack([rows, cols], 1).astype(np.int64).reshape(-1, 2), rng.integers(0, 10, len(rows)),
                np.array([batch, max(int(cnt.max()), 1)], np.int64))

    return {"a.b": sparse(1), "a_b": sparse(4)}  # different id counts: different nnz symbols


def test_feature_names_that_sanitise_alike_keep_their_own_sizes(tmp_path):
    """Issue 14 (7): features "a.b" and "a_b" (a TF1 graph: placeholders a.b/indices and a_b/indices) once shared
    the size symbols nnz_a_b and the module inputs' names: an error where TF answers, or one feed read for the
    other. Imported from a tf.function and from a frozen TF1 graph."""
    import tensorflow as tf
    import tf_keras

    fc = tf.feature_column
    cols = [fc.embedding_column(fc.categorical_column_with_identity(k, 10), d) for k, d in (("a.b", 3), ("a_b", 2))]
    df = tf_keras.layers.DenseFeatures(cols)
    sig = {k: tf.SparseTensorSpec([None, None], tf.int64) for k in ("a.b", "a_b")}
    cf = tf.function(lambda f: {"embedding": df(f)}).get_concrete_function(sig)
    v1 = tf.compat.v1
    with tf.Graph().as_default() as g:
        v1.set_random_seed(1)
        ph = {k: v1.sparse_placeholder(tf.int64, [None, None], name=k) for k in ("a.b", "a_b")}
        out = v1.feature_column.input_layer(ph, [v1.feature_column.embedding_column(
            v1.feature_column.categorical_column_with_identity(k, 10), d) for k, d in (("a.b", 3), ("a_b", 2))])
        with v1.Session(graph=g) as sess:
            sess.run(v1.global_variables_initializer())
            frozen = v1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), [out.op.name])
            rng = np.random.default_rng(0)
            feeds = [_dotted_feeds(rng, b) for b in (1, 6)]
            tf1_exp = [sess.run(out, {ph[k]: tf.compat.v1.SparseTensorValue(*v) for k, v in f.items()}) for f in feeds]
    signature = {"inputs": {k: {"indices": p.indices.name, "values": p.values.name, "dense_shape": p.dense_shape.name}
                            for k, p in ph.items()}, "outputs": {"embedding": out.name}}
    sources = {"tf.function": (recom_tvm.from_tensorflow(cf),
                               [cf({k: tf.SparseTensor(*v) for k, v in f.items()})["embedding"].numpy()
                                for f in feeds]),
               "TF1 .pb": (recom_tvm.from_tensorflow(frozen.SerializeToString(), signature=signature), tf1_exp)}
    for source, ((mod, params, spec), expected) in sources.items():
        names = [i["name"] for i in spec.module_inputs]
        assert len(names) == len(set(names)), names
        for opt in (False, True):
            model = recom_tvm.build(recom_tvm.optimize(mod) if opt else mod, "llvm", params)
            for f, exp in zip(feeds, expected):
                assert_matches_tf(model.run(f)["embedding"], exp, f"{source} optimized={opt}")
