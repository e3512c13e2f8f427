"""Host co-run (config.host_fallback): ops without a converter run on the host through TensorFlow, feeding the
compiled module; reported at import, in the spec and by identify_columns; `load` says it needs TensorFlow."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

import recom_tvm
from recom_tvm import config

from conftest import assert_matches_tf, run_runtime_only
from test_runtime_only import BLOCK_IMPORTS

TABLE = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def exotic():
    """UnicodeScript feeds an embedding gather (the column's ids come from TF), BesselI0e a numeric input; the
    outputs are the embedding stage and a score."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.int32), tf.TensorSpec([None, 2], tf.float32)])
    def serve(cp, x):
        with tf.name_scope("dense_features/script/"):
            script = tf.strings.unicode_script(cp)
            emb = tf.reduce_mean(tf.gather(tf.constant(TABLE), tf.clip_by_value(script, 0, 299)), axis=1)
        z = tf.concat([emb, tf.math.special.bessel_i0e(x)], axis=1)
        return {"score": tf.nn.relu(tf.reduce_sum(z, axis=1, keepdims=True)), "embedding": z}

    cf = serve.get_concrete_function()
    old = config.host_fallback
    config.host_fallback = True
    try:
        mod, params, spec = recom_tvm.from_tensorflow(cf)
    finally:
        config.host_fallback = old
    return serve, mod, params, spec


def _feeds(rng, batch):
    cp = rng.choice([65, 0x4E2D, 0x3B1, 0x5D0, 1, 0x10FFFF, -1], size=(batch, 3)).astype(np.int32)
    x = rng.normal(size=(batch, 2)).astype(np.float32) * 4
    return {"cp": cp, "x": x}


def test_corun_is_reported(exotic):
    _, mod, _, spec = exotic
    assert {c["op"] for c in spec.corun} == {"UnicodeScript", "BesselI0e"}
    assert "host co-run (TensorFlow): UnicodeScript" in spec.summary()
    from recom_tvm.passes.identify_columns import summary

    assert "host co-run (TensorFlow): BesselI0e" in summary(mod)


def test_fallback_off_fails_naming_the_ops(exotic):
    serve = exotic[0]
    assert not config.host_fallback  # the test suite runs with it off (conftest)
    with pytest.raises(recom_tvm.UnsupportedOpError, match="UnicodeScript"):
        recom_tvm.from_tensorflow(serve.get_concrete_function())


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "optimized"])
def test_corun_matches_tf(exotic, optimized):
    serve, mod, params, _ = exotic
    model = recom_tvm.build(recom_tvm.optimize(mod) if optimized else mod, "llvm", params)
    rng = np.random.default_rng(3)
    for batch in (1, 7, 512):
        feeds = _feeds(rng, batch)
        exp = {k: v.numpy() for k, v in serve(**feeds).items()}
        got = model.run(feeds)
        for key in ("embedding", "score"):
            assert_matches_tf(got[key], exp[key], f"B={batch} {key}")


def test_exported_corun_model_needs_tensorflow_at_load(exotic, tmp_path):
    serve, mod, params, _ = exotic
    model = recom_tvm.build(recom_tvm.optimize(mod), "llvm", params)
    lib = str(tmp_path / "corun.so")
    model.export_library(lib)
    feeds = _feeds(np.random.default_rng(5), 9)
    np.testing.assert_allclose(recom_tvm.load(lib).run(feeds)["score"], serve(**feeds)["score"].numpy(),
                               rtol=1e-5, atol=2e-5)
    script = BLOCK_IMPORTS + textwrap.dedent(f"""
        from recom_tvm.runtime import load
        try:
            load({lib!r})
        except Exception as e:
            print(type(e).__name__, e)
    """)
    res = run_runtime_only("-c", script)
    assert "ModelFormatError" in res.stdout and "TensorFlow" in res.stdout and "UnicodeScript" in res.stdout, \
        res.stdout + res.stderr[-2000:]
