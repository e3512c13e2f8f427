"""Converters of the dense tails CTR architectures emit (Einsum, Split / SplitV, Conv2D, TopKV2, Cumsum,
DenseBincount / Bincount, Slice with a run-time begin), one graph each against TF, with a symbolic batch and
hostile floats (NaN, +-inf, -0.0, denormals) where the op computes on them."""

from __future__ import annotations

import numpy as np
import pytest

import recom_tvm

from conftest import assert_matches_tf

# (no huge finite values: whether 3e38 + 3e38 - 3e38 overflows depends on the summation order, which TF's
# contractions do not fix; NaN and +-inf propagate the same in any order)
_HOSTILE = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, -1e-40, 1e30], np.float32)


def _floats(rng, shape, hostile: bool) -> np.ndarray:
    x = rng.normal(size=shape).astype(np.float32)
    if hostile:
        flat = x.reshape(-1)
        pos = rng.choice(flat.size, max(1, flat.size // 4), replace=False)
        flat[pos] = rng.choice(_HOSTILE, pos.size)
    return x


def _run(fn, specs, feeds_list, what: str, exact: bool = False) -> None:
    """Import the tf.function over `specs` and compare every feed set with TF (both raising counts as equal)."""
    import tensorflow as tf

    cf = tf.function(fn).get_concrete_function(*specs)
    mod, params, spec = recom_tvm.from_tensorflow(cf)
    model = recom_tvm.build(mod, "llvm", params)
    names = [f["name"] for f in spec.features]
    for i, feeds in enumerate(feeds_list):
        try:
            exp = cf(*[tf.constant(v) for v in feeds])
            exp = [np.asarray(t) for t in (exp if isinstance(exp, (list, tuple)) else [exp])]
        except Exception as err:  # noqa: BLE001 - TF's run-time errors (InvalidArgumentError)
            exp = err
        try:
            got = model.run(dict(zip(names, feeds)))
            got = [got[k] for k in sorted(got)] if len(got) > 1 else list(got.values())
        except Exception as err:  # noqa: BLE001
            got = err
        if isinstance(exp, Exception) or isinstance(got, Exception):
            assert_matches_tf(got, exp, f"{what} feed {i}")
            continue
        for k, (g, e) in enumerate(zip(got, exp)):
            if exact:
                np.testing.assert_array_equal(g, e, err_msg=f"{what} feed {i} output {k}")
            else:
                assert_matches_tf(g, e, f"{what} feed {i} output {k}")


def _float_feeds(shape_tail, dtype=np.float32):
    rng = np.random.default_rng(3)
    return [[_floats(rng, (b,) + shape_tail, h).astype(dtype)] for b in (1, 7) for h in (False, True)]


# (equation, operand shapes: None is the batch of an input; an operand without None is a constant weight)
EINSUM_CASES = (
    ("bd,dr->br", [(None, 6), (6, 3)]),  # DCN-v2 low-rank projection
    ("br,rd->bd", [(None, 3), (3, 6)]),
    ("bi,ieu->beu", [(None, 6), (6, 3, 4)]),  # MMoE experts
    ("beu,be->bu", [(None, 3, 4), (None, 3)]),  # MMoE gate
    ("abc,cd->abd", [(None, 5, 6), (6, 4)]),  # Keras EinsumDense
    ("aecd,abcd->acbe", [(None, 2, 3, 4), (None, 5, 3, 4)]),  # Keras MultiHeadAttention scores
    ("acbe,aecd->abcd", [(None, 3, 5, 2), (None, 2, 3, 4)]),  # and its weighted values
    ("...d,dk->...k", [(None, 3, 6), (6, 2)]),  # ellipsis
    ("bij->bji", [(None, 3, 4)]),  # one operand: a transpose
    ("bij->b", [(None, 3, 4)]),  # one operand: a reduction
    ("bj,bj->b", [(None, 5), (None, 5)]),  # a row-wise dot product (two-tower scores)
)


@pytest.mark.parametrize("equation,shapes", EINSUM_CASES, ids=[c[0] for c in EINSUM_CASES])
def test_einsum_matches_tf(equation, shapes):
    import tensorflow as tf

    rng = np.random.default_rng(1)
    consts = {i: tf.constant(rng.normal(size=s).astype(np.float32)) for i, s in enumerate(shapes) if None not in s}
    inputs = [i for i, s in enumerate(shapes) if None in s]

    def fn(*xs):
        ops = [consts[i] if i in consts else xs[inputs.index(i)] for i in range(len(shapes))]
        return tf.einsum(equation, *ops)

    specs = [tf.TensorSpec(shapes[i], tf.float32) for i in inputs]
    feeds = [[_floats(rng, (b,) + tuple(shapes[i][1:]), h) for i in inputs] for b in (1, 7) for h in (False, True)]
    _run(fn, specs, feeds, f"einsum {equation}")


def test_einsum_refuses_diagonals_clearly():
    import tensorflow as tf

    cf = tf.function(lambda x: tf.einsum("bii->bi", x)).get_concrete_function(tf.TensorSpec([None, 3, 3]))
    with pytest.raises(recom_tvm.RecomError, match="Einsum.*repeated within one operand"):
        recom_tvm.from_tensorflow(cf)


def test_split_and_split_v():
    import tensorflow as tf

    def fn(x):
        a, b, c = tf.split(x, 3, axis=1)
        d, e = tf.split(x, [5, -1], axis=1)
        return tf.concat([c * 2.0, a - b, tf.reduce_sum(d, 1, keepdims=True), e], axis=1)

    _run(fn, [tf.TensorSpec([None, 12], tf.float32)], _float_feeds((12,)), "split")


@pytest.mark.parametrize("padding", ["VALID", "SAME", "EXPLICIT"])
def test_conv2d_nhwc(padding):
    import tensorflow as tf

    rng = np.random.default_rng(4)
    w = tf.constant(rng.normal(size=(2, 3, 4, 5)).astype(np.float32))
    pad = [[0, 0], [1, 0], [2, 1], [0, 0]] if padding == "EXPLICIT" else padding

    def fn(x):
        y = tf.nn.conv2d(x, w, strides=[1, 1, 2, 1], padding=pad, dilations=[1, 1, 1, 1])
        z = tf.nn.conv1d(tf.reshape(x, [-1, 6, 4 * 4]), tf.constant(np.ones((1, 16, 3), np.float32)), 1, "VALID")
        return tf.reshape(y, [tf.shape(x)[0], -1]), tf.reshape(z, [tf.shape(x)[0], -1])

    _run(fn, [tf.TensorSpec([None, 4, 6, 4], tf.float32)], _float_feeds((4, 6, 4)), f"conv2d {padding}")


def test_top_k_ties_and_nan_rows():
    import tensorflow as tf

    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, (7, 20)).astype(np.float32)  # many ties: the lower index first, as TF
    x[2] = np.nan  # a row of NaN: TF keeps index order
    x[3, ::3] = np.inf
    x[4] = -np.inf
    x[5, :] = -0.0
    _run(lambda t: tf.math.top_k(t, k=6), [tf.TensorSpec([None, 20], tf.float32)],
         [[x], [x[:1]], [rng.normal(size=(3, 20)).astype(np.float32)]], "top_k", exact=True)


def test_cumsum_modes():
    import tensorflow as tf

    def fn(x):
        return tf.concat([tf.cumsum(x, axis=1), tf.cumsum(x, axis=1, exclusive=True),
                          tf.cumsum(x, axis=1, reverse=True), tf.cumsum(x, axis=-1, exclusive=True, reverse=True),
                          tf.cumsum(x, axis=0)], axis=1)

    _run(fn, [tf.TensorSpec([None, 6], tf.float32)], _float_feeds((6,)), "cumsum")
    _run(lambda x: tf.cumsum(x, axis=1, exclusive=True), [tf.TensorSpec([None, 5], tf.int64)],
         [[np.arange(b * 5, dtype=np.int64).reshape(b, 5) - 7] for b in (1, 4)], "cumsum int")


def test_bincount_forms():
    import tensorflow as tf

    def fn(x, w):
        return (tf.math.bincount(x, minlength=6, maxlength=6, axis=-1),
                tf.math.bincount(x, weights=w, minlength=6, maxlength=6, axis=-1),
                tf.math.bincount(x, minlength=6, maxlength=6, axis=-1, binary_output=True),
                tf.raw_ops.Bincount(arr=tf.reshape(tf.cast(x, tf.int32), [-1]), size=6,
                                    weights=tf.constant([], tf.float32)))

    rng = np.random.default_rng(6)
    feeds = []
    for b in (1, 7):
        x = rng.integers(0, 9, (b, 5)).astype(np.int32)  # >= 6: ignored, as TF
        feeds.append([x, rng.normal(size=(b, 5)).astype(np.float32)])
    x = feeds[-1][0].copy()
    x[0, 1] = -1  # negative: TF's InvalidArgumentError
    feeds.append([x, feeds[-1][1]])
    _run(fn, [tf.TensorSpec([None, 5], tf.int32), tf.TensorSpec([None, 5], tf.float32)], feeds, "bincount")


@pytest.mark.parametrize("source", ["computed", "fed"])
def test_slice_with_run_time_begin(source):
    """A begin computed on the device (checked gathers) or fed as a small int vector (a symbol checked on the
    host); begins that do not fit raise TF's InvalidArgumentError."""
    import tensorflow as tf

    def fn(x, k):
        b = tf.cast(tf.reshape(k, []), tf.int32)
        return tf.slice(x, tf.stack([0, b]), [-1, 3]), tf.slice(x, tf.stack([0, b]), [-1, -1])[:, :1]

    dtype = np.float32 if source == "computed" else np.int32
    rng = np.random.default_rng(7)
    # the last ones raise TF's error (a fed int vector is a symbol the importer takes as a size, >= 0: a negative
    # one is only tried where the begin is computed)
    cases = ((1, 0), (4, 5), (3, 2), (3, 6)) + (((2, -1),) if source == "computed" else ())
    feeds = [[rng.normal(size=(n, 8)).astype(np.float32), np.array([k], dtype)] for n, k in cases]
    _run(fn, [tf.TensorSpec([None, 8], tf.float32), tf.TensorSpec([1], tf.as_dtype(dtype))], feeds,
         f"slice with a {source} begin")


def test_device_of_temporary_known_values_is_not_reused():
    from tvm import relax

    from recom_tvm.frontend.context import ImportContext
    from recom_tvm.frontend.values import Known

    """ctx.device caches by identity: a temporary Known freed after its call must not hand its Device to a later
    value that gets the same id (a Slice with a run-time begin read a [2] vector where a [1] was asked for)."""
    ctx = ImportContext(lambda name: [])
    x = relax.Var("x", relax.TensorType([4], "int64"))
    with ctx.bb.function("main", [x]):
        with ctx.bb.dataflow():
            shapes = [tuple(ctx.device(Known(np.arange(n, dtype="int64"), "int64")).shape) for n in (2, 1, 3, 1, 2)]
            out = ctx.bb.emit_output(x)
        ctx.bb.emit_func_output(out)
    assert shapes == [(2,), (1,), (3,), (1,), (2,)]


def test_nan_and_signed_zero_like_tf():
    """TF's Relu / Relu6 / Maximum / Minimum / Max / Min keep NaN (Eigen's PropagateNaN); TVM's max / min drop
    it. (Which zero max(-0.0, 0.0) returns differs between TF's own scalar and vectorized kernels: not compared.)"""
    import tensorflow as tf

    def fn(x):
        return tf.concat([tf.nn.relu(x), tf.nn.relu6(x * 4.0), tf.maximum(x, 0.0), tf.minimum(x, 0.0),
                          tf.maximum(0.0, x), tf.minimum(0.0, x), tf.reduce_max(x, 1, keepdims=True),
                          tf.reduce_min(x, 1, keepdims=True)], axis=1)

    x = np.array([[np.nan, 1.0, -0.0, 2.0], [0.0, -np.inf, np.inf, -3.0], [-0.0, -0.0, 0.0, 7.0]], np.float32)
    cf = tf.function(fn).get_concrete_function(tf.TensorSpec([None, 4], tf.float32))
    mod, params, spec = recom_tvm.from_tensorflow(cf)
    got = list(recom_tvm.build(mod, "llvm", params).run({spec.features[0]["name"]: x}).values())[0]
    exp = cf(tf.constant(x)).numpy()
    np.testing.assert_array_equal(got, exp)


def test_checked_value_is_not_overwritten_by_a_later_op():
    """A run-time check (recom_tvm.check_assert, as DenseBincount's) returned its argument, whose storage the VM's
    static memory plan handed to the next op of that size once the check had read it: the checked value then
    held that op's output (count and multi-hot encodings of one input came out equal)."""
    import tvm
    from tvm import relax

    import recom_tvm.runtime.builtins  # noqa: F401  (registers the callbacks)

    bb = relax.BlockBuilder()
    b = tvm.tirx.Var("B", "int64")
    x = relax.Var("x", relax.TensorType([b, 4], "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            first = bb.emit(relax.op.multiply(relax.op.add(x, relax.const(1.0)), relax.const(2.0)))
            ok = bb.emit(relax.op.astype(relax.const(1, "int32"), "bool"))
            checked = bb.emit(relax.op.call_pure_packed("recom_tvm.check_assert", first, ok,
                                                        tvm.ir.StringImm("m"), ty_args=[first.ty]))
            second = bb.emit(relax.op.multiply(relax.op.add(x, relax.const(10.0)), relax.const(3.0)))
            out = bb.emit_output(relax.op.concat([checked, second], axis=1))
        bb.emit_func_output(out)
    vm = relax.VirtualMachine(tvm.compile(bb.get(), "llvm"), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(np.zeros((2, 4), np.float32))).numpy()
    np.testing.assert_array_equal(got, np.concatenate([np.full((2, 4), 2.0), np.full((2, 4), 30.0)], 1))
