"""Embeddings gathered straight from feed ids (a Keras Embedding over a raw int input, tf.gather) and a bag that
keeps negative ids (SparseFillEmptyRows + embedding_lookup_sparse, no id filter): TF-CPU's GatherV2 raises
InvalidArgumentError for any id outside [0, rows), negative ones included; so must every build (issue 14, 1)."""

from __future__ import annotations

import numpy as np
import pytest

from recom_tvm import report

from conftest import FunctionModel


@pytest.fixture(scope="module")
def gathers():
    import tensorflow as tf
    import tf_keras

    rng = np.random.default_rng(7)
    t_item = tf.constant(rng.normal(size=(30, 4)).astype(np.float32))
    t_tags = tf.constant(rng.normal(size=(20, 8)).astype(np.float32))
    tf_keras.utils.set_random_seed(1)
    emb = tf_keras.layers.Embedding(12, 3)
    emb.build((None, 1))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, 1], tf.int64),
                                  tf.SparseTensorSpec([None, None], tf.int64)])
    def serve(item, user, tags):
        a = tf.gather(t_item, item)  # [B, 4]
        b = tf.reshape(emb(user), [-1, 3])  # Keras Embedding over the raw ids: [B, 3]
        # safe_embedding_lookup_sparse without its filter of negative ids: the bag form of a plain gather
        filled, empty = tf.sparse.fill_empty_rows(tags, tf.constant(0, tf.int64))
        c = tf.nn.embedding_lookup_sparse(t_tags, filled, None, combiner="mean")
        empty = tf.tile(tf.reshape(empty, [-1, 1]), tf.stack([1, tf.shape(c)[1]]))
        c = tf.compat.v1.where(empty, tf.zeros_like(c), c)
        e = tf.concat([a, b, c], axis=1)
        return {"embedding": e, "score": tf.reduce_sum(tf.nn.relu(e), axis=1, keepdims=True)}

    return FunctionModel(serve.get_concrete_function())


def _feeds(rng, batch, item=None, user=None, tag=None):
    item = rng.integers(0, 30, batch) if item is None else item
    user = rng.integers(0, 12, (batch, 1)) if user is None else user
    counts = rng.integers(0, 4, batch)
    rows = np.repeat(np.arange(batch), counts)
    cols = np.concatenate([np.arange(k) for k in counts]) if counts.sum() else np.zeros(0, np.int64)
    vals = rng.integers(0, 20, len(rows))
    if tag is not None and len(vals):
        vals[len(vals) // 2] = tag
    idx = np.stack([rows, cols], 1).astype(np.int64).reshape(-1, 2)
    tags = (idx, vals.astype(np.int64), np.array([batch, max(int(counts.max()) if batch else 1, 1)], np.int64))
    return np.asarray(item, np.int64), np.asarray(user, np.int64), tags


def _check(model, args, what):
    import tensorflow as tf

    item, user, tags = args
    feeds = dict(zip(model.names, args))
    return model.check(feeds, (item, user, tf.SparseTensor(*tags)), what)


def test_columns_fuse(gathers):
    """The three embeddings become one fused kernel (so the kernel's clamp is what a missed check would hit)."""
    counts = report.relax_op_counts(gathers.opt)
    assert counts.get("recom.fused_embedding") == 1, counts


@pytest.mark.parametrize("batch", [1, 5, 40])
def test_in_range_ids_match_tf(gathers, batch):
    rng = np.random.default_rng(batch)
    _check(gathers, _feeds(rng, batch), f"batch={batch}")


@pytest.mark.parametrize("form", ["tf.gather", "keras Embedding", "bag"])
@pytest.mark.parametrize("bad", [-1, -7, "rows"])
def test_out_of_range_ids_raise_like_tf(gathers, form, bad):
    """A negative id (or one past the table) raises InvalidArgumentError in every build, as in TF-CPU."""
    rng = np.random.default_rng(3)
    batch = 6
    item, user, tags = _feeds(rng, batch)
    limit = {"tf.gather": 30, "keras Embedding": 12, "bag": 20}[form]
    value = limit if bad == "rows" else bad
    if form == "tf.gather":
        item[2] = value
    elif form == "keras Embedding":
        user[4, 0] = value
    else:
        item, user, tags = _feeds(rng, batch, item, user, tag=value)
        assert (tags[1] == value).any()
    results = _check(gathers, (item, user, tags), f"{form} id {value}")
    for name, got in results.items():
        assert f"= {value} is not in [0, {limit})" in str(got), (name, got)
