"""Preprocessing with tf.strings inside the serving function, as TF2 code writes it around raw request fields:
normalization (lower / upper / strip / regex_replace, static and with pattern tensors), tokenization
(tf.strings.split with and without a separator -> RaggedTensors, ngrams), parsing (to_number), prefixes (substr
in bytes and UTF-8 characters), lengths, joins (join, reduce_join) feeding hash buckets, lookups and embeddings."""

from __future__ import annotations

import os

import numpy as np

from . import registry as r

WORDS = ("Red", "shoes", "NIKE", "air", "max", "ünïcödé", "中文", "size-42", "  padded ", "on_sale", "a,b")
DOMAINS = ("example.com", "shop.example.org", "News.Site.io", "localhost", "")


def _tf():
    import tensorflow as tf

    return tf


def _text(rng, batch: int, hostile: bool, sep: str = " ") -> np.ndarray:
    out = []
    for _ in range(batch):
        n = int(rng.integers(0 if hostile else 1, 6))
        toks = list(r.strings(rng, n, WORDS, hostile))
        if hostile and rng.random() < 0.3:
            toks.insert(0, "")
        out.append((sep if rng.random() < 0.8 else sep * 2).join(toks))
    if hostile and batch:
        for v in ("", sep, sep * 4, "\t\n ", "x" * 400, "🎉" * 20):
            out[int(rng.integers(0, batch))] = v
    return np.array(out, dtype=object)


def _numbers(rng, batch: int, hostile: bool) -> np.ndarray:
    vals = [f"{v:.6g}" for v in r.floats(rng, batch, False, 100.0)]
    if hostile and batch:
        # text TF parses: padded, signed, exponent, hex, inf / nan, denormal, overflow to inf
        odd = [" 42 ", "+7", "-0", "1e3", "0x1A", "inf", "-Infinity", "nan", "1e-45", "1e39", "3.4028235e38", "007"]
        for k, v in enumerate(odd[:batch]):
            vals[int(rng.integers(0, batch))] = v
    return np.array(vals, dtype=object)


def _feeds(rng, batch, hostile):
    return {"query": _text(rng, batch, hostile),
            "tags": _text(rng, batch, hostile, sep=";"),
            "url": np.array([f"https://{d}/p/{i}" if d else "" for d, i in zip(
                r.strings(rng, batch, DOMAINS, hostile), rng.integers(0, 1000, batch))], dtype=object),
            "price": _numbers(rng, batch, hostile),
            "terms": r.strings(rng, batch * 3, WORDS, hostile).reshape(batch, 3)}


def _bad_numbers(rng, batch, hostile):
    feeds = _feeds(rng, batch, hostile)
    if hostile and batch:
        feeds["price"][int(rng.integers(0, batch))] = "12abc"  # TF: StringToNumberOp could not correctly convert
    return feeds


def _module(tf):
    tf.random.set_seed(7)
    init = tf.random_normal_initializer(stddev=0.5)

    class Text(tf.Module):
        def __init__(self):
            super().__init__()
            self.emb = {k: tf.Variable(init([n, d])) for k, n, d in (
                ("query", 500, 8), ("bigram", 300, 4), ("tags", 100, 4), ("domain", 50, 4), ("prefix", 64, 2),
                ("terms", 200, 4), ("first", 80, 3))}
            self.w = tf.Variable(init([32, 1]))
            self.vocab = tf.lookup.StaticVocabularyTable(tf.lookup.KeyValueTensorInitializer(
                ["red", "shoes", "nike", "air", "max"], tf.range(5, dtype=tf.int64)), num_oov_buckets=2)

        @tf.function(input_signature=[{
            "query": tf.TensorSpec([None], tf.string), "tags": tf.TensorSpec([None], tf.string),
            "url": tf.TensorSpec([None], tf.string), "price": tf.TensorSpec([None], tf.string),
            "terms": tf.TensorSpec([None, 3], tf.string)}])
        def serve(self, f):
            s = tf.strings
            q = s.lower(s.strip(f["query"]), encoding="utf-8")
            q = s.regex_replace(q, r"[^\w\s]+", " ")                               # StaticRegexReplace
            q = s.regex_replace(q, tf.constant(r"\s+"), tf.constant(" "))          # RegexReplace
            words = s.split(q)                                                     # whitespace, ragged
            bigrams = s.ngrams(words, 2, separator=" ")                            # StringNGrams
            query = tf.reduce_mean(tf.nn.embedding_lookup(self.emb["query"], s.to_hash_bucket_fast(words, 500)),
                                   axis=1)
            bigram = tf.reduce_sum(tf.nn.embedding_lookup(self.emb["bigram"],
                                                          s.to_hash_bucket_fast(bigrams, 300)), axis=1)
            tags = s.split(s.upper(f["tags"]), sep=";")                            # separator, empty tokens kept
            tag = tf.reduce_mean(tf.nn.embedding_lookup(self.emb["tags"], self.vocab.lookup(s.lower(tags))), axis=1)
            host = s.regex_replace(f["url"], r"^https?://([^/]+)/.*$", r"\1")      # rewrite with a group
            domain = tf.gather(self.emb["domain"], s.to_hash_bucket_fast(s.lower(host), 50))
            prefix = tf.gather(self.emb["prefix"], s.to_hash_bucket_fast(s.substr(host, 0, 3), 64))
            first = tf.gather(self.emb["first"], s.to_hash_bucket_fast(
                s.substr(f["query"], 0, 2, unit="UTF8_CHAR"), 80))
            joined = s.reduce_join(f["terms"], axis=1, separator="|")              # ReduceJoin
            terms = tf.gather(self.emb["terms"], s.to_hash_bucket_fast(s.join([joined, host], "@"), 200))
            price = tf.expand_dims(s.to_number(f["price"], tf.float32), 1)         # StringToNumber
            length = tf.cast(tf.stack([s.length(f["query"]), s.length(f["query"], unit="UTF8_CHAR")], 1),
                             tf.float32)
            emb = tf.concat([query, bigram, tag, domain, prefix, first, terms], axis=1)
            dense = tf.concat([tf.clip_by_value(price, -1e3, 1e3), tf.math.log1p(length)], axis=1)
            x = tf.concat([emb, dense], axis=1)
            return {"score": tf.sigmoid(tf.matmul(x, self.w)), "embedding": emb, "dense": dense}

    return Text()


@r.entry("tf_strings", feeds=_feeds)
def tf2_string_preprocessing(out_dir: str) -> dict:
    """tf.strings preprocessing in a TF2 SavedModel's serving function."""
    tf = _tf()
    m = _module(tf)
    tf.saved_model.save(m, os.path.join(out_dir, "sm"), signatures={"serving_default": m.serve})
    return {"saved_model": "sm", "call": "serve"}
