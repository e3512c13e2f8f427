"""CTR architectures as the public CTR libraries write them (DeepCTR / DeepCTR-Torch, the TF model garden and
TFRS, Merlin), rewritten small with Keras 3 / TF ops: wide & deep, DeepFM's FM interaction, DCN-v2's cross
network (MatMul and Einsum forms), DIN-style attention over a behaviour sequence (masking, Softmax, heads split
with tf.split, Cumsum positions), MMoE multi-task heads, xDeepFM's CIN (Conv1D -> Conv2D, Split), a two-tower
retrieval head with TopKV2. Features come as separate dense padded inputs (Keras CTR style: one `Input((1,))` per
field, sequences padded with 0) or as SparseTensors (`safe_embedding_lookup_sparse`, TF model garden style)."""

from __future__ import annotations

import os

import numpy as np

from . import registry as r

FIELDS = {"user": 50, "item": 40, "cate": 12, "city": 20}  # raw-id fields: vocabulary sizes
DIM = 4
SEQ = 5  # behaviour sequence length (0 = padding)


def _tf():
    import tensorflow as tf

    return tf


def _keras():
    import keras

    keras.utils.set_random_seed(11)
    return keras


# ---------------------------------------------------------------------------------------------------- feeds
def _ids(rng, batch, vocab, hostile, width=1):
    """Raw ids: TF's gather rejects ids out of range (Keras' Embedding first maps [-vocab, 0) to id + vocab);
    hostile requests carry such negative ids and, in some requests, huge ones (TF raises; so must we)."""
    x = rng.integers(0, vocab, (batch, width)).astype(np.int64)
    if hostile and x.size:
        neg = rng.random(x.shape) < 0.2
        x[neg] = -rng.integers(1, vocab + 1, int(neg.sum()))
        if rng.random() < 0.3:
            x.reshape(-1)[rng.integers(0, x.size)] = rng.choice([1 << 40, vocab, -(1 << 62)])
    return x


def _dense_feeds(rng, batch, hostile):
    """One [B, 1] id input per field, a hashed string field, a [B, SEQ] history padded with 0, dense floats."""
    feeds = {k: _ids(rng, batch, v, hostile) for k, v in FIELDS.items()}
    lens = r.row_lengths(rng, batch, SEQ, hostile)
    hist = r.padded(lens, rng.integers(1, FIELDS["item"], int(lens.sum())).astype(np.int64), SEQ, 0)
    feeds["hist"] = hist
    feeds["query"] = r.strings(rng, batch, ("shoes", "phone", "book", "tv"), hostile).reshape(batch, 1)
    feeds["numeric"] = r.floats(rng, (batch, 3), hostile)
    return feeds


def _sparse_feeds(rng, batch, hostile):
    out = {}
    for k, v in FIELDS.items():
        lens = r.row_lengths(rng, batch, 3, hostile)
        ids = rng.integers(0, v, int(lens.sum())).astype(np.int64)
        if hostile and ids.size and rng.random() < 0.3:
            ids[rng.integers(0, ids.size)] = rng.choice([1 << 40, v])  # TF's gather raises
        out[k] = r.sparse(lens, ids, width=3)
    out["numeric"] = r.floats(rng, (batch, 3), hostile)
    return out


# ----------------------------------------------------------------------------------------------- building
def _inputs(keras):
    inp = {k: keras.Input((1,), dtype="int64", name=k) for k in FIELDS}
    inp["hist"] = keras.Input((SEQ,), dtype="int64", name="hist")
    inp["query"] = keras.Input((1,), dtype="string", name="query")
    inp["numeric"] = keras.Input((3,), dtype="float32", name="numeric")
    return inp


def _field_embeddings(keras, inp, dim=DIM):
    """[B, 1, dim] per field (DeepCTR's `embedding_lookup`), the hashed query among them."""
    L = keras.layers
    embs = {k: L.Embedding(v, dim, name=f"emb_{k}")(inp[k]) for k, v in FIELDS.items()}
    embs["query"] = L.Embedding(16, dim, name="emb_query")(L.Hashing(num_bins=16)(inp["query"]))
    return embs


def _export(model, out_dir: str) -> dict:
    model.export(os.path.join(out_dir, "sm"), verbose=False)
    return {"saved_model": "sm"}


def _dnn(keras, x, units=(16, 8), name="dnn"):
    for i, u in enumerate(units):
        x = keras.layers.Dense(u, activation="relu", name=f"{name}_{i}")(x)
    return x


def _score(keras, x, name="score"):
    return keras.layers.Dense(1, activation="sigmoid", name=name)(x)


# -------------------------------------------------------------------------------------------- wide & deep
@r.entry("ctr", feeds=_dense_feeds)
def ctr_wide_deep(out_dir: str) -> dict:
    """Wide & deep, DeepCTR style: a linear logit from 1-d embeddings (+ dense), a DNN over the concat."""
    keras = _keras()
    L = keras.layers
    inp = _inputs(keras)
    embs = _field_embeddings(keras, inp)
    linear = L.Add()([L.Flatten()(L.Embedding(v, 1, name=f"linear_{k}")(inp[k])) for k, v in FIELDS.items()]
                     + [L.Dense(1, use_bias=False)(inp["numeric"])])
    hist = L.GlobalAveragePooling1D()(L.Embedding(FIELDS["item"], DIM, mask_zero=True)(inp["hist"]))
    deep_in = L.Concatenate(name="features")([L.Flatten()(e) for e in embs.values()] + [hist, inp["numeric"]])
    logit = L.Add()([linear, L.Dense(1)(_dnn(keras, deep_in))])
    score = L.Activation("sigmoid", name="score")(logit)
    return _export(keras.Model(inp, {"score": score, "embedding": deep_in}), out_dir)


# ------------------------------------------------------------------------------------------------- DeepFM
class FM:
    """DeepCTR's FM layer: 0.5 * sum((sum_f e)^2 - sum_f e^2) over [B, F, D]."""

    @staticmethod
    def make(keras):
        class FMLayer(keras.layers.Layer):
            def call(self, x):
                tf = _tf()
                square_of_sum = tf.square(tf.reduce_sum(x, axis=1, keepdims=True))
                sum_of_square = tf.reduce_sum(x * x, axis=1, keepdims=True)
                return 0.5 * tf.reduce_sum(square_of_sum - sum_of_square, axis=2)

        return FMLayer()


@r.entry("ctr", feeds=_dense_feeds)
def ctr_deepfm(out_dir: str) -> dict:
    """DeepFM: FM over the stacked [B, F, D] field embeddings + a DNN, shared embeddings."""
    keras = _keras()
    L = keras.layers
    inp = _inputs(keras)
    embs = _field_embeddings(keras, inp)
    stacked = L.Concatenate(axis=1)(list(embs.values()))  # [B, F, D]
    flat = L.Concatenate(name="features")([L.Flatten()(stacked), inp["numeric"]])
    logit = L.Add()([FM.make(keras)(stacked), L.Dense(1)(_dnn(keras, flat))])
    return _export(keras.Model(inp, {"score": L.Activation("sigmoid")(logit), "embedding": flat}), out_dir)


# ------------------------------------------------------------------------------------------------- DCN-v2
def _cross_layers(keras, n: int, einsum: bool):
    """TFRS / model garden DCN-v2 cross layer: x_{l+1} = x0 * (W x_l + b) + x_l; low rank (U V^T) in Einsum form
    (tf.einsum as TF model garden's DCN-Mix writes its projections)."""

    class Cross(keras.layers.Layer):
        def build(self, shapes):
            d = shapes[0][-1]
            if einsum:
                self.u = self.add_weight(shape=(d, 3), initializer="glorot_uniform")
                self.v = self.add_weight(shape=(3, d), initializer="glorot_uniform")
            else:
                self.w = self.add_weight(shape=(d, d), initializer="glorot_uniform")
            self.b = self.add_weight(shape=(d,), initializer="zeros")

        def call(self, inputs):
            tf = _tf()
            x0, x = inputs
            if einsum:
                proj = tf.einsum("br,rd->bd", tf.einsum("bd,dr->br", x, self.u), self.v)
            else:
                proj = tf.matmul(x, self.w)
            return x0 * (proj + self.b) + x

    return [Cross() for _ in range(n)]


@r.entry("ctr", feeds=_dense_feeds)
def ctr_dcn_v2(out_dir: str) -> dict:
    """DCN-v2 (stacked): a full-rank cross layer and a low-rank one in Einsum form, then a DNN."""
    keras = _keras()
    L = keras.layers
    inp = _inputs(keras)
    embs = _field_embeddings(keras, inp)
    x0 = L.Concatenate(name="features")([L.Flatten()(e) for e in embs.values()] + [inp["numeric"]])
    x = x0
    for layer in _cross_layers(keras, 1, einsum=False) + _cross_layers(keras, 1, einsum=True):
        x = layer([x0, x])
    return _export(keras.Model(inp, {"score": _score(keras, _dnn(keras, x)), "embedding": x0}), out_dir)


# ---------------------------------------------------------------------------------------------------- DIN
def _attention(keras, heads: int):
    """DIN's activation unit over the history (masked Softmax) and a DeepCTR-style multi-head self-attention
    (heads by tf.split / tf.concat on the batch axis, BatchMatMul, key mask, LayerNormalization)."""

    class DinAttention(keras.layers.Layer):
        def build(self, shapes):
            d = shapes[0][-1]
            self.att = [keras.layers.Dense(8, activation="sigmoid"), keras.layers.Dense(1)]
            self.wq = self.add_weight(shape=(d, d), initializer="glorot_uniform")
            self.wk = self.add_weight(shape=(d, d), initializer="glorot_uniform")
            self.wv = self.add_weight(shape=(d, d), initializer="glorot_uniform")
            self.norm = keras.layers.LayerNormalization()

        def call(self, inputs):
            tf = _tf()
            query, keys, hist = inputs  # [B, 1, D], [B, T, D], [B, T] ids (0 = padding)
            mask = tf.not_equal(hist, 0)  # [B, T]
            # positions 1..len of the valid items (BST-style position ids by cumsum), added to the keys
            pos = tf.cumsum(tf.cast(mask, tf.float32), axis=1, exclusive=True)
            keys = keys + tf.expand_dims(pos, -1) * 0.01
            q = tf.tile(query, [1, tf.shape(keys)[1], 1])
            units = tf.concat([q, keys, q - keys, q * keys], axis=-1)
            for layer in self.att:
                units = layer(units)
            scores = tf.transpose(units, [0, 2, 1])  # [B, 1, T]
            paddings = tf.ones_like(scores) * (-2.0 ** 32 + 1)
            scores = tf.where(tf.expand_dims(mask, 1), scores, paddings)
            din = tf.matmul(tf.nn.softmax(scores), keys)  # [B, 1, D]
            # multi-head self-attention over the history (DeepCTR's Transformer)
            qs, ks, vs = (tf.tensordot(keys, w, axes=(-1, 0)) for w in (self.wq, self.wk, self.wv))
            qs, ks, vs = (tf.concat(tf.split(t, heads, axis=2), axis=0) for t in (qs, ks, vs))  # [h*B, T, D/h]
            att = tf.matmul(qs, ks, transpose_b=True) / (keys.shape[-1] // heads) ** 0.5
            key_mask = tf.tile(tf.expand_dims(mask, 1), [heads, tf.shape(keys)[1], 1])
            att = tf.nn.softmax(tf.where(key_mask, att, tf.ones_like(att) * (-2.0 ** 32 + 1)))
            out = tf.concat(tf.split(tf.matmul(att, vs), heads, axis=0), axis=2)  # [B, T, D]
            out = self.norm(out + keys)
            pooled = tf.reduce_sum(out * tf.expand_dims(tf.cast(mask, out.dtype), -1), axis=1)
            return tf.concat([tf.squeeze(din, 1), pooled], axis=-1)

    return DinAttention()


@r.entry("ctr", feeds=_dense_feeds)
def ctr_din(out_dir: str) -> dict:
    """DIN over the item history (target item as the query) + multi-head self-attention, DNN."""
    keras = _keras()
    L = keras.layers
    inp = _inputs(keras)
    items = L.Embedding(FIELDS["item"], DIM, name="emb_items")
    embs = _field_embeddings(keras, inp)
    interest = _attention(keras, heads=2)([items(inp["item"]), items(inp["hist"]), inp["hist"]])
    feats = L.Concatenate(name="features")([L.Flatten()(e) for k, e in embs.items() if k != "item"]
                                           + [inp["numeric"]])
    x = L.Concatenate()([feats, interest])
    return _export(keras.Model(inp, {"score": _score(keras, _dnn(keras, x)), "embedding": feats}), out_dir)


# --------------------------------------------------------------------------------------------------- MMoE
@r.entry("ctr", feeds=_dense_feeds)
def ctr_mmoe(out_dir: str) -> dict:
    """MMoE: shared experts, one softmax gate per task (experts weighted by Einsum), two task towers."""
    keras = _keras()
    L = keras.layers
    tf = _tf()
    inp = _inputs(keras)
    embs = _field_embeddings(keras, inp)
    x = L.Concatenate(name="features")([L.Flatten()(e) for e in embs.values()] + [inp["numeric"]])

    class Experts(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 3, 8), initializer="glorot_uniform")  # 3 experts of 8

        def call(self, h):
            return tf.nn.relu(tf.einsum("bi,ieu->beu", h, self.w))  # [B, E, U]

    experts = Experts()(x)
    outs = {}
    for task in ("ctr", "cvr"):
        gate = L.Dense(3, activation="softmax", name=f"gate_{task}")(x)  # [B, E]
        mixed = L.Lambda(lambda t: tf.einsum("beu,be->bu", t[0], t[1]))([experts, gate])
        outs[task] = _score(keras, _dnn(keras, mixed, (8,), name=f"tower_{task}"), name=task)
    outs["embedding"] = x
    return _export(keras.Model(inp, outs), out_dir)


# -------------------------------------------------------------------------------------------------- xDeepFM
def _cin(keras, sizes=(4, 4)):
    """DeepCTR's CIN: per layer, outer products of x0 and x_k by tf.split + matmul, a Conv1D (Conv2D in the
    graph) over the flattened maps, split_half into next hidden / direct output, sum pooling."""
    tf = _tf()

    class CIN(keras.layers.Layer):
        def build(self, shape):
            fields = [shape[1]]
            self.filters, self.bias = [], []
            for i, size in enumerate(sizes):
                self.filters.append(self.add_weight(shape=(1, fields[-1] * fields[0], size),
                                                    initializer="glorot_uniform"))
                self.bias.append(self.add_weight(shape=(size,), initializer="zeros"))
                fields.append(size // 2 if i != len(sizes) - 1 else size)
            self.fields = fields

        def call(self, x0):
            dim = x0.shape[-1]
            hidden, outs = [x0], []
            split0 = tf.split(x0, dim * [1], 2)
            for i, size in enumerate(sizes):
                split = tf.split(hidden[-1], dim * [1], 2)
                dot = tf.matmul(split0, split, transpose_b=True)  # [D, B, F0, Fk]
                dot = tf.reshape(dot, [dim, -1, self.fields[0] * self.fields[i]])
                dot = tf.transpose(dot, [1, 0, 2])
                cur = tf.nn.conv1d(dot, filters=self.filters[i], stride=1, padding="VALID")
                cur = tf.nn.relu(tf.nn.bias_add(cur, self.bias[i]))
                cur = tf.transpose(cur, [0, 2, 1])
                if i != len(sizes) - 1:
                    nxt, direct = tf.split(cur, 2 * [size // 2], 1)
                else:
                    nxt, direct = 0, cur
                outs.append(direct)
                hidden.append(nxt)
            return tf.reduce_sum(tf.concat(outs, axis=1), -1)

    return CIN()


@r.entry("ctr", feeds=_dense_feeds)
def ctr_xdeepfm(out_dir: str) -> dict:
    """xDeepFM: CIN over the stacked field embeddings + linear + DNN."""
    keras = _keras()
    L = keras.layers
    inp = _inputs(keras)
    embs = _field_embeddings(keras, inp)
    stacked = L.Concatenate(axis=1)(list(embs.values()))
    flat = L.Concatenate(name="features")([L.Flatten()(stacked), inp["numeric"]])
    logit = L.Add()([L.Dense(1)(_cin(keras)(stacked)), L.Dense(1)(_dnn(keras, flat)), L.Dense(1)(inp["numeric"])])
    return _export(keras.Model(inp, {"score": L.Activation("sigmoid")(logit), "embedding": flat}), out_dir)


# ---------------------------------------------------------------------------------------- retrieval top-k
@r.entry("ctr", feeds=_dense_feeds, topk_nan_rows=("top_scores", "top_ids"))
def ctr_two_tower_topk(out_dir: str) -> dict:
    """Two-tower retrieval (TFRS style): a user tower, scores against every item embedding, tf.math.top_k."""
    keras = _keras()
    L = keras.layers
    tf = _tf()
    inp = _inputs(keras)
    embs = _field_embeddings(keras, inp)
    user_in = L.Concatenate(name="features")([L.Flatten()(embs[k]) for k in ("user", "city", "query")]
                                             + [inp["numeric"]])
    user = L.Dense(DIM)(L.Dense(8, activation="relu")(user_in))
    items = L.Embedding(FIELDS["item"], DIM, name="candidates")

    class TopK(keras.layers.Layer):
        def call(self, u):
            scores = tf.matmul(u, items.embeddings, transpose_b=True)  # [B, items]
            values, ids = tf.math.top_k(scores, k=5)
            return values, ids

    items.build((None,))
    values, ids = TopK()(user)
    return _export(keras.Model(inp, {"top_scores": values, "top_ids": ids, "embedding": user_in}), out_dir)


# ------------------------------------------------------------------------------------ sparse inputs (TF)
@r.entry("ctr", feeds=_sparse_feeds)
def ctr_sparse_dcn(out_dir: str) -> dict:
    """TF model garden style: SparseTensor features, `tf.nn.safe_embedding_lookup_sparse` per field (mean), a
    DCN cross layer and an MLP in a tf.Module, saved as a SavedModel."""
    tf = _tf()
    g = tf.random.Generator.from_seed(13)
    mod = tf.Module()
    mod.tables = {k: tf.Variable(g.normal([v, DIM]) * 0.1, name=f"table_{k}") for k, v in FIELDS.items()}
    width = DIM * len(FIELDS) + 3
    mod.cross_w = tf.Variable(g.normal([width, width]) * 0.1)
    mod.cross_b = tf.Variable(tf.zeros([width]))
    mod.w1 = tf.Variable(g.normal([width, 8]) * 0.3)
    mod.w2 = tf.Variable(g.normal([8, 1]) * 0.3)
    spec = {k: tf.SparseTensorSpec([None, None], tf.int64) for k in FIELDS}
    spec["numeric"] = tf.TensorSpec([None, 3], tf.float32)

    @tf.function(input_signature=[spec])
    def serve(features):
        parts = [tf.nn.safe_embedding_lookup_sparse(mod.tables[k], features[k], combiner="mean") for k in FIELDS]
        x0 = tf.concat(parts + [features["numeric"]], axis=1)
        x = x0 * (tf.matmul(x0, mod.cross_w) + mod.cross_b) + x0
        score = tf.sigmoid(tf.matmul(tf.nn.relu(tf.matmul(x, mod.w1)), mod.w2))
        return {"score": score, "embedding": x0}

    mod.serve = serve
    tf.saved_model.save(mod, os.path.join(out_dir, "sm"), signatures={"serving_default": serve})
    return {"saved_model": "sm", "call": "serve"}
