"""Round 6 of graphs written the ways users write them (the survey of 2026-12-10: DeepCTR-style heads through
tf_keras layers, Keras mixed precision, tf.einsum forms, sorts of a run-time width, checks and clips users put in a
served graph, small-int / float64 / bool / scalar feeds, tf.strings preprocessing and vocabulary files in a
SavedModel): what gave a silent wrong answer, crashed or failed to import now matches TF, or fails with an error
naming the node and op.

- an einsum or batch matmul contracting a dim of size 0 (`bi,bi->` at B = 0) read back unwritten memory (inf);
- float16 MatMul / BatchMatMul (Keras' mixed_float16 Dense layers) rounded every partial sum, 1 ulp off TF;
- tf_keras' LayerNormalization and BatchNormalization of 4-D inputs (FusedBatchNormV3) had no converter;
- tf.sort / tf.argsort of a [B, None] input and tf.math.top_k with k fed (TopKV2 with a run-time k) were refused;
- tf.debugging.check_numerics (CheckNumerics), tf.saturate_cast (ClipByValue), tf.nn.l2_loss / tf.linalg.global_norm
  (L2Loss) had no converter; a tf.function returning a list or a SparseTensor under a dict key failed the import
  with an IndexError;
- tf.math.asin / acos / sinh / cosh / asinh / acosh / atanh had no converter;
- a while loop (a Keras GRU, tf.map_fn) failed with "the graph has a cycle": now an UnsupportedOpError naming the
  loop and the op.

Probes that already matched TF and that nothing else covered (small-int feeds, embedding_lookup_sparse's sqrtn
combiner with weights and max_norm, clip_by_norm) keep a regression test here."""

from __future__ import annotations

import numpy as np
import pytest

import recom_tvm
from recom_tvm import config

from conftest import FunctionModel, assert_matches_tf, outcome


@pytest.fixture()
def no_fallback(monkeypatch):
    monkeypatch.setattr(config, "host_fallback", False)


NAN, INF = np.nan, np.inf


def _padding_mask(h):
    """[B, 1, T] attention mask of a history padded with 0 (a module function: a Keras Lambda closing over a local
    `tf` cannot be deep-copied when the model is saved)."""
    import tensorflow as tf

    return tf.cast(h[:, None, :] > 0, tf.bool)


def _to_half(z):
    import tensorflow as tf

    return tf.cast(z, tf.float16)


class NestedOutputs(FunctionModel):
    """FunctionModel whose TF reference names the parts of a list or SparseTensor output as the importer does
    ('key/0', 'key/indices', ...)."""

    def tf(self, *args):
        import tensorflow as tf

        res = self.cf(*[tf.constant(a) for a in args])
        out = {}
        for k, v in res.items():
            if isinstance(v, (list, tuple)):
                out.update({f"{k}/{i}": t.numpy() for i, t in enumerate(v)})
            elif isinstance(v, tf.SparseTensor):
                out.update({f"{k}/{p}": getattr(v, p).numpy() for p in ("indices", "values", "dense_shape")})
            else:
                out[k] = v.numpy()
        return out


class SavedModelCheck:
    """A SavedModel imported from its directory and built as imported and as optimized; `check` compares every
    output of its serving signature (or TF's error class) with TF's."""

    def __init__(self, path: str) -> None:
        import tensorflow as tf

        self.fn = tf.saved_model.load(path).signatures["serving_default"]
        mod, params, _ = recom_tvm.from_tensorflow(path)
        self.variants = {"imported": recom_tvm.build(mod, "llvm", params),
                         "optimized": recom_tvm.build(recom_tvm.optimize(mod), "llvm", params)}

    def check(self, feeds: dict, what: str) -> dict:
        import tensorflow as tf

        exp = outcome(lambda: {k: v.numpy() for k, v in self.fn(**{k: tf.constant(v) for k, v in feeds.items()})
                               .items()})
        for name, model in self.variants.items():
            got = outcome(lambda: model.run(feeds))
            if isinstance(exp, BaseException) or isinstance(got, BaseException):
                assert_matches_tf(got, exp, f"{what} [{name}]")
                continue
            assert sorted(got) == sorted(exp), (sorted(got), sorted(exp))
            for k in exp:
                assert got[k].dtype == exp[k].dtype, (what, k, got[k].dtype, exp[k].dtype)
                assert_matches_tf(got[k], exp[k], f"{what} [{name}] output {k!r}")
        return exp


def test_einsum_and_batch_matmul_contracting_an_empty_dim(no_fallback):
    """tf.einsum('bi,bi->') (a batch-wide dot product) and tf.matmul(a[None], b[None], transpose_a=True) sum over
    the batch: at B = 0 TVM's matmul never ran its reduction's initial write and returned whatever its buffer held
    (inf, 3e21; TF: zeros). The einsum forms users write beside it (outer products, per-field weights, '...')."""
    import tensorflow as tf

    rng = np.random.default_rng(61)
    fw = tf.constant(rng.normal(size=(2, 3)).astype(np.float32))
    v = tf.constant(rng.normal(size=(3,)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None, 3], tf.float32),
                                  tf.TensorSpec([None, 2, 3], tf.float32)])
    def serve(a, b, f):
        return {"scal": tf.einsum("bi,bi->", a, b), "gram": tf.matmul(a[None], b[None], transpose_a=True),
                "gram2": tf.matmul(a, b, transpose_a=True), "dot": tf.einsum("bi,bi->b", a, b),
                "outer": tf.einsum("bi,bj->bij", a, b), "perfield": tf.einsum("bnd,nd->bn", f, fw),
                "ell": tf.einsum("...d,d->...", f, v), "pair": tf.einsum("bnd,bmd->bnm", f, f)}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    a, b = rng.normal(size=(3, 3)).astype(np.float32), rng.normal(size=(3, 3)).astype(np.float32)
    f = rng.normal(size=(3, 2, 3)).astype(np.float32)
    for n in (3, 1, 0):
        model.check({"a": a[:n], "b": b[:n], "f": f[:n]}, (a[:n], b[:n], f[:n]), f"B={n}")


@pytest.fixture(scope="module")
def keras_tower(tmp_path_factory):
    """A tf_keras model saved as a SavedModel, BST-style: a MultiHeadAttention over the embedded history masked
    by its padding, LayerNormalization (FusedBatchNormV3 in training mode over [1, rows, features, 1]: no converter
    before) of the residual, a gelu Dense, masked GlobalAveragePooling1D; BatchNormalization of dense features
    (inference) and a LayerNormalization over two axes beside it."""
    import tensorflow as tf
    import tf_keras as K

    K.utils.set_random_seed(62)
    hist = K.Input((4,), dtype="int64", name="hist")
    num = K.Input((3,), name="num")
    x = K.layers.Embedding(20, 8, mask_zero=True)(hist)
    mask = K.layers.Lambda(_padding_mask)(hist)
    att = K.layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x, attention_mask=mask)
    x = K.layers.LayerNormalization()(x + att)
    x = K.layers.Dense(8, activation="gelu")(x)
    pooled = K.layers.GlobalAveragePooling1D()(x)
    bn = K.layers.BatchNormalization()
    d = bn(num)
    grid = K.layers.LayerNormalization(axis=[1, 2], name="grid")(K.layers.Reshape((3, 1))(num))
    score = K.layers.Dense(1, activation="sigmoid", name="score")(K.layers.Concatenate()([pooled, d]))
    model = K.Model([hist, num], {"score": score, "pooled": pooled, "bn": d, "grid": grid})
    rng = np.random.default_rng(62)
    for w, val in ((bn.moving_mean, rng.normal(size=3)), (bn.moving_variance, rng.random(3) + 0.5),
                   (bn.gamma, rng.normal(size=3)), (bn.beta, rng.normal(size=3))):
        w.assign(val.astype(np.float32))
    path = str(tmp_path_factory.mktemp("keras_tower") / "model")
    model.save(path)
    return SavedModelCheck(path)


@pytest.mark.parametrize("case", ["B=4", "B=1", "B=0", "all padding", "hostile dense", "id 20"])
def test_keras_attention_tower_with_layer_norm(no_fallback, keras_tower, case):
    hist = np.array([[1, 2, 3, 0], [4, 5, 6, 7], [0, 0, 0, 0], [19, 1, 0, 0]], np.int64)
    dense = np.array([[0.5, -1, 2], [1, 1, 1], [3, -2, 0.25], [0, 0, 1e-3]], np.float32)
    if case == "hostile dense":  # NaN, a constant row (variance 0), values whose square overflows
        dense = np.array([[NAN, 1, 2], [5, 5, 5], [1e20, -1e20, 0], [0, 0, 1e-30]], np.float32)
    n = {"B=1": 1, "B=0": 0}.get(case, 4)
    feeds = {"hist": hist[:n], "num": dense[:n]}
    if case == "all padding":
        feeds = {"hist": hist[2:3], "num": dense[2:3]}
    if case == "id 20":  # past the embedding table: TF's error
        feeds = {"hist": hist[:1] + 19, "num": dense[:1]}
    keras_tower.check(feeds, case)


def test_fused_batch_norm_in_both_layouts(no_fallback):
    """tf.compat.v1.nn.fused_batch_norm as TF1's layers.batch_normalization(fused=True) writes it: NHWC with the
    moving statistics (is_training=False), and NCHW in training mode (statistics of the batch: TF's batch_mean,
    its unbiased batch_variance); float16 input computed in float32."""
    import tensorflow as tf

    rng = np.random.default_rng(63)
    scale, offset = (tf.constant(rng.normal(size=4).astype(np.float32)) for _ in range(2))
    mean, var = tf.constant(rng.normal(size=4).astype(np.float32)), tf.constant(rng.random(4).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 2, 3, 4], tf.float32),
                                  tf.TensorSpec([None, 4, 2, 3], tf.float32)])
    def serve(x, h):
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, scale, offset, mean, var, epsilon=1e-3, is_training=False)
        t, bm, bv = tf.compat.v1.nn.fused_batch_norm(h, scale, offset, data_format="NCHW")
        t16, _, _ = tf.compat.v1.nn.fused_batch_norm(tf.cast(h, tf.float16), scale, offset, data_format="NCHW")
        return {"y": y, "t": t, "bm": bm, "bv": bv, "t16": t16}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    x = rng.normal(size=(3, 2, 3, 4)).astype(np.float32)
    x[1, 0, 0, 0] = NAN
    # float16 values fed as float32 (the native host stage refuses float16 feeds)
    h = (rng.normal(size=(3, 4, 2, 3)) * 4).astype(np.float16).astype(np.float32)
    model.check({"x": x, "h": h}, (x, h), "B=3")
    model.check({"x": x[:1], "h": h[:1]}, (x[:1], h[:1]), "B=1")


def test_keras_mixed_float16_dense_tower(no_fallback, tmp_path):
    """tf_keras' mixed_float16 policy: embeddings and Dense layers in float16 (Cast, float16 MatMul, BiasAdd, Relu),
    the heads in float32. TF-CPU's float16 MatMul sums its products in float32 and rounds once; TVM's rounded every
    partial sum, 1 ulp off in the hidden layers (the score moved by ~1e-4): now bit for bit, fp16 overflow to inf
    and NaN included."""
    import tensorflow as tf
    import tf_keras as K

    K.utils.set_random_seed(64)
    K.mixed_precision.set_global_policy("mixed_float16")
    try:
        ids = K.Input((3,), dtype="int64", name="ids")
        num = K.Input((2,), dtype="float32", name="num")
        e = K.layers.Flatten()(K.layers.Embedding(10, 4)(ids))
        h = K.layers.Dense(16, activation="relu")(
            K.layers.Concatenate()([e, K.layers.Lambda(_to_half)(num)]))
        h = K.layers.Dense(8, activation="relu", name="h")(h)
        probs = K.layers.Activation("softmax", dtype="float32", name="probs")(K.layers.Dense(3)(h))
        score = K.layers.Dense(1, activation="sigmoid", dtype="float32", name="score")(h)
        model = K.Model([ids, num], {"probs": probs, "score": score, "h": h})
    finally:
        K.mixed_precision.set_global_policy("float32")
    model.save(str(tmp_path / "model"))
    check = SavedModelCheck(str(tmp_path / "model"))
    i = np.array([[1, 2, 3], [0, 9, 9], [5, 5, 5], [4, 2, 7]], np.int64)
    n = np.array([[0.5, -1], [1e5, 3], [NAN, 1], [2, 0.25]], np.float32)  # 1e5: past float16's range
    exp = check.check({"ids": i, "num": n}, "B=4")
    assert exp["h"].dtype == np.float16
    got = check.variants["imported"].run({"ids": i, "num": n})
    np.testing.assert_array_equal(got["h"], exp["h"])  # bit for bit, not within a tolerance
    check.check({"ids": i[:0], "num": n[:0]}, "B=0")
    check.check({"ids": i[:1] + 9, "num": n[:1]}, "id 10")


def test_sort_and_top_k_of_a_run_time_width(no_fallback):
    """tf.sort / tf.argsort of a [B, None] input write TopKV2 with k = tf.shape(x)[-1], and tf.math.top_k(x, k)
    with k a scalar feed: both refused before ('k must be a constant'). Now a stable descending argsort of the
    row, its first k kept: ties by the lower index (ascending sorts too), ints at their extremes, width 0, and
    k past the width (TF's error)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None, None], tf.int32),
                                  tf.TensorSpec([], tf.int32)])
    def serve(x, i, k):
        v, idx = tf.math.top_k(x, k=k)
        return {"sd": tf.sort(x, direction="DESCENDING"), "sa": tf.sort(x),
                "ad": tf.argsort(x, direction="DESCENDING", stable=True), "aa": tf.argsort(x, stable=True),
                "isa": tf.sort(i), "iad": tf.argsort(i, direction="DESCENDING", stable=True),
                "rank": tf.argsort(tf.argsort(x, direction="DESCENDING", stable=True), stable=True),
                "topv": v, "topi": idx}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    x = np.array([[3, 1, 3, 2, 1], [0.0, -0.0, 0.0, -1, 5], [-INF, INF, 1, 1, -INF], [2, 2, 2, 2, 2]], np.float32)
    lo, hi = np.iinfo(np.int32).min, np.iinfo(np.int32).max
    i = np.array([[lo, hi, 0, lo], [5, 5, -5, 5], [hi, hi, lo, 1], [-1, 0, 1, -1]], np.int32)
    for what, xs, ins, k in (("B=4 k=3", x, i, 3), ("k=0", x, i, 0), ("k=width", x[:, :3], i, 3),
                             ("B=1", x[:1], i[:1], 2), ("B=0", x[:0], i[:0], 0), ("width 0", x[:, :0], i[:, :0], 0),
                             ("k past the width", x, i, 6)):
        model.check({"x": xs, "i": ins, "k": np.int32(k)}, (xs, ins, np.int32(k)), what)


def test_check_numerics_in_a_served_graph(no_fallback):
    """tf.debugging.check_numerics / assert_all_finite (CheckNumerics, unsupported before) and tf.print (dropped,
    as a side effect) in a serving function: a NaN or inf is TF's InvalidArgumentError with the op's message."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def serve(x):
        y = tf.debugging.check_numerics(x, "bad feature")
        tf.print("batch", tf.shape(x)[0])
        return {"y": y + 1.0, "z": tf.debugging.assert_all_finite(x * 2.0, "bad product")}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    x = np.array([[1, 2], [3, 4]], np.float32)
    with np.errstate(over="ignore"):  # x * 1e38 overflows to inf on purpose
        cases = (("finite", x), ("B=0", x[:0]), ("NaN", x * NAN), ("inf", x * 1e38))
    for what, feed in cases:
        model.check({"x": feed}, (feed,), what)
    with pytest.raises(recom_tvm.InvalidArgumentError, match="bad (feature|product) : Tensor had NaN or Inf"):
        model.variants["optimized"].run({"x": np.array([[1, INF]], np.float32)})


def test_clips_saturate_cast_and_l2_loss(no_fallback):
    """tf.saturate_cast writes ClipByValue (unsupported before): TF's min-then-max, a NaN in x kept, a NaN bound
    clipping nothing; tf.nn.l2_loss / tf.linalg.global_norm / tf.clip_by_global_norm (L2Loss, unsupported before),
    whose list of clipped tensors under one dict key (like a SparseTensor output) failed the import with an
    IndexError: its parts are outputs 'cgn/0', 'cgn/1', 'sp/indices', ..."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None, 3], tf.float32),
                                  tf.TensorSpec([None], tf.int32)])
    def serve(x, hi, i):
        return {"sat": tf.saturate_cast(x, tf.int32), "satu8": tf.saturate_cast(x, tf.uint8),
                "cbv": tf.raw_ops.ClipByValue(t=x, clip_value_min=tf.constant(-1.0), clip_value_max=hi),
                "icbv": tf.raw_ops.ClipByValue(t=i, clip_value_min=tf.constant(-2), clip_value_max=tf.constant(3)),
                "l2": tf.nn.l2_loss(x), "gn": tf.linalg.global_norm([x, hi]),
                "cgn": tf.clip_by_global_norm([x, hi], 5.0)[0], "sp": tf.sparse.from_dense(tf.cast(x > 0, tf.int64)),
                "cbn": tf.clip_by_norm(x, 1.0, axes=[1])}

    model = NestedOutputs(serve.get_concrete_function(), passes=False)
    x = np.array([[1e10, -1e10, NAN], [300, -1, 0.5], [-0.0, 2, 65504]], np.float32)
    hi = np.array([[1, NAN, 0], [2, 2, 2], [0, 0, 0]], np.float32)
    i = np.array([5, -5, 0], np.int32)
    got = model.check({"x": x, "hi": hi, "i": i}, (x, hi, i), "hostile")
    assert {"cgn/0", "cgn/1", "sp/indices", "sp/values", "sp/dense_shape"} <= set(got["imported"])
    fin, hfin = np.nan_to_num(x), np.nan_to_num(hi)
    model.check({"x": fin, "hi": hfin, "i": i}, (fin, hfin, i), "finite")
    model.check({"x": x[:0], "hi": hi[:0], "i": i[:0]}, (x[:0], hi[:0], i[:0]), "B=0")


def test_inverse_trig_and_hyperbolic(no_fallback):
    """tf.math.asin / acos / sinh / cosh / asinh (a signed log transform) / acosh / atanh, float32 and float64
    (unsupported before); atanh as log1p(2x / (1 - x)) / 2: TVM's own lost small x (1e-3 relative at 1e-5)."""
    import tensorflow as tf

    fns = {"asin": tf.math.asin, "acos": tf.math.acos, "sinh": tf.math.sinh, "cosh": tf.math.cosh,
           "asinh": tf.math.asinh, "acosh": tf.math.acosh, "atanh": tf.math.atanh}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.float64)])
    def serve(x, d):
        return {**{k: f(x) for k, f in fns.items()}, **{k + "64": f(d) for k, f in fns.items()}}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    rng = np.random.default_rng(65)
    x = np.concatenate([rng.uniform(-1, 1, 20), rng.normal(size=20) * 10,
                        [0, -0.0, 1, -1, INF, -INF, NAN, 1e-8, -1e-5, 2e-4, 88, 90, -90, 1e20, -1e20, 0.9999999,
                         -0.9999999, 1e-30]]).astype(np.float32)
    d = x.astype(np.float64) * (1 + 1e-9)
    got = model.check({"x": x, "d": d}, (x, d), "hostile")["imported"]
    exp = model.tf(x, d)
    small = (np.abs(x) < 1e-3) & (x != 0)  # relative error, which the atol hides
    for k in ("asin", "sinh", "asinh", "atanh"):
        np.testing.assert_allclose(got[k][small], exp[k][small], rtol=1e-6, err_msg=k)
    model.check({"x": x[:0], "d": d[:0]}, (x[:0], d[:0]), "B=0")


def test_a_while_loop_is_a_clear_error(no_fallback):
    """tf.while_loop / tf.map_fn (and Keras' GRU / LSTM layers) freeze to Enter / Merge / NextIteration / Exit
    nodes, a cycle: the import said 'the graph has a cycle' and listed inner node names; it now raises
    UnsupportedOpError naming the op ('While') and the loop."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def serve(x):
        _, y = tf.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y * 0.5 + 1.0), (tf.constant(0), x))
        return {"y": y}

    with pytest.raises(recom_tvm.UnsupportedOpError) as err:
        recom_tvm.from_tensorflow(serve.get_concrete_function())
    text = str(err.value)
    assert "'While' at node 'while'" in text and "GRU" in text and "NextIteration" in text, text


def test_small_int_feeds(no_fallback):
    """int8 / uint8 / int16 feeds (regression: nothing else feeds them): ids cast for a gather, one_hot of uint8,
    wrapping arithmetic and sums in the narrow type, floor division / modulo by negatives, bitwise ops, narrowing
    casts."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(66).normal(size=(256, 2)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.int8), tf.TensorSpec([None, 3], tf.uint8),
                                  tf.TensorSpec([None, 3], tf.int16)])
    def serve(a, u, s):
        return {"emb": tf.reduce_sum(tf.gather(table, tf.cast(u, tf.int32)), 1), "oh": tf.one_hot(u, 4),
                "add8": a + a, "neg8": -a, "abs8": tf.abs(a), "sub_u": u - tf.constant(10, tf.uint8),
                "sum8": tf.reduce_sum(a, 1), "fdiv16": s // tf.constant(-7, tf.int16),
                "mod16": tf.math.floormod(s, tf.constant(5, tf.int16)), "amax": tf.argmax(u, 1),
                "band": tf.bitwise.bitwise_and(u, tf.constant(0x0F, tf.uint8)), "i16to8": tf.cast(s, tf.int8),
                "f": tf.cast(a, tf.float32) * tf.cast(u, tf.float32) + tf.cast(s, tf.float32)}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    a = np.array([[-128, 127, 0], [1, -1, 100], [64, 64, -65]], np.int8)
    u = np.array([[255, 0, 9], [128, 3, 1], [200, 200, 2]], np.uint8)
    s = np.array([[-32768, 32767, 7], [-7, 6, -1], [1000, -1000, 0]], np.int16)
    model.check({"a": a, "u": u, "s": s}, (a, u, s), "B=3")
    model.check({"a": a[:0], "u": u[:0], "s": s[:0]}, (a[:0], u[:0], s[:0]), "B=0")


def test_embedding_lookup_sparse_sqrtn_with_weights_and_max_norm(no_fallback):
    """tf.nn.embedding_lookup_sparse with combiner 'sqrtn' / 'mean' and weights (zero and negative ones), and
    max_norm (rows clipped by clip_by_norm before combining); safe_embedding_lookup_sparse beside it (regression:
    matched TF, not tested elsewhere). Empty rows, an id past the table (TF's error)."""
    import tensorflow as tf

    from test_user_graphs_r5 import _sparse

    table = tf.constant(np.random.default_rng(67).normal(size=(6, 3)).astype(np.float32) * 2)

    @tf.function(input_signature=[tf.SparseTensorSpec([None, None], tf.int64),
                                  tf.SparseTensorSpec([None, None], tf.float32)])
    def serve(ids, w):
        return {"sqrtn": tf.nn.embedding_lookup_sparse(table, ids, w, combiner="sqrtn"),
                "mean": tf.nn.embedding_lookup_sparse(table, ids, w, combiner="mean"),
                "safe": tf.nn.safe_embedding_lookup_sparse(table, ids, w, combiner="sqrtn"),
                "maxn": tf.nn.embedding_lookup_sparse(table, ids, w, combiner="sum", max_norm=1.0)}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    for what, ids, w in (("B=3", [[1, 2], [0], [5, 3, 3]], [[0.5, 2.0], [1.0], [1.0, -1.0, 3.0]]),
                         ("last empty", [[1, 2], [4], []], [[1.0, 1.0], [0.0], []]),
                         ("B=1 zero weights", [[4, 4]], [[0.0, 0.0]]), ("id 6", [[6]], [[1.0]])):
        a, b = _sparse(ids), _sparse(w, np.float32)
        model.check({"ids": a, "w": b}, (tf.SparseTensor(*a), tf.SparseTensor(*b)), what)
