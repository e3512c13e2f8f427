"""Generic TF ops (shape arithmetic, slicing, layout, activations, reductions) against TF, one graph each.

Inputs have a symbolic batch so shape chains go through the symbolic path, not constant folding.
"""

from __future__ import annotations

import numpy as np
import pytest

import recom_tvm

from conftest import FunctionModel

CASES = {
    "strided_slice_masks": lambda tf, x: x[:, 1:3] + x[:, ::2][:, :2],
    "strided_slice_shrink_newaxis": lambda tf, x: tf.reshape(x[1:, 2], [-1, 1]) * x[1:, tf.newaxis, 0],
    "strided_slice_negative": lambda tf, x: x[-2:, ::-1],
    "strided_slice_ellipsis": lambda tf, x: tf.reshape(x, [-1, 2, 2])[..., 1],
    "slice_minus_one": lambda tf, x: tf.slice(x, [1, 1], [-1, 2]),
    "tile_symbolic": lambda tf, x: tf.tile(x[:, :1], tf.stack([1, tf.shape(x)[0]])),
    "range_from_shape": lambda tf, x: x + tf.cast(tf.reshape(tf.range(tf.shape(x)[0]), [-1, 1]), tf.float32),
    "pack_unpack_concat": lambda tf, x: tf.concat(tf.unstack(tf.stack([x, 2 * x], axis=1), axis=1), axis=1),
    "reshape_expand_squeeze_transpose": lambda tf, x: tf.squeeze(
        tf.transpose(tf.expand_dims(tf.reshape(x, [-1, 2, 2]), 1), [0, 3, 1, 2]), axis=2),
    "fill_zeros_ones": lambda tf, x: x * tf.fill(tf.shape(x), 2.0) + tf.zeros_like(x) + tf.ones_like(x),
    "reductions": lambda tf, x: tf.stack([tf.reduce_sum(x, 1), tf.reduce_mean(x, 1), tf.reduce_max(x, 1),
                                          tf.reduce_min(x, 1), tf.reduce_prod(x, 1)], axis=1),
    "reduce_keepdims": lambda tf, x: x - tf.reduce_mean(x, axis=1, keepdims=True),
    "select_v1_rows": lambda tf, x: tf.compat.v1.where(x[:, 0] > 0, x, -x),
    "select_v2_broadcast": lambda tf, x: tf.where(x > 0, x, 0.5),
    "activations": lambda tf, x: tf.concat([tf.nn.relu6(x), tf.nn.elu(x), tf.nn.selu(x), tf.nn.softplus(x),
                                            tf.nn.softsign(x), tf.nn.leaky_relu(x, 0.1), tf.tanh(x),
                                            tf.sigmoid(x), tf.nn.gelu(x), tf.nn.silu(x)], axis=1),
    "softmax_log_softmax": lambda tf, x: tf.nn.softmax(x) + tf.nn.log_softmax(x),
    "math": lambda tf, x: tf.abs(x) + tf.sqrt(tf.abs(x)) + tf.math.rsqrt(tf.abs(x) + 1.0) + tf.exp(-tf.square(x))
    + tf.math.log1p(tf.abs(x)) + tf.floor(x) + tf.math.ceil(x) + tf.sign(x) + tf.maximum(x, 0.1)
    + tf.minimum(x, 0.2) + tf.math.squared_difference(x, 1.0) + tf.pow(tf.abs(x), 1.5) + tf.math.reciprocal(x + 9),
    "int_math_and_compare": lambda tf, x: tf.cast(tf.math.floordiv(tf.cast(x * 10, tf.int64), 3)
                                                  + tf.math.floormod(tf.cast(x * 10, tf.int64), 3), tf.float32)
    + tf.cast(tf.logical_or(x > 1, tf.logical_not(x < -1)), tf.float32),
    "gather_and_gather_nd": lambda tf, x: tf.gather(x, [3, 0], axis=1) + tf.gather_nd(
        x, tf.stack([tf.range(tf.shape(x)[0]), tf.zeros_like(tf.range(tf.shape(x)[0]))], axis=1))[:, None],
    "matmul_transposes": lambda tf, x: tf.matmul(x, x, transpose_b=True)[:, :2] + tf.matmul(
        tf.constant(np.ones((4, 2), np.float32)), x, transpose_a=True, transpose_b=True)[0][:, None],
    "bucketize": lambda tf, x: tf.cast(tf.raw_ops.Bucketize(input=x, boundaries=[-1.0, 0.0, 0.5]), tf.float32),
    "where_count": lambda tf, x: tf.cast(tf.shape(tf.where(x > 0))[0], tf.float32) + tf.reduce_sum(x, 1,
                                                                                                   keepdims=True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_tf(name):
    """Imported and optimized."""
    import tensorflow as tf

    fn = CASES[name]
    cf = tf.function(lambda x: {"y": fn(tf, x)}).get_concrete_function(tf.TensorSpec([None, 4], tf.float32))
    model = FunctionModel(cf, passes=False)
    rng = np.random.default_rng(0)
    for batch in (1, 3, 8):
        x = rng.normal(size=(batch, 4)).astype(np.float32)
        x[0, 0] = 0.5  # on a bucket boundary
        model.check({model.names[0]: x}, (x,), f"{name} batch={batch}")


def test_bucketize_nan_and_edges():
    import tensorflow as tf

    cf = tf.function(lambda x: tf.raw_ops.Bucketize(input=x, boundaries=[0.0, 1.0, 1.0, 2.0])).get_concrete_function(
        tf.TensorSpec([None], tf.float32))
    mod, params, spec = recom_tvm.from_tensorflow(cf)
    model = recom_tvm.build(mod, "llvm", params)
    x = np.array([np.nan, -np.inf, np.inf, -0.0, 0.0, 1.0, 1.5, 2.0, 3.0, -1e30], np.float32)
    got = list(model.run({spec.features[0]["name"]: x}).values())[0]
    np.testing.assert_array_equal(got, cf(tf.constant(x)).numpy())


def test_reshape_with_symbolic_divisor_checks_tf_preconditions_on_host():
    """reshape([-1, n]) where n is a feed's size: SymEngine cancels B*n/n -> B; n != 0 and n | size are checked
    on the host before launch, with TF's kind of error when they fail."""
    import tensorflow as tf

    def fn(x, y):
        return tf.reshape(x, [-1, tf.shape(y)[1]]) * 2.0

    cf = tf.function(fn).get_concrete_function(tf.TensorSpec([None, 6], tf.float32),
                                               tf.TensorSpec([None, None], tf.float32))
    mod, params, spec = recom_tvm.from_tensorflow(cf)
    assert spec.assertions, "expected host-side preconditions for the symbolic reshape"
    model = recom_tvm.build(mod, "llvm", params)
    names = [f["name"] for f in spec.features]
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    for n in (3, 2):
        y = np.zeros((1, n), np.float32)
        got = list(model.run(dict(zip(names, [x, y]))).values())[0]
        np.testing.assert_allclose(got, cf(tf.constant(x), tf.constant(y)).numpy())
    for n in (0, 5):  # TF raises: zero-sized dim / 24 not a multiple of 5
        y = np.zeros((1, n), np.float32)
        try:
            cf(tf.constant(x), tf.constant(y))
            raise AssertionError("TF accepted the reshape")
        except tf.errors.InvalidArgumentError:
            pass
        with pytest.raises(recom_tvm.InvalidArgumentError, match="Reshape"):
            model.run(dict(zip(names, [x, y])))
