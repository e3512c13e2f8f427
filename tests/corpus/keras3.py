"""Keras 3 as its users write it: preprocessing layers (Hashing, StringLookup, IntegerLookup, Discretization,
HashedCrossing, CategoryEncoding one-hot / multi-hot / count, Normalization) + Embedding in functional models,
exported with `model.export()` (Keras 3's ExportArchive) and frozen into .pb files; `keras.utils.FeatureSpace`
exported the way its docs build the inference model; an Embedding over a sparse input
(`tf.nn.safe_embedding_lookup_sparse` underneath); a ragged model frozen (its asserts lowered to Switch / Merge)."""

from __future__ import annotations

import os

import numpy as np

from . import registry as r

WORDS = ("news", "sport", "music", "games", "food", "travel")
CITIES = ("paris", "tokyo", "lima", "oslo", "cairo")
LEVELS = (1, 2, 3, 5, 8, 13)
DAYS = 7


def _tf():
    import tensorflow as tf

    return tf


def _keras():
    import keras

    keras.utils.set_random_seed(7)
    return keras


# ------------------------------------------------------------------------------------------------ helpers
def _write_pb(gd, out_dir: str, inputs: dict, outputs: dict) -> dict:
    with open(os.path.join(out_dir, "model.pb"), "wb") as f:
        f.write(gd.SerializeToString())
    return {"pb": "model.pb", "signature": {"inputs": inputs, "outputs": outputs}}


def freeze(fn, out_dir: str, tables: bool = False) -> dict:
    """A ConcreteFunction with (nested) structured inputs and a dict of outputs frozen into out_dir/model.pb as
    users freeze TF2 functions (`convert_variables_to_constants_v2`; with lookup tables, recom_tvm's documented
    `freeze_with_tables`), with the signature naming its placeholders."""
    tf = _tf()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    if tables:
        from recom_tvm.frontend.loader import freeze_with_tables

        gd, frozen = freeze_with_tables(fn)
    else:
        frozen = convert_variables_to_constants_v2(fn)
        gd = frozen.graph.as_graph_def()
    flat = [t.name for t in frozen.inputs if t.dtype != tf.resource]
    args, kwargs = fn.structured_input_signature
    spec = args[0] if len(args) == 1 and isinstance(args[0], dict) else kwargs
    inputs, i = {}, 0
    for name in sorted(spec):  # tf.nest order
        s = spec[name]
        if isinstance(s, tf.SparseTensorSpec):
            inputs[name] = dict(zip(("indices", "values", "dense_shape"), flat[i:i + 3]))
            i += 3
        elif isinstance(s, tf.RaggedTensorSpec):
            inputs[name] = dict(zip(("values", "row_splits"), flat[i:i + 2]))
            i += 2
        else:
            inputs[name] = flat[i]
            i += 1
    names = sorted(fn.structured_outputs)
    return _write_pb(gd, out_dir, inputs, {k: frozen.outputs[j].name for j, k in enumerate(names)})


# ------------------------------------------------------------------------------------ preprocessing model
def _preprocessing_feeds(rng, batch, hostile):
    words = r.strings(rng, batch * 3, WORDS, hostile).reshape(batch, 3)
    words[rng.random((batch, 3)) < 0.3] = ""  # padding
    return {
        "words": words,
        "city": r.strings(rng, batch, CITIES, hostile).reshape(batch, 1),
        "level": np.where(rng.random((batch, 1)) < 0.8, rng.choice(LEVELS, (batch, 1)),
                          r.ints(rng, (batch, 1), -5, 50, hostile)).astype(np.int64),
        "tags": r.ints(rng, (batch, 4), -1, 12, hostile),
        "day": r.ints(rng, (batch, 1), 0, DAYS, hostile),  # one_hot: ids out of range give zeros (tf.one_hot)
        "price": r.floats(rng, (batch, 1), hostile),
        "age": r.floats(rng, (batch, 2), hostile, scale=20.0),
    }


def _preprocessing_model(keras, with_tables: bool):
    """A functional model over dense inputs, every preprocessing layer feeding an Embedding or an encoding."""
    L = keras.layers
    inp = {"city": keras.Input((1,), dtype="string", name="city"),
           "tags": keras.Input((4,), dtype="int64", name="tags"),
           "day": keras.Input((1,), dtype="int64", name="day"),
           "price": keras.Input((1,), dtype="float32", name="price"),
           "age": keras.Input((2,), dtype="float32", name="age")}
    parts = [
        L.Flatten()(L.Embedding(24, 4)(L.Hashing(num_bins=24)(inp["city"]))),
        L.CategoryEncoding(num_tokens=12, output_mode="multi_hot")(inp["tags"]),  # DenseBincount
        L.CategoryEncoding(num_tokens=12, output_mode="count")(inp["tags"]),
        L.CategoryEncoding(num_tokens=DAYS, output_mode="one_hot")(inp["day"]),
        L.Flatten()(L.Embedding(6, 3)(L.Discretization(bin_boundaries=[-1.0, 0.0, 0.5, 2.0, 10.0])(inp["price"]))),
        L.Normalization(mean=[30.0, 1.0], variance=[100.0, 4.0])(inp["age"]),
        L.Flatten()(L.Embedding(16, 2)(L.HashedCrossing(num_bins=16)((inp["city"], inp["day"])))),
    ]
    if with_tables:
        inp["words"] = keras.Input((3,), dtype="string", name="words")
        inp["level"] = keras.Input((1,), dtype="int64", name="level")
        words = L.StringLookup(vocabulary=list(WORDS), mask_token="")(inp["words"])  # "" -> 0 (padding)
        parts += [L.GlobalAveragePooling1D()(L.Embedding(len(WORDS) + 2, 4)(words)),
                  L.Flatten()(L.Embedding(len(LEVELS) + 1, 3)(L.IntegerLookup(vocabulary=list(LEVELS))(inp["level"]))),
                  L.IntegerLookup(vocabulary=list(LEVELS), output_mode="multi_hot")(inp["tags"])]
    emb = L.Concatenate(name="features")(parts)
    h = L.Dense(8, activation="relu")(emb)
    score = L.Dense(1, activation="sigmoid", name="score")(h)
    return keras.Model(inp, {"score": score, "embedding": emb})


@r.entry("keras3", feeds=_preprocessing_feeds)
def keras3_preprocessing_export(out_dir: str) -> dict:
    """Every preprocessing layer (lookup tables included) in a functional model, `model.export()`."""
    model = _preprocessing_model(_keras(), with_tables=True)
    model.export(os.path.join(out_dir, "sm"), verbose=False)
    return {"saved_model": "sm"}


@r.entry("keras3", feeds=lambda rng, b, h: {k: v for k, v in _preprocessing_feeds(rng, b, h).items()
                                              if k not in ("words", "level")})
def keras3_preprocessing_frozen(out_dir: str) -> dict:
    """The layers without tables in a functional model frozen into a .pb (`convert_variables_to_constants_v2`)."""
    tf = _tf()
    model = _preprocessing_model(_keras(), with_tables=False)
    specs = {k: tf.TensorSpec([None] + list(t.shape[1:]), t.dtype, name=k) for k, t in
             ((i.name, i) for i in model.inputs)}
    fn = tf.function(lambda x: model(x)).get_concrete_function(specs)
    return freeze(fn, out_dir)


# ------------------------------------------------------------------------------------------- FeatureSpace
def _feature_space_feeds(rng, batch, hostile):
    return {"float_values": r.floats(rng, (batch, 1), hostile),
            "string_values": r.strings(rng, batch, WORDS, hostile).reshape(batch, 1),
            # FeatureSpace's integer inputs are int32
            "int_values": np.where(rng.random((batch, 1)) < 0.8, rng.choice(LEVELS, (batch, 1)),
                                   r.ints(rng, (batch, 1), -3, 30, hostile, np.int32)).astype(np.int32),
            "hashed_values": r.ints(rng, (batch, 1), 0, 1000, hostile, np.int32),
            "price": r.floats(rng, (batch, 1), hostile)}


@r.entry("keras3", feeds=_feature_space_feeds, fused=False,
         why_not_fused="no embedding lookup: FeatureSpace one-hot / multi-hot encodes every categorical feature "
                       "(CategoryEncoding -> DenseBincount, computed beside a kernel) and normalizes the floats")
def keras3_feature_space(out_dir: str) -> dict:
    """keras.utils.FeatureSpace adapted on data, the inference model built as its docs show, `model.export()`."""
    tf = _tf()
    keras = _keras()
    fs = keras.utils.FeatureSpace
    rng = np.random.default_rng(0)
    raw = {"float_values": rng.normal(size=64).astype(np.float32),
           "string_values": rng.choice(WORDS, 64), "int_values": rng.choice(LEVELS, 64).astype(np.int32),
           "hashed_values": rng.integers(0, 1000, 64).astype(np.int32),
           "price": rng.exponential(10.0, 64).astype(np.float32)}
    space = fs(features={"float_values": "float_normalized",
                         "string_values": "string_categorical",
                         "int_values": "integer_categorical",
                         "hashed_values": fs.integer_hashed(num_bins=16),
                         "price": fs.float_discretized(num_bins=4)},
               crosses=[fs.cross(("string_values", "int_values"), crossing_dim=8)],
               output_mode="concat")
    space.adapt(tf.data.Dataset.from_tensor_slices(raw))
    dict_inputs = space.get_inputs()
    encoded = space.get_encoded_features()
    predictions = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Dense(8, activation="relu")(encoded))
    inference = keras.Model(inputs=dict_inputs, outputs={"score": predictions, "embedding": encoded})
    inference.export(os.path.join(out_dir, "sm"), verbose=False)
    return {"saved_model": "sm"}


# ------------------------------------------------------------------------------- Embedding over SparseTensor
ITEMS = 30


def _sparse_feeds(rng, batch, hostile):
    lens = r.row_lengths(rng, batch, 4, hostile)
    # Keras' Embedding maps negative ids to id + rows (fix_negative_indices) and TF's GatherV2 rejects ids out
    # of range: hostile requests carry negative ones in range of that rule and, sometimes, huge ones (an error)
    ids = rng.integers(-ITEMS, ITEMS, int(lens.sum())).astype(np.int64) if hostile else \
        rng.integers(0, ITEMS, int(lens.sum())).astype(np.int64)
    if hostile and ids.size and rng.random() < 0.3:
        ids[0] = 1 << 40
    return {"items": r.sparse(lens, ids, width=4), "price": r.floats(rng, (batch, 1), hostile)}


def _sparse_model(keras):
    L = keras.layers
    items = keras.Input((4,), sparse=True, dtype="int64", name="items")
    price = keras.Input((1,), dtype="float32", name="price")
    seq = L.Embedding(ITEMS, 4)(items)  # [B, 4, 4] from safe_embedding_lookup_sparse over the expanded ids
    emb = L.Concatenate(name="features")([L.GlobalAveragePooling1D()(seq), L.Flatten()(seq), price])
    score = L.Dense(1, activation="sigmoid", name="score")(L.Dense(6, activation="relu")(emb))
    return keras.Model({"items": items, "price": price}, {"score": score, "embedding": emb})


def _sparse_as_dense_feeds(rng, batch, hostile):
    """model.export() gives a sparse Keras input a dense signature ([B, 4], zeros are missing)."""
    feeds = _sparse_feeds(rng, batch, hostile)
    idx, vals, _ = feeds["items"]
    dense = np.zeros((batch, 4), np.int64)
    dense[idx[:, 0], idx[:, 1]] = vals
    return {"items": dense, "price": feeds["price"]}


@r.entry("keras3", feeds=_sparse_as_dense_feeds, fused=False,
         why_not_fused="one embedding per position ([B, 4, dim], flattened and averaged by the model), not a bag "
                       "per row: none of the fused kernel's column kinds")
def keras3_sparse_embedding_export(out_dir: str) -> dict:
    """A Keras 3 Embedding over a sparse input, `model.export()` (whose signature takes the ids dense)."""
    _sparse_model(_keras()).export(os.path.join(out_dir, "sm"), verbose=False)
    return {"saved_model": "sm", "call": "serve"}  # the endpoint keeps the SparseTensor (the signature flattens it)


@r.entry("keras3", feeds=_sparse_feeds, fused=False,
         why_not_fused="one embedding per position of the sparse input ([B, 4, dim] through SparseSegmentMean of "
                       "one-id bags), not a bag per row: none of the fused kernel's column kinds")
def keras3_sparse_embedding_frozen(out_dir: str) -> dict:
    """The same model frozen into a .pb."""
    tf = _tf()
    model = _sparse_model(_keras())
    specs = {"items": tf.SparseTensorSpec([None, 4], tf.int64), "price": tf.TensorSpec([None, 1], tf.float32)}
    fn = tf.function(lambda x: model(x)).get_concrete_function(specs)
    return freeze(fn, out_dir)


# -------------------------------------------------------------------------------------------- ragged, frozen
def _ragged_feeds(rng, batch, hostile):
    lens = r.row_lengths(rng, batch, 3, hostile)
    lens2 = r.row_lengths(rng, batch, 3, hostile)
    return {"text": r.ragged(lens, r.strings(rng, int(lens.sum()), WORDS, hostile)),
            "ids": r.ragged(lens2, np.where(rng.random(int(lens2.sum())) < 0.7,
                                            rng.choice(LEVELS, int(lens2.sum())),
                                            r.ints(rng, int(lens2.sum()), -5, 50, hostile)).astype(np.int64)),
            "price": r.floats(rng, (batch, 1), hostile)}


@r.entry("keras3", feeds=_ragged_feeds, fused=False,
         why_not_fused="ragged columns (UnsortedSegmentSum over row_splits) are not rewritten into bags by the "
                       "redundancy rules yet (README, Not yet); only the Discretization column is fusable")
def keras3_ragged_frozen(out_dir: str) -> dict:
    """Keras 3 preprocessing over RaggedTensors (tf.function), frozen into a .pb (the issue's Switch)."""
    tf = _tf()
    keras = _keras()
    L = keras.layers
    hashing, words, ints = L.Hashing(num_bins=20), L.StringLookup(vocabulary=list(WORDS)), \
        L.IntegerLookup(vocabulary=list(LEVELS))
    disc = L.Discretization(bin_boundaries=[-1.0, 0.0, 0.5, 2.0])
    e_hash, e_word, e_int, e_disc = (L.Embedding(n, 4) for n in (20, len(WORDS) + 1, len(LEVELS) + 1, 5))

    @tf.function(input_signature=[{"text": tf.RaggedTensorSpec([None, None], tf.string),
                                   "ids": tf.RaggedTensorSpec([None, None], tf.int64),
                                   "price": tf.TensorSpec([None, 1], tf.float32)}])
    def serve(x):
        emb = tf.concat([tf.reduce_mean(e_hash(hashing(x["text"])), axis=1),  # NaN for an empty row
                         tf.reduce_sum(e_word(words(x["text"])), axis=1),
                         tf.reduce_sum(e_int(ints(x["ids"])), axis=1),
                         tf.reshape(e_disc(disc(x["price"])), [-1, 4])], axis=1)
        return {"embedding": emb, "score": tf.sigmoid(tf.reduce_sum(emb, axis=1, keepdims=True))}

    return freeze(serve.get_concrete_function(), out_dir, tables=True)

