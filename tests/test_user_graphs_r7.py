"""Round 7 of graphs written the ways users write them (the survey of 2026-12-11: DIN / DCN-v2 / DeepFM / two-tower
heads with padded histories masked by -inf, Keras preprocessing layers in a served function, tf.math edge cases,
narrow / bfloat16 / bool / rank-3 feeds, SavedModels with several signatures and pass-through outputs): what gave a
silent wrong answer, crashed or failed to import now matches TF, or fails with an error naming the node and op.

- a fill with -inf or NaN (`tf.fill(tf.shape(s), -np.inf)`, DIN's masked scores; a pad or SparseToDense default of
  -inf) crashed the build inside TVM's legalization of R.full ("argument of type 'PrimType' is not iterable");
- float max / min reductions started at the dtype's finite extremes: tf.reduce_max of a row that is all -inf (a
  max pooling over a fully padded history), tf.math.segment_max and tf.sparse.reduce_max gave -3.4e38 (-65504 in
  float16) where TF gives -inf;
- tf.math.floormod of floats lost x past 2^24 (floormod(1e20, 3.0) gave 2.2e12) and gave NaN for an infinite
  divisor; tf.math.multiply_no_nan (MulNoNan), tf.math.xlog1py (Xlog1py) and tf.truncatemod of floats had no
  converter;
- tf.pow of integers failed the build ('power only applies to float'); tf.pow(x, 0.5) was pow() where TF's
  Grappler serves sqrt(x) (NaN at -inf, -0 at -0) and pow(x, 3) is x * square(x) there;
- tf.roll (Roll), tf.pad in REFLECT / SYMMETRIC mode (MirrorPad) and tf.histogram_fixed_width had no converter.

Probes that already matched TF and that nothing else covered (casts of NaN / inf / negative floats, Keras
preprocessing layers' output modes, uint16 / bfloat16 / bool / rank-3 feeds, SavedModel signatures and pass-through
outputs, DCN / FM / causal-attention Keras heads) keep a regression test here. Ops still refused, by name and node:
MatrixDiagV3 / MatrixDiagPartV3 / MatrixSetDiagV3, MaxPool, InTopKV2, CumulativeLogsumexp, Lgamma / Erfinv, Pow of
integers by a run-time exponent."""

from __future__ import annotations

import numpy as np
import pytest

import recom_tvm
from recom_tvm import config

from conftest import FunctionModel, assert_matches_tf, outcome
from test_user_graphs_r6 import SavedModelCheck

NAN, INF = np.nan, np.inf


@pytest.fixture()
def no_fallback(monkeypatch):
    monkeypatch.setattr(config, "host_fallback", False)


def _all(model, feeds: dict, what: str) -> dict:
    """model.check with the TF arguments in the feeds' order."""
    return model.check(feeds, tuple(feeds.values()), what)


def test_din_attention_over_a_history_masked_with_inf(no_fallback):
    """DIN-style attention written with plain TF: scores of the candidate against each history item, masked with
    tf.fill(shape, -inf) (its R.full crashed the build) or a large negative, softmax over the padded history (NaN
    for a user with no history, as TF), masked mean and max pooling (the max of an all -inf row was -3.4e38)."""
    import tensorflow as tf

    rng = np.random.default_rng(71)
    table = tf.constant(rng.normal(size=(20, 4)).astype(np.float32))
    w1 = tf.constant(rng.normal(size=(16, 8)).astype(np.float32))
    w2 = tf.constant(rng.normal(size=(8, 1)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, None], tf.int64)])
    def serve(item, hist):
        q, h = tf.gather(table, item), tf.gather(table, hist)
        mask = tf.not_equal(hist, 0)
        qt = tf.broadcast_to(q[:, None, :], tf.shape(h))
        att_in = tf.concat([qt, h, qt - h, qt * h], -1)
        s = tf.squeeze(tf.matmul(tf.nn.sigmoid(tf.einsum("btd,de->bte", att_in, w1)), w2), -1)
        s_inf = tf.where(mask, s, tf.fill(tf.shape(s), -np.inf))
        s_big = tf.where(mask, s, tf.ones_like(s) * (-2.0 ** 32 + 1))
        a_big = tf.nn.softmax(s_big)
        lens = tf.reduce_sum(tf.cast(mask, tf.float32), 1, keepdims=True)
        return {"a_inf": tf.nn.softmax(s_inf), "a_big": a_big, "lsm": tf.nn.log_softmax(s_inf),
                "pooled": tf.reduce_sum(a_big[:, :, None] * h, 1),
                "mean": tf.math.divide_no_nan(tf.reduce_sum(h * tf.cast(mask, tf.float32)[:, :, None], 1), lens),
                "max": tf.reduce_max(tf.where(mask[:, :, None], h, -np.inf * tf.ones_like(h)), 1),
                "padded": tf.pad(s, [[0, 0], [0, 2]], constant_values=-np.inf)}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    item = np.array([1, 2, 3, 4], np.int64)
    hist = np.array([[1, 2, 0, 0], [0, 0, 0, 0], [5, 6, 7, 8], [19, 0, 3, 0]], np.int64)
    got = _all(model, {"item": item, "hist": hist}, "B=4")
    assert np.all(got["optimized"]["max"][1] == -INF)
    for what, i, h in (("B=1 no history", item[1:2], hist[1:2]), ("B=0", item[:0], hist[:0]),
                       ("T=0", item, hist[:, :0]), ("id 20", item[:1], hist[:1] + 19)):
        _all(model, {"item": i, "hist": h}, what)


def test_max_and_min_of_infinite_rows(no_fallback):
    """tf.reduce_max / reduce_min over rows of -inf / +inf (float16, float32, float64), over the batch, over all;
    tf.math.segment_max (a recom kernel), tf.sparse.reduce_max (a NaN then -inf: -inf) and unsorted_segment_max
    with empty segments beside them. TVM's reductions started at the finite extremes (-3.4e38)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None], tf.int32)])
    def serve(x, s):
        return {"max": tf.reduce_max(x, 1), "min": tf.reduce_min(-x, 1), "max0": tf.reduce_max(x, 0),
                "all": tf.reduce_max(x), "keep": tf.reduce_max(x[:, :, None], axis=1),
                "max16": tf.reduce_max(tf.cast(x, tf.float16), 1), "min64": tf.reduce_min(-tf.cast(x, tf.float64), 1),
                "smax": tf.math.segment_max(x, tf.range(tf.shape(x)[0]) // 2),
                "smin": tf.math.segment_min(-x, tf.range(tf.shape(x)[0]) // 2),
                "spmax": tf.sparse.reduce_max(tf.sparse.from_dense(x), 1),
                "usmax": tf.math.unsorted_segment_max(x, s, 4), "usmin": tf.math.unsorted_segment_min(-x, s, 4),
                "imax": tf.reduce_max(tf.cast(x > 0, tf.int32) - 5, 1)}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    x = np.array([[-INF, -INF, -INF], [1, -INF, 2], [-3.4028235e38, -INF, -INF], [NAN, -INF, -INF]], np.float32)
    s = np.array([0, 1, 1, 3], np.int32)
    got = _all(model, {"x": x, "s": s}, "B=4")["imported"]
    assert got["max"][0] == -INF and got["min"][0] == INF and got["max16"][2] == -INF
    _all(model, {"x": x[:1], "s": s[:1]}, "B=1")
    _all(model, {"x": x[:0], "s": s[:0]}, "B=0")


def test_division_and_modulo_family(no_fallback):
    """divide_no_nan, xlogy, xdivy, xlog1py (no converter before), multiply_no_nan (none before), floordiv /
    floormod of floats (floormod lost x past 2^24 and gave NaN by an infinite divisor) and of negative ints,
    truncatediv / truncatemod of ints and truncatemod of floats (refused before)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.float32),
                                  tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32)])
    def serve(x, y, i, j):
        return {"dnn": tf.math.divide_no_nan(x, y), "xlogy": tf.math.xlogy(x, y), "xdivy": tf.math.xdivy(x, y),
                "xlog1py": tf.math.xlog1py(x, y), "mnn": tf.math.multiply_no_nan(x, y),
                "ffm": tf.math.floormod(x, y), "ffd": tf.math.floordiv(x, y), "ftmod": tf.truncatemod(x, y),
                "fm3": tf.math.floormod(x, 3.0), "fmn": tf.math.floormod(x, -2.5),
                "ifm": tf.math.floormod(i, j), "ifd": tf.math.floordiv(i, j), "tdiv": tf.truncatediv(i, j),
                "tmod": tf.truncatemod(i, j)}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    x = np.array([0, 0, 1, -7, 7, -7.5, 7.5, NAN, INF, -INF, 0, 5, -0.0, 3, 1e20, -1e20, 1e-30, 5], np.float32)
    y = np.array([0, NAN, 0, 2, -2, 2, -2, 1, 3, 3, INF, -INF, -1, -0.0, 3, 7, -1e-30, INF], np.float32)
    i = np.array([-7, 7, -7, 7, 0, -2147483648, 5, -1, 1, 3, 6, -6, 8, -8, 2147483647, -9, 9, 0], np.int32)
    j = np.array([2, -2, -2, 2, 3, 3, 1, 5, 5, -3, 4, 4, -3, -3, 2, 4, -4, 7], np.int32)
    got = _all(model, {"x": x, "y": y, "i": i, "j": j}, "hostile")["imported"]
    assert got["fm3"][14] == 2.0 and got["ffm"][17] == 5.0, (got["fm3"], got["ffm"])
    _all(model, {"x": x[:0], "y": y[:0], "i": i[:0], "j": j[:0]}, "B=0")


def test_pow_as_a_served_graph_computes_it(no_fallback):
    """tf.pow of integers by a constant (the build failed: TVM's power is float-only): by squaring, wrapping as
    TF's; a negative or run-time exponent is refused by name. Float pow by 0.5 / -0.5 / 2 / 3 / -1 / 1 as TF's
    Grappler rewrites it (sqrt, rsqrt, square, x * square(x), reciprocal, x): pow(-inf, 0.5) is NaN there, not inf."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.float32),
                                  tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int64)])
    def serve(x, y, i, k):
        return {"p": tf.pow(x, y), "half": tf.pow(x, 0.5), "mhalf": tf.pow(x, -0.5), "two": tf.pow(x, 2.0),
                "three": tf.pow(x, 3.0), "m1": tf.pow(x, -1.0), "one": tf.pow(x, 1.0), "zero": tf.pow(x, 0.0),
                "i2": tf.pow(i, 2), "i3": tf.pow(-i, 3), "i0": tf.pow(i, 0), "i1": tf.pow(i, 1), "k13": k ** 13}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    x = np.array([-2, -INF, NAN, 1e20, -0.0, INF, 1, -1, 0, 2, -8, 0.5, 1.1, 3e12], np.float32)
    y = np.array([0.5, 0.5, 0, 2, -1, -INF, NAN, INF, -0.5, 1e10, 1 / 3, -INF, 3, 3], np.float32)
    i = np.array([0, 1, -1, 7, -46341, 46341, 2147483647, -2147483648, 3, 5, 11, 100, -3, 1290], np.int32)
    k = i.astype(np.int64) * 1000003
    got = _all(model, {"x": x, "y": y, "i": i, "k": k}, "hostile")["imported"]
    assert np.isnan(got["half"][1]) and np.signbit(got["half"][4])  # sqrt(-inf), sqrt(-0.0)
    _all(model, {"x": x[:0], "y": y[:0], "i": i[:0], "k": k[:0]}, "B=0")

    for exponent, match in ((tf.constant(-2), "negative integer powers"), (None, "run-time exponent")):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32)])
        def bad(a, e):
            return {"p": tf.pow(a, e if exponent is None else exponent)}

        with pytest.raises(recom_tvm.ConversionError, match=f"Pow node 'Pow'.*{match}"):
            recom_tvm.from_tensorflow(bad.get_concrete_function())


def test_roll_mirror_pad_and_histogram(no_fallback):
    """tf.roll (one and several axes, the batch axis too), tf.pad in REFLECT and SYMMETRIC mode and
    tf.histogram_fixed_width: no converters before. TF's errors: a batch of 0 rows under REFLECT padding (TF
    checks every dim), a NaN in the histogram's values, paddings past a static dim (at import)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None, 3], tf.int64)])
    def serve(x, h):
        return {"hist": tf.histogram_fixed_width(x, [0.0, 10.0], nbins=5),
                "hist64": tf.histogram_fixed_width(x, [-1.0, 1.0], nbins=3, dtype=tf.int64),
                "roll": tf.roll(x, shift=1, axis=1), "roll2": tf.roll(x, shift=[-1, 2, 3], axis=[0, 1, 1]),
                "roll_ids": tf.roll(h, shift=-1, axis=-1), "reflect": tf.pad(x, [[0, 0], [2, 3]], mode="REFLECT"),
                "sym": tf.pad(x, [[1, 0], [4, 2]], mode="SYMMETRIC"), "sym_ids": tf.pad(h, [[0, 0], [0, 3]], "SYMMETRIC")}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    x = np.array([[-1, 0, 3.3, 9.99], [10, 11, INF, 2], [5, 5, 5, -INF]], np.float32)
    h = np.array([[1, 2, 3], [4, 0, 0], [7, 8, 9]], np.int64)
    for what, xs, hs in (("B=3", x, h), ("B=1", x[:1], h[:1]), ("B=0", x[:0], h[:0])):
        _all(model, {"x": xs, "h": hs}, what)
    nan = x.copy()
    nan[1, 1] = NAN
    _all(model, {"x": nan, "h": h}, "NaN in the histogram")

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def too_wide(a):
        return {"r": tf.pad(a, [[0, 0], [4, 0]], mode="REFLECT")}

    with pytest.raises(recom_tvm.ConversionError, match="MirrorPad node 'MirrorPad'.*4, 0 not less than 4"):
        recom_tvm.from_tensorflow(too_wide.get_concrete_function())


def test_casts_of_nan_inf_and_negative_floats(no_fallback):
    """Regression (matched): tf.round / rint (banker's), and the casts whose result TF defines the same way at every
    size: in-range values to every int type, NaN / inf / out-of-range to int32 / int64 (the x86 'indefinite'
    INT_MIN), negatives to uint32 / uint64 (wrapped). (Out-of-range floats to 8- / 16-bit ints are not checked:
    TF-CPU's own result there changes with the tensor's length, its vectorized and scalar loops disagree.)"""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.float64),
                                  tf.TensorSpec([None], tf.float32)])
    def serve(x, d, small):
        return {"round": tf.round(x), "rint": tf.math.rint(x), "round64": tf.round(d), "i32": tf.cast(x, tf.int32),
                "i64": tf.cast(x, tf.int64), "d_i32": tf.cast(d, tf.int32), "d_i64": tf.cast(d, tf.int64),
                "bool": tf.cast(x, tf.bool), "u32": tf.cast(small, tf.uint32), "u64": tf.cast(small, tf.uint64),
                **{t.name: tf.cast(tf.abs(small), t) for t in (tf.int8, tf.uint8, tf.int16, tf.uint16)}}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, -3.7, 3.7, 1e10, -1e10, NAN, INF, -INF, -0.0, 70000,
                  2147483520, -2147483648, 3e9], np.float32)
    d = x.astype(np.float64)
    small = np.array([0.5, -1, -3.7, 127.9, 100, -100, 0, -0.0, 2.5, 12, -12, 99.5, -99.5, 1, -1, 7, 8, 9, 10],
                     np.float32)
    _all(model, {"x": x, "d": d, "small": small}, "hostile")
    _all(model, {"x": x[:0], "d": d[:0], "small": small[:0]}, "B=0")


def test_keras_preprocessing_layers_in_a_served_function(no_fallback):
    """Regression (matched): Keras 3 preprocessing layers inside a tf.function: IntegerLookup with a mask token and
    2 OOV buckets / multi_hot / count without OOV / one_hot / invert, StringLookup one_hot / multi_hot with a mask
    / count / tf_idf / no OOV (-1), Discretization (ids and one_hot), HashedCrossing (ids and one_hot),
    CategoryEncoding count with weights / multi_hot / one_hot (a token past num_tokens or negative: TF's error),
    Normalization (a variance of 0, invert), TextVectorization (padded ids, multi_hot, bigram counts)."""
    import keras
    import tensorflow as tf

    L = keras.layers
    vocab = [7, 11, 13, 42]
    il = [L.IntegerLookup(vocabulary=vocab, mask_token=0, num_oov_indices=2),
          L.IntegerLookup(vocabulary=vocab, output_mode="multi_hot"),
          L.IntegerLookup(vocabulary=vocab, output_mode="count", num_oov_indices=0),
          L.IntegerLookup(vocabulary=vocab, output_mode="one_hot"), L.IntegerLookup(vocabulary=vocab, invert=True)]
    sl = [L.StringLookup(vocabulary=["a", "b", "c"], output_mode="one_hot"),
          L.StringLookup(vocabulary=["a", "b", "c"], output_mode="multi_hot", mask_token=""),
          L.StringLookup(vocabulary=["a", "b", "c"], output_mode="count", num_oov_indices=2),
          L.StringLookup(vocabulary=["a", "b", "c"], output_mode="tf_idf", idf_weights=[0.5, 1.0, 2.0]),
          L.StringLookup(vocabulary=["a", "b", "c"], num_oov_indices=0)]
    disc = [L.Discretization(bin_boundaries=[-1.0, 0.0, 2.5]),
            L.Discretization(bin_boundaries=[-1.0, 0.0, 2.5], output_mode="one_hot")]
    cross = [L.HashedCrossing(num_bins=7), L.HashedCrossing(num_bins=5, output_mode="one_hot")]
    ce = [L.CategoryEncoding(num_tokens=5, output_mode=m) for m in ("count", "multi_hot", "one_hot")]
    norm = [L.Normalization(mean=[1.0, -2.0], variance=[4.0, 0.0]),
            L.Normalization(mean=[1.0, -2.0], variance=[4.0, 0.25], invert=True)]
    tv = [L.TextVectorization(vocabulary=["hello", "world", "the", "cat"], output_sequence_length=4),
          L.TextVectorization(vocabulary=["hello", "world", "the", "cat"], output_mode="multi_hot",
                              standardize="lower", split="whitespace"),
          L.TextVectorization(vocabulary=["hello", "world", "hello world"], ngrams=2, output_mode="count")]

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.int64), tf.TensorSpec([None], tf.int64),
                                  tf.TensorSpec([None, 3], tf.string), tf.TensorSpec([None], tf.string),
                                  tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None, 3], tf.int32),
                                  tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None], tf.string)])
    def serve(ids, one, words, word, num, tokens, weights, text):
        out = {f"il{n}": layer(ids) for n, layer in enumerate(il[:3])}
        out.update(il3=il[3](one), il4=il[4](tf.clip_by_value(ids, 0, 4)), sl0=sl[0](word), sl4=sl[4](word))
        out.update({f"sl{n}": sl[n](words) for n in (1, 2, 3)})
        out.update(d0=disc[0](num), d1=disc[1](num[:, 0]), hc0=cross[0]((one, word)), hc1=cross[1]((one, word)),
                   cew=ce[0](tokens, count_weights=weights), ce0=ce[0](tokens), ce1=ce[1](tokens), ce2=ce[2](tokens[:, 0]),
                   n0=norm[0](num), n1=norm[1](num), tv0=tv[0](text), tv1=tv[1](text), tv2=tv[2](text))
        return out

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    feeds = {"ids": np.array([[7, 0, 99], [42, 42, 13], [-5, 11, 7]], np.int64),
             "one": np.array([11, 0, 10 ** 12], np.int64),
             "words": np.array([["a", "", "zz"], ["c", "c", "b"], ["", "", ""]], object),
             "word": np.array(["b", "zz", "long" * 100], object),
             "num": np.array([[-1, 0], [NAN, 2.5], [-INF, 100]], np.float32),
             "tokens": np.array([[0, 4, 4], [1, 2, 3], [3, 3, 3]], np.int32),
             "weights": np.array([[0.5, 1, 2], [1, 1, -1], [0, 0, 1]], np.float32),
             "text": np.array(["Hello, World! the CAT", "", "  the   the  cat. hello world " * 50], object)}
    _all(model, feeds, "B=3")
    _all(model, {k: v[:0] for k, v in feeds.items()}, "B=0")
    for bad in (5, -1):
        tokens = feeds["tokens"].copy()
        tokens[0, 0] = bad
        _all(model, {**feeds, "tokens": tokens}, f"token {bad}")


def test_saved_model_signatures_and_pass_through_outputs(no_fallback, tmp_path):
    """Regression (matched): a tf.Module saved with three signatures (serving_default and two more, imported by
    name; an unknown name is a clear ModelFormatError), outputs that are a feed passed through, one tensor under
    two keys, a constant vector, a scalar constant and the feed's shape; B = 0 through each."""
    import tensorflow as tf

    class Model(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.arange(6, dtype=np.float32).reshape(3, 2))
            self.table = tf.Variable(np.random.default_rng(77).normal(size=(10, 2)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def score(self, x):
            y = tf.matmul(x, self.w)
            return {"y": y, "y_again": y, "x_back": tf.identity(x), "const": tf.constant([1.0, 2.0]),
                    "scalar": tf.constant(7, tf.int64), "shape": tf.shape(x)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="ids")])
        def embed(self, ids):
            return {"emb": tf.gather(self.table, ids)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="ids"),
                                      tf.TensorSpec([None, 3], tf.float32, name="x")])
        def both(self, ids, x):
            return tf.reduce_sum(tf.gather(self.table, ids), 1) + tf.reduce_sum(x, 1)

    m = Model()
    path = str(tmp_path / "model")
    tf.saved_model.save(m, path, signatures={"serving_default": m.score, "embed": m.embed, "both": m.both})
    fns = tf.saved_model.load(path).signatures
    x = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    ids = np.array([1, 9], np.int64)
    for sig, feeds in (("serving_default", {"x": x}), ("embed", {"ids": np.append(ids, 0)}),
                       ("both", {"ids": ids, "x": x}), ("both", {"ids": ids + 1, "x": x})):
        mod, params, _ = recom_tvm.from_tensorflow(path, signature=sig)
        for name, m_ in (("imported", mod), ("optimized", recom_tvm.optimize(mod))):
            built = recom_tvm.build(m_, "llvm", params)
            for what, fd in (("B=2", feeds), ("B=0", {k: v[:0] for k, v in feeds.items()})):
                exp = outcome(lambda: {k: v.numpy() for k, v in fns[sig](
                    **{k: tf.constant(v) for k, v in fd.items()}).items()})
                got = outcome(lambda: built.run(fd))
                if isinstance(exp, BaseException) or isinstance(got, BaseException):
                    assert_matches_tf(got, exp, f"{sig} {what} [{name}]")
                    continue
                assert sorted(got) == sorted(exp), (sig, sorted(got), sorted(exp))
                for k in exp:
                    assert got[k].dtype == exp[k].dtype, (sig, k, got[k].dtype, exp[k].dtype)
                    assert_matches_tf(got[k], exp[k], f"{sig} {what} [{name}] output {k!r}")
    with pytest.raises(recom_tvm.ModelFormatError, match="no signature 'nope'.*'both', 'embed', 'serving_default'"):
        recom_tvm.from_tensorflow(path, signature="nope")


def test_feed_forms_uint16_bfloat16_bool_rank3(no_fallback):
    """Regression (matched): uint16 ids cast for a gather, bfloat16 math (values fed as float32: the native host
    stage refuses bfloat16 feeds, as float16 ones), bool feeds (select, all, count), a rank-3 feed, uint32 / uint64
    arithmetic at their extremes, feeds passed through; B = 0; a feed of the wrong dtype, rank or static dim is a
    FeedError naming it."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(78).normal(size=(70000, 2)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.uint16), tf.TensorSpec([None, 2], tf.float32),
                                  tf.TensorSpec([None, 2], tf.bool), tf.TensorSpec([None, 2, 3], tf.float32),
                                  tf.TensorSpec([None], tf.uint32), tf.TensorSpec([None], tf.uint64)])
    def serve(u16, f, b, r3, u32, u64):
        bf = tf.cast(f, tf.bfloat16)
        return {"emb": tf.gather(table, tf.cast(u16, tf.int32)), "bf": tf.cast(bf, tf.float32) * 2.0,
                "bf2": bf * bf, "bf_relu": tf.nn.relu(bf), "sel": tf.where(b, 1.0, -1.0), "not": tf.logical_not(b),
                "all": tf.reduce_all(b, 1), "cnt": tf.math.count_nonzero(b, 1), "r3": tf.reduce_sum(r3, [1, 2]),
                "r3t": tf.transpose(r3, [0, 2, 1]), "u16": u16, "b": b,
                "u32": u32 // tf.constant(3, tf.uint32), "u64": u64 + tf.constant(1, tf.uint64)}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    feeds = {"u16": np.array([[0, 65535], [69, 7]], np.uint16),
             "f": np.array([[1.5, -3e38], [NAN, 0.1]], np.float32),
             "b": np.array([[True, False], [True, True]]), "r3": np.arange(12, dtype=np.float32).reshape(2, 2, 3),
             "u32": np.array([4294967295, 7], np.uint32), "u64": np.array([2 ** 64 - 1, 5], np.uint64)}
    _all(model, feeds, "B=2")
    _all(model, {k: v[:0] for k, v in feeds.items()}, "B=0")
    built = model.variants["optimized"]
    for k, v, match in (("b", np.array([[1, 0], [1, 1]], np.uint8), "feed 'b' must be bool"),
                        ("u16", np.array([[0, -1], [69, 7]], np.int32), "feed 'u16' must be uint16"),
                        ("r3", np.ones((2, 2, 4), np.float32), r"feed 'r3' must have shape \[\?, 2, 3\]"),
                        ("r3", np.ones((2, 6), np.float32), "feed 'r3' must have rank 3")):
        with pytest.raises(recom_tvm.FeedError, match=match):
            built.run({**feeds, k: v})


def test_very_long_and_empty_strings(no_fallback):
    """Regression (matched): string feeds of 100 kB, empty strings, non-UTF-8 bytes and NULs through
    to_hash_bucket_fast, strings.length and reduce_join (rank 1 and 2 feeds), B = 0; a string output is a clear
    ConversionError naming the output."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None, 2], tf.string)])
    def serve(s, t):
        return {"h": tf.strings.to_hash_bucket_fast(s, 100), "len": tf.strings.length(s),
                "ht": tf.strings.to_hash_bucket_fast(t, 1000), "empty": tf.equal(s, ""),
                "join": tf.strings.length(tf.strings.reduce_join(t, axis=1, separator="|"))}

    model = FunctionModel(serve.get_concrete_function(), passes=False)
    s = np.array(["", "a" * 100000, "\x00\xff", "héllo"], object)
    t = np.array([["", ""], ["x" * 5000, "y"], ["", "z"], ["q", ""]], object)
    _all(model, {"s": s, "t": t}, "B=4")
    _all(model, {"s": s[:0], "t": t[:0]}, "B=0")
    _all(model, {"s": np.array([b"", b"\xff\xfe"], object), "t": t[:2]}, "bytes")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def echo(s):
        return {"s": tf.strings.upper(s)}

    with pytest.raises(recom_tvm.ConversionError, match="output 's'.*string tensor"):
        recom_tvm.from_tensorflow(echo.get_concrete_function())


@pytest.fixture(scope="module")
def keras_heads(tmp_path_factory):
    """A tf_keras model saved as a SavedModel with dict inputs and outputs: DCN-v2 cross layers (full rank twice,
    then low rank) over embeddings and dense features, a DeepFM second-order term, a causal MultiHeadAttention
    (use_causal_mask) over a behaviour history max-pooled, a Dropout (inference: identity)."""
    import tensorflow as tf  # noqa: F401 - (the Lambdas' module)
    import tf_keras as K

    K.utils.set_random_seed(79)
    ids = K.Input((4,), dtype="int32", name="ids")
    num = K.Input((3,), name="num")
    hist = K.Input((5,), dtype="int64", name="hist")
    emb = K.layers.Embedding(50, 4)(ids)
    fm = K.layers.Lambda(_fm_term, name="fm")(emb)
    x0 = K.layers.Concatenate()([K.layers.Flatten()(emb), num])
    x = x0
    for _ in range(2):
        x = K.layers.Add()([K.layers.Multiply()([x0, K.layers.Dense(19)(x)]), x])
    x = K.layers.Add()([K.layers.Multiply()([x0, K.layers.Dense(19)(K.layers.Dense(4, use_bias=False)(x))]), x])
    h = K.layers.Embedding(30, 8)(hist)
    att = K.layers.MultiHeadAttention(num_heads=2, key_dim=4)(h, h, use_causal_mask=True)
    pooled = K.layers.GlobalMaxPooling1D()(att)
    deep = K.layers.Dropout(0.3)(K.layers.Dense(8, activation="relu")(x0))
    score = K.layers.Dense(1, activation="sigmoid", name="score")(K.layers.Concatenate()([x, deep, fm, pooled]))
    model = K.Model({"ids": ids, "num": num, "hist": hist}, {"score": score, "fm": fm, "cross": x, "att": att})
    path = str(tmp_path_factory.mktemp("keras_heads") / "model")
    model.save(path)
    return SavedModelCheck(path)


def _fm_term(e):
    """FM's second-order interactions: 0.5 * sum((sum_i v_i)^2 - sum_i v_i^2)."""
    import tensorflow as tf

    return 0.5 * tf.reduce_sum(tf.square(tf.reduce_sum(e, 1)) - tf.reduce_sum(tf.square(e), 1), 1, keepdims=True)


@pytest.mark.parametrize("case", ["B=3", "B=0", "hostile dense", "id 50"])
def test_keras_dcn_deepfm_causal_attention_heads(no_fallback, keras_heads, case):
    """Regression (matched): the heads above against TF, NaN and overflowing dense features, an id past the
    table (TF's error)."""
    ids = np.array([[1, 2, 3, 4], [49, 0, 0, 7], [5, 5, 5, 5]], np.int32)
    num = np.array([[0.5, -1, 2], [1e3, -1e3, 0], [0.25, 1, 1]], np.float32)
    hist = np.array([[1, 2, 3, 0, 0], [29, 28, 27, 26, 25], [0, 0, 0, 0, 0]], np.int64)
    if case == "hostile dense":
        num = np.array([[NAN, 1, 2], [1e30, -1e30, 0], [INF, 0, 0]], np.float32)
    if case == "id 50":
        ids = ids + 1
    n = 0 if case == "B=0" else 3
    keras_heads.check({"ids": ids[:n], "num": num[:n], "hist": hist[:n]}, case)


def test_ops_still_refused_are_named(no_fallback):
    """tf.linalg.diag / diag_part / set_diag, a Keras MaxPooling1D, tf.math.in_top_k, cumulative_logsumexp and
    lgamma have no converter: UnsupportedOpError naming each op and its node (never a crash at build)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32)])
    def serve(x, i):
        sq = tf.reshape(x, [-1, 2, 2])
        return {"diag": tf.linalg.diag(x), "part": tf.linalg.diag_part(sq),
                "set": tf.linalg.set_diag(sq, tf.zeros_like(x[:, :2])),
                "pool": tf.nn.max_pool1d(x[:, :, None], 2, 1, "VALID"), "topk": tf.math.in_top_k(i, x, 2),
                "clse": tf.math.cumulative_logsumexp(x, axis=1), "lgamma": tf.math.lgamma(x)}

    with pytest.raises(recom_tvm.UnsupportedOpError) as err:
        recom_tvm.from_tensorflow(serve.get_concrete_function())
    text = str(err.value)
    for op, node in (("MatrixDiagV3", "diag"), ("MatrixDiagPartV3", "diag_part"), ("MatrixSetDiagV3", "set_diag"),
                     ("MaxPool", "MaxPool1d"), ("InTopKV2", "in_top_k/InTopKV2"),
                     ("CumulativeLogsumexp", "CumulativeLogsumexp"), ("Lgamma", "Lgamma")):
        assert f"'{op}' at node '{node}'" in text, (op, text)
