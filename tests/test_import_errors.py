"""The importer's errors: unsupported ops name the op, the node and the column; corrupt models are refused."""

from __future__ import annotations

import os

import numpy as np
import pytest

import recom_tvm


def _frozen(fn, specs):
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    cf = tf.function(fn).get_concrete_function(specs)
    return cf, convert_variables_to_constants_v2(cf).graph.as_graph_def()


def test_unsupported_op_names_op_node_and_column():
    import tensorflow as tf
    import tf_keras

    fc = tf.feature_column
    col = fc.embedding_column(fc.categorical_column_with_hash_bucket("q", 10, dtype=tf.int64), 4)
    layer = tf_keras.layers.DenseFeatures([col])

    def fn(x):
        emb = layer({"q": x})
        return tf.math.special.bessel_i0e(emb)  # BesselI0e: not supported

    cf = tf.function(fn).get_concrete_function(tf.SparseTensorSpec([None, None], tf.int64))
    with pytest.raises(recom_tvm.UnsupportedOpError) as info:
        recom_tvm.from_tensorflow(cf)
    err = info.value
    assert err.op == "BesselI0e" and "BesselI0e" in err.node
    assert "unsupported TensorFlow op 'BesselI0e'" in str(err)


def test_unsupported_op_inside_a_column_names_the_column():
    import tensorflow as tf

    def fn(x):
        with tf.name_scope("dense_features/price_col/"):
            return tf.math.lgamma(x)  # Lgamma: not supported

    cf = tf.function(fn).get_concrete_function(tf.TensorSpec([None, 3], tf.float32))
    with pytest.raises(recom_tvm.UnsupportedOpError, match="in column 'price_col'"):
        recom_tvm.from_tensorflow(cf)


def test_corrupt_and_truncated_graphs(tmp_path):
    import tensorflow as tf

    _, gd = _frozen(lambda x: x * 2.0 + 1.0, tf.TensorSpec([None, 3], tf.float32))
    data = gd.SerializeToString()
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(recom_tvm.ModelFormatError):
        recom_tvm.from_tensorflow(str(bad))
    trunc = tmp_path / "trunc.pb"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(recom_tvm.ModelFormatError):
        recom_tvm.from_tensorflow(str(trunc))
    with pytest.raises(recom_tvm.ModelFormatError, match="does not exist"):
        recom_tvm.from_tensorflow(str(tmp_path / "missing.pb"))
    empty_dir = tmp_path / "sm"
    empty_dir.mkdir()
    with pytest.raises(recom_tvm.ModelFormatError, match="not a SavedModel"):
        recom_tvm.from_tensorflow(str(empty_dir))


def test_bad_signature_spec(tmp_path):
    import tensorflow as tf

    _, gd = _frozen(lambda x: x * 2.0, tf.TensorSpec([None, 3], tf.float32))
    path = tmp_path / "m.pb"
    path.write_bytes(gd.SerializeToString())
    with pytest.raises(recom_tvm.ModelFormatError, match="not in the graph"):
        recom_tvm.from_tensorflow(str(path), signature={"inputs": {"x": "nope"}})
    with pytest.raises(recom_tvm.ModelFormatError, match="expected a tensor name"):
        recom_tvm.from_tensorflow(str(path), signature={"inputs": {"x": 3}})


def test_plain_graph_without_signature_runs(tmp_path):
    import tensorflow as tf

    cf, gd = _frozen(lambda x: tf.nn.relu(x * 2.0 - 1.0), tf.TensorSpec([None, 3], tf.float32))
    path = tmp_path / "m.pb"
    path.write_bytes(gd.SerializeToString())
    mod, params, spec = recom_tvm.from_tensorflow(str(path))
    model = recom_tvm.build(mod, "llvm", params)
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    out = model.run({spec.features[0]["name"]: x})
    np.testing.assert_allclose(list(out.values())[0], cf(tf.constant(x)).numpy(), rtol=1e-6)
    assert os.path.exists(path)


def test_docs_list_every_accepted_op():
    """docs/IMPORTER.md lists what supported_ops() accepts (regenerate the list when adding a converter)."""
    doc = open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "docs", "IMPORTER.md")).read()
    missing = [op for names in recom_tvm.supported_ops().values() for op in names if f"`{op}`" not in doc]
    assert not missing, f"docs/IMPORTER.md lacks {missing}"


def _two_exotic_ops():
    """A graph with two ops recom_tvm will never translate (UnicodeScript, BesselI0e), in two columns."""
    import tensorflow as tf

    table = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)

    def fn(cp, x):
        script = tf.strings.unicode_script(cp)
        emb = tf.reduce_sum(tf.gather(tf.constant(table), tf.clip_by_value(script, 0, 299)), axis=1)
        return tf.concat([emb, tf.math.special.bessel_i0e(x)], axis=1)

    return tf.function(fn).get_concrete_function(tf.TensorSpec([None, 3], tf.int32),
                                                 tf.TensorSpec([None, 2], tf.float32))


def test_every_unsupported_op_is_reported_at_once():
    with pytest.raises(recom_tvm.UnsupportedOpError) as info:
        recom_tvm.from_tensorflow(_two_exotic_ops())
    msg = str(info.value)
    assert "BesselI0e" in msg and "UnicodeScript" in msg, msg
    assert {f.op for f in info.value.failures} == {"BesselI0e", "UnicodeScript"}
    assert "host_fallback" in msg  # says how to run them anyway


def test_unsupported_op_report_does_not_depend_on_the_hash_seed(tmp_path):
    """Which op is reported (and in what order) must not change with PYTHONHASHSEED (sets were iterated)."""
    import subprocess
    import sys

    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    pb = tmp_path / "m.pb"
    pb.write_bytes(convert_variables_to_constants_v2(_two_exotic_ops()).graph.as_graph_def().SerializeToString())
    script = ("import recom_tvm\ntry:\n    recom_tvm.from_tensorflow(%r)\nexcept recom_tvm.UnsupportedOpError as e:\n"
              "    print(e)\n" % str(pb))
    msgs = set()
    for seed in ("0", "1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed, RECOM_TVM_HOST_FALLBACK="0")
        res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
        assert "UnicodeScript" in res.stdout, res.stdout + res.stderr[-2000:]
        msgs.add(res.stdout)
    assert len(msgs) == 1, msgs


def test_a_string_output_is_named(tmp_path):
    """A model returning a string (a label gathered by a thresholded score, a lowered query) failed on some
    numeric op ('Relu ... must run in the host stage'); now the error names the output and says why."""
    import tensorflow as tf

    labels = tf.constant([b"neg", b"pos"])

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None], tf.string)])
    def serve(x, q):
        s = tf.reduce_sum(tf.nn.relu(x), 1)
        return {"score": s, "label": tf.gather(labels, tf.cast(s > 1.0, tf.int32)), "q": tf.strings.lower(q)}

    with pytest.raises(recom_tvm.ConversionError, match="output 'label' .* is a string tensor"):
        recom_tvm.from_tensorflow(serve.get_concrete_function())
