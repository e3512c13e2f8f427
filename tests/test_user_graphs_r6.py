"""Round 6 of graphs written the ways users write them (the survey of 2026-12-10: DeepCTR-style heads through
tf_keras layers, Keras mixed precision, tf.einsum forms, sorts of a run-time width, checks and clips users put in a
served graph, small-int / float64 / bool / scalar feeds, tf.strings preprocessing and vocabulary files in a
SavedModel): what gave a silent wrong answer, crashed or failed to import now matches TF, or fails with an error
naming the node and op.

- an einsum or batch matmul contracting a dim of size 0 (`bi,bi->` at B = 0) read back unwritten memory (inf);"""

from __future__ import annotations

import numpy as np
import pytest

from recom_tvm import config

from conftest import FunctionModel


@pytest.fixture()
def no_fallback(monkeypatch):
    monkeypatch.setattr(config, "host_fallback", False)


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
