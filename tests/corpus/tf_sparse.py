"""tf.sparse ops in a serving function, as TF2 code writes them on SparseTensor requests: cross (string crosses
with a separator) and cross_hashed, reorder of unsorted feeds, fill_empty_rows, to_dense, reshape, reduce_sum,
sparse_dense_matmul (a wide linear part) and the sparse segment reductions over embedding tables."""

from __future__ import annotations

import os

import numpy as np

from . import registry as r

TAGS = tuple(f"tag{i}" for i in range(25))
USERS = ("alice", "bob", "carol", "dave", "ünï", "")
VOCAB = 60


def _tf():
    import tensorflow as tf

    return tf


def _shuffled(rng, sp: tuple) -> tuple:
    """The same SparseTensor with its entries in a random order (feeds are not always row-major)."""
    idx, vals, shape = sp
    order = rng.permutation(len(vals))
    return idx[order], vals[order], shape


def _feeds(rng, batch, hostile):
    lens = r.row_lengths(rng, batch, 3, hostile)
    lens2 = r.row_lengths(rng, batch, 4, hostile)
    lens3 = r.row_lengths(rng, batch, 3, hostile)
    cats = r.ints(rng, int(lens2.sum()), 0, VOCAB, False)
    if hostile and cats.size:
        cats[rng.random(cats.size) < 0.2] = rng.choice(np.array([-1, -7, VOCAB, 10**12], np.int64))
    return {"tags": r.sparse(lens, r.strings(rng, int(lens.sum()), TAGS, hostile)),
            "cats": r.sparse(lens2, cats),
            "clicks": _shuffled(rng, r.sparse(lens3, r.floats(rng, int(lens3.sum()), hostile, 2.0), width=5)),
            "user": r.strings(rng, batch, USERS, hostile),
            "price": r.floats(rng, (batch, 2), hostile)}


def _module(tf):
    tf.random.set_seed(8)
    init = tf.random_normal_initializer(stddev=0.5)

    class SparseOps(tf.Module):
        def __init__(self):
            super().__init__()
            self.cross_emb = tf.Variable(init([97, 4]))
            self.hashed_emb = tf.Variable(init([50, 4]))
            self.cat_emb = tf.Variable(init([VOCAB, 3]))
            self.wide = tf.Variable(init([VOCAB, 1]))
            self.w = tf.Variable(init([4 + 4 + 3 + 3 + 1 + 5 + 1 + 2, 1]))

        @tf.function(input_signature=[{
            "tags": tf.SparseTensorSpec([None, None], tf.string), "cats": tf.SparseTensorSpec([None, None], tf.int64),
            "clicks": tf.SparseTensorSpec([None, 5], tf.float32), "user": tf.TensorSpec([None], tf.string),
            "price": tf.TensorSpec([None, 2], tf.float32)}])
        def serve(self, f):
            sp = tf.sparse
            batch = f["cats"].dense_shape[0]
            crossed = sp.cross([f["tags"], tf.expand_dims(f["user"], 1)], separator="#")      # SparseCrossV2
            cross_ids = crossed.with_values(tf.strings.to_hash_bucket_fast(crossed.values, 97))
            cross = tf.nn.safe_embedding_lookup_sparse(self.cross_emb, cross_ids, combiner="sqrtn")
            hashed = sp.cross_hashed([f["tags"], f["cats"]], num_buckets=50)                # SparseCross hashed
            hashed_emb = tf.nn.safe_embedding_lookup_sparse(self.hashed_emb, hashed, combiner="mean")
            # ids wrapped into the table, empty rows filled, then a segment mean over the rows
            cats = f["cats"].with_values(tf.math.floormod(f["cats"].values, VOCAB))
            filled, empty = sp.fill_empty_rows(cats, tf.constant(0, tf.int64))
            seg = sp.segment_mean(self.cat_emb, filled.values, filled.indices[:, 0], num_segments=batch)
            seg_sum = sp.segment_sqrt_n(self.cat_emb, filled.values, filled.indices[:, 0], num_segments=batch)
            seg = tf.where(tf.expand_dims(empty, 1), tf.zeros_like(seg), seg)
            # a wide linear part: one-hot rows of the ids times a weight column
            onehot = tf.SparseTensor(tf.stack([cats.indices[:, 0], cats.values], 1), tf.ones_like(cats.values,
                                                                                            tf.float32),
                                     tf.stack([batch, tf.constant(VOCAB, tf.int64)]))
            wide = sp.sparse_dense_matmul(onehot, self.wide)
            clicks = sp.reorder(f["clicks"])                                                 # SparseReorder
            clicks = sp.reshape(clicks, [-1, 5])                                             # SparseReshape
            dense_clicks = sp.to_dense(clicks)                                               # SparseToDense
            total = tf.expand_dims(sp.reduce_sum(clicks, axis=1), 1)                         # SparseReduceSum
            emb = tf.concat([cross, hashed_emb, seg, seg_sum], axis=1)
            x = tf.concat([emb, wide, dense_clicks, total, f["price"]], axis=1)
            return {"score": tf.sigmoid(tf.matmul(x, self.w)), "embedding": emb, "wide": wide,
                    "clicks": tf.concat([dense_clicks, total], 1)}

    return SparseOps()


@r.entry("tf_sparse", feeds=_feeds)
def tf2_sparse_ops(out_dir: str) -> dict:
    """tf.sparse ops in a TF2 SavedModel's serving function."""
    tf = _tf()
    m = _module(tf)
    tf.saved_model.save(m, os.path.join(out_dir, "sm"), signatures={"serving_default": m.serve})
    return {"saved_model": "sm", "call": "serve"}
