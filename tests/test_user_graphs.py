"""Graphs written the ways users write them (a survey of ~70 user-style graphs, 2026-12-07) that failed to import
or failed without saying why: each now converts and matches TF, or fails with an error naming the op, the node and
the reason."""

from __future__ import annotations

import numpy as np
import pytest

import recom_tvm
from recom_tvm import config
from recom_tvm.errors import ConversionError, RecomError

from conftest import FunctionModel


@pytest.fixture()
def no_fallback(monkeypatch):
    monkeypatch.setattr(config, "host_fallback", False)


@pytest.fixture()
def fallback(monkeypatch):
    monkeypatch.setattr(config, "host_fallback", True)  # (the suite runs with it off: conftest)


@pytest.mark.parametrize("op", ["equal", "not_equal", "less"])
def test_comparisons_on_a_symbolic_dim_convert(no_fallback, op):
    """tf.equal / tf.not_equal of tf.shape(x)[0] with a constant: `int == PrimExpr` gives TVM's EqualOp, which the
    importer's symbolic fold could not read (ConversionError; with the fallback, a silent co-run in TF)."""
    import tensorflow as tf

    fn = getattr(tf, op)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def serve(a):
        return {"o": tf.cast(fn(tf.shape(a)[0], 2), tf.float32) + a}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    for batch in (1, 2, 3):
        x = np.arange(4 * batch, dtype=np.float32).reshape(batch, 4)
        model.check({"a": x}, (x,), f"{op} B={batch}")


def test_a_python_default_argument_is_not_a_feed():
    """`def serve(ids, training=False)` with an input_signature: TF traces the Python constant in and serves one
    tensor input; the loader took the constant for an input ("unsupported input spec bool")."""
    import tensorflow as tf

    table = tf.constant(np.arange(40, dtype=np.float32).reshape(10, 4))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
    def serve(ids, training=False):
        e = tf.gather(table, ids)
        return {"e": tf.nn.dropout(e, 0.5) if training else e}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    assert model.names == ["ids"]
    ids = np.array([1, 2, 9], np.int64)
    model.check({"ids": ids}, (ids,), "training=False")


def test_what_the_co_run_cannot_hand_over_is_a_clear_error(fallback):
    """With the host co-run (the default), nodes that still cannot be translated after it raised the importer's
    internal UnconvertibleNodes ("N node(s) cannot be translated": no op, node or reason); now the error of each,
    and which ops ran through TensorFlow."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([], tf.int32)])
    def serve(ids, seg, nseg):  # num_segments fed at run time
        return {"m": tf.math.unsorted_segment_mean(tf.gather(table, ids), seg, nseg)}

    with pytest.raises(RecomError) as err:
        recom_tvm.from_tensorflow(serve.get_concrete_function())
    text = str(err.value)
    assert "UnsortedSegmentMean/Reshape" in text and "must be known" in text and "through TensorFlow" in text, text


def test_a_co_run_reading_a_captured_table_is_a_clear_error(fallback):
    """A co-run (RaggedTensorToTensor has no converter) that pulls in a Keras StringLookup's table lookup: the
    TF2 function's captured table handle was made a feed the host stage never produces, and every request failed
    ("host stage stuck at recom_tvm/host_corun"); now the import names the lookup and the handle."""
    import keras
    import tensorflow as tf

    lookup = keras.layers.StringLookup(vocabulary=["the", "cat", "sat"])
    table = tf.constant(np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(s):
        ids = lookup(tf.strings.split(s)).to_tensor(default_value=0, shape=[None, 5])
        return {"e": tf.reduce_sum(tf.gather(table, ids), axis=1)}

    with pytest.raises(ConversionError) as err:
        recom_tvm.from_tensorflow(serve.get_concrete_function())
    text = str(err.value)
    assert "LookupTableFindV2" in text and "host co-run" in text and "resource handle" in text, text
