"""Every tf.lookup table kind, as serving code writes lookups by hand (no feature columns): TF2 StaticHashTable over
KeyValueTensorInitializer and TextFileInitializer (key / value columns with a delimiter, WHOLE_LINE / LINE_NUMBER,
value_index_offset), StaticVocabularyTable (OOV buckets), in a SavedModel and in a .pb written with
freeze_with_tables; TF1 index_table_from_tensor / index_table_from_file, IdTableWithHashBuckets (fast and strong
hashing) and an index-to-string table (string values), frozen in a Session."""

from __future__ import annotations

import os

import numpy as np

from . import registry as r

COUNTRIES = ("us", "fr", "de", "cn", "jp", "br", "ünï", "")
CODES = (3, 17, 42, 99, 1000, -5, 1 << 40)
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")
PAIRS = (("red", 4), ("green", 1), ("blue", 7), ("cyan", 2), ("magenta", 0))


def _tf():
    import tensorflow as tf

    return tf


def _write(path: str, lines) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _codes(rng, n: int, hostile: bool) -> np.ndarray:
    x = np.array([CODES[i] if i < len(CODES) else 7 * i for i in rng.integers(0, len(CODES) + 3, n)], np.int64)
    if hostile and n:
        pos = rng.random(n) < 0.3
        x[pos] = r.ints(rng, int(pos.sum()), -100, 100, True)
    return x


def _tf2_feeds(rng, batch, hostile):
    lens = r.row_lengths(rng, batch, 3, hostile)
    return {"country": r.strings(rng, batch, COUNTRIES, hostile),
            "code": _codes(rng, batch, hostile),
            "color": r.strings(rng, batch, [c for c, _ in PAIRS], hostile),
            "word": r.strings(rng, batch, WORDS, hostile),
            "words": r.sparse(lens, r.strings(rng, int(lens.sum()), WORDS, hostile))}


def _tf2_module(tf, out_dir: str):
    """A tf.Module whose serving function looks every feature up in a different kind of table."""
    lookup = tf.lookup
    words = _write(os.path.join(out_dir, "words.txt"), WORDS)
    colors = _write(os.path.join(out_dir, "colors.csv"), [f"{c},{v}" for c, v in PAIRS])
    tf.random.set_seed(5)

    class Tables(tf.Module):
        def __init__(self):
            super().__init__()
            self.country = lookup.StaticHashTable(lookup.KeyValueTensorInitializer(
                list(COUNTRIES), tf.range(1, len(COUNTRIES) + 1, dtype=tf.int64)), default_value=0)
            self.code = lookup.StaticHashTable(lookup.KeyValueTensorInitializer(
                tf.constant(CODES, tf.int64), tf.constant(list(range(1, len(CODES) + 1)), tf.int64)), 0)
            self.color = lookup.StaticHashTable(lookup.TextFileInitializer(
                colors, tf.string, 0, tf.int64, 1, delimiter=","), default_value=8)
            self.word = lookup.StaticHashTable(lookup.TextFileInitializer(
                words, tf.string, lookup.TextFileIndex.WHOLE_LINE, tf.int64, lookup.TextFileIndex.LINE_NUMBER,
                value_index_offset=1), default_value=0)
            self.vocab = lookup.StaticVocabularyTable(lookup.KeyValueTensorInitializer(
                list(COUNTRIES[:5]), tf.range(5, dtype=tf.int64)), num_oov_buckets=3)
            self.vocab_file = lookup.StaticVocabularyTable(lookup.TextFileInitializer(
                words, tf.string, lookup.TextFileIndex.WHOLE_LINE, tf.int64, lookup.TextFileIndex.LINE_NUMBER),
                num_oov_buckets=2)
            init = tf.random_normal_initializer(stddev=0.5)
            self.emb = {k: tf.Variable(init([n, d])) for k, n, d in (
                ("country", len(COUNTRIES) + 1, 4), ("code", len(CODES) + 1, 3), ("color", 9, 2),
                ("word", len(WORDS) + 1, 4), ("vocab", 8, 3), ("vocab_file", len(WORDS) + 2, 4))}
            self.w = tf.Variable(init([20, 1]))

        @tf.function(input_signature=[{
            "country": tf.TensorSpec([None], tf.string), "code": tf.TensorSpec([None], tf.int64),
            "color": tf.TensorSpec([None], tf.string), "word": tf.TensorSpec([None], tf.string),
            "words": tf.SparseTensorSpec([None, None], tf.string)}])
        def serve(self, f):
            parts = [tf.gather(self.emb["country"], self.country.lookup(f["country"])),
                     tf.nn.embedding_lookup(self.emb["code"], self.code.lookup(f["code"])),
                     tf.gather(self.emb["color"], self.color.lookup(f["color"])),
                     tf.gather(self.emb["word"], self.word.lookup(f["word"])),
                     tf.gather(self.emb["vocab"], self.vocab.lookup(f["country"]))]
            ids = f["words"].with_values(self.vocab_file.lookup(f["words"].values))
            parts.append(tf.nn.safe_embedding_lookup_sparse(self.emb["vocab_file"], ids, combiner="mean"))
            emb = tf.concat(parts, axis=1)
            return {"score": tf.sigmoid(tf.matmul(emb, self.w)), "embedding": emb}

    return Tables()


@r.entry("tf_lookup", feeds=_tf2_feeds)
def tf2_lookup_tables_saved_model(out_dir: str) -> dict:
    """TF2 tables of every kind in a SavedModel (the text files become its assets)."""
    tf = _tf()
    m = _tf2_module(tf, out_dir)
    tf.saved_model.save(m, os.path.join(out_dir, "sm"), signatures={"serving_default": m.serve})
    return {"saved_model": "sm", "call": "serve"}


@r.entry("tf_lookup", feeds=_tf2_feeds)
def tf2_lookup_tables_frozen(out_dir: str) -> dict:
    """The same tables in a .pb written with recom_tvm.frontend.loader.freeze_with_tables (TF2 freezing alone
    leaves them as resource inputs without contents)."""
    from recom_tvm.frontend.loader import freeze_with_tables

    tf = _tf()
    m = _tf2_module(tf, out_dir)
    cf = m.serve.get_concrete_function()
    gd, frozen = freeze_with_tables(cf)
    with open(os.path.join(out_dir, "model.pb"), "wb") as f:
        f.write(gd.SerializeToString())
    flat = tf.nest.flatten(cf.structured_input_signature, expand_composites=True)
    names = [t.name for t in frozen.inputs[:len(flat)]]
    # the flat placeholders follow tf.nest's order: dict keys sorted, a SparseTensor as indices, values, shape
    inputs, i = {}, 0
    for key in sorted(cf.structured_input_signature[0][0]):
        if key == "words":
            inputs[key] = dict(zip(("indices", "values", "dense_shape"), names[i:i + 3]))
            i += 3
        else:
            inputs[key] = names[i]
            i += 1
    out_names = sorted(cf.structured_outputs)
    outputs = {k: t.name for k, t in zip(out_names, frozen.outputs)}
    return {"pb": "model.pb", "signature": {"inputs": inputs, "outputs": outputs}}


# ----------------------------------------------------------------------------------------------------- TF1
def _tf1_feeds(rng, batch, hostile):
    lens = r.row_lengths(rng, batch, 3, hostile)
    lens2 = r.row_lengths(rng, batch, 2, hostile)
    return {"country": r.sparse(lens, r.strings(rng, int(lens.sum()), COUNTRIES, hostile)),
            "code": r.sparse(lens2, _codes(rng, int(lens2.sum()), hostile)),
            "word": r.strings(rng, batch, WORDS, hostile),
            "color": r.strings(rng, batch, [c for c, _ in PAIRS], hostile),
            "rank": r.ints(rng, batch, 0, len(WORDS) + 3, hostile)}


@r.entry("tf_lookup", feeds=_tf1_feeds)
def tf1_lookup_tables(out_dir: str) -> dict:
    """TF1-era lookups (tf.contrib.lookup, now tensorflow.python.ops.lookup_ops): index_table_from_tensor
    (string with OOV buckets, int64 keys), index_table_from_file (whole lines; a key / value column pair),
    IdTableWithHashBuckets with strong (keyed SipHash) hashing, an index-to-string table whose string values
    are hashed, line numbers with an offset (value_index_offset); vocabulary files in the model's assets/ folder (found there, not by their baked absolute paths);
    embeddings by safe_embedding_lookup_sparse and gathers, frozen with convert_variables_to_constants."""
    from tensorflow.python.ops import lookup_ops

    from .tf1_feature_columns import _freeze, _sparse_inputs, dense

    tf = _tf()
    v1 = tf.compat.v1
    assets = os.path.join(out_dir, "assets")
    os.makedirs(assets)
    words = _write(os.path.join(assets, "words.txt"), WORDS)
    colors = _write(os.path.join(assets, "colors.tsv"), [f"{c}\t{v}\textra" for c, v in PAIRS])
    with tf.Graph().as_default() as g:
        v1.set_random_seed(6)
        country, c_in = _sparse_inputs(v1, tf, "country", tf.string)
        code, k_in = _sparse_inputs(v1, tf, "code", tf.int64)
        word = v1.placeholder(tf.string, [None], name="word")
        color = v1.placeholder(tf.string, [None], name="color")
        rank = v1.placeholder(tf.int64, [None], name="rank")
        t_country = lookup_ops.index_table_from_tensor(list(COUNTRIES[:6]), num_oov_buckets=2)
        t_code = lookup_ops.index_table_from_tensor(list(CODES), dtype=tf.int64, default_value=0)
        t_word = lookup_ops.index_table_from_file(words, vocab_size=len(WORDS), default_value=0)
        t_color = lookup_ops.index_table_from_file(colors, key_column_index=0, value_column_index=1,
                                                   default_value=8)
        t_strong = lookup_ops.IdTableWithHashBuckets(
            lookup_ops.StaticHashTable(lookup_ops.KeyValueTensorInitializer(list(WORDS[:4]), [0, 1, 2, 3],
                                                                            tf.string, tf.int64), -1),
            num_oov_buckets=3, hasher_spec=lookup_ops.StrongHashSpec([17, 42]))
        t_name = lookup_ops.index_to_string_table_from_file(words, default_value="<unk>")
        t_offset = lookup_ops.StaticHashTable(lookup_ops.TextFileInitializer(  # line numbers from 2 (offset attr)
            words, tf.string, lookup_ops.TextFileIndex.WHOLE_LINE, tf.int64, lookup_ops.TextFileIndex.LINE_NUMBER,
            value_index_offset=2), 0)

        parts_made = []

        def table(n, d):
            parts_made.append(n)
            return v1.get_variable(f"emb_{len(parts_made)}", [n, d], initializer=v1.random_normal_initializer(stddev=0.5))

        def bag(sp, ids, n, d, combiner):
            return tf.nn.safe_embedding_lookup_sparse(table(n, d), tf.SparseTensor(sp.indices, ids, sp.dense_shape),
                                                      None, combiner=combiner)

        parts = [bag(country, t_country.lookup(country.values), 8, 4, "mean"),
                 bag(code, t_code.lookup(code.values), len(CODES), 3, "sum"),
                 tf.gather(table(len(WORDS), 4), t_word.lookup(word)),
                 tf.gather(table(9, 2), t_color.lookup(color)),
                 tf.gather(table(7, 3), t_strong.lookup(word)),
                 tf.gather(table(50, 4), tf.strings.to_hash_bucket_fast(t_name.lookup(rank), 50)),
                 tf.gather(table(len(WORDS) + 2, 2), t_offset.lookup(word))]
        emb = tf.concat(parts, axis=1)
        score = dense(emb, 1, tf.sigmoid, "score")
        with v1.Session(graph=g) as sess:
            sess.run([v1.global_variables_initializer(), v1.tables_initializer()])
            art = _freeze(sess, g, {"score": score, "embedding": emb},
                          {"country": c_in, "code": k_in, "word": word.name, "color": color.name,
                           "rank": rank.name}, out_dir)
    # TF's reference reads the files where they are now; recom_tvm finds them in the model's assets/ itself
    art["assets"] = {words: "assets/words.txt", colors: "assets/colors.tsv"}
    art["import_assets"] = False
    return art
