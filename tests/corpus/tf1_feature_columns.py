"""TF1 feature columns as Estimator-era code writes them: `tf.compat.v1.feature_column` + `input_layer` in a
Session, frozen with `convert_variables_to_constants` (the table initializers kept through `init_all_tables`)."""

from __future__ import annotations

import os

import numpy as np

from . import registry as r

COUNTRIES = ("us", "fr", "de", "cn", "jp", "br")
USER_IMPORTS = ("inputs_only", "no_signature", "outputs_only")
LEVELS = (1, 2, 3, 5, 8)


def _freeze(sess, graph, outputs: dict, inputs: dict, out_dir: str, pb: str = "model.pb") -> dict:
    """Freeze the session's graph into out_dir/<pb>, keeping the table initializers (TF1 practice)."""
    tf = _tf()
    v1 = tf.compat.v1
    keep = [t.op.name for t in outputs.values()]
    # the serving inputs stay, even one the outputs do not read (a weighted column's weight indices)
    keep += [t.split(":")[0] for desc in inputs.values() for t in ([desc] if isinstance(desc, str) else
                                                                      desc.values())]
    init = [op.name for op in graph.get_operations() if op.name == "init_all_tables"]
    gd = v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), keep + init)
    os.makedirs(os.path.dirname(os.path.join(out_dir, pb)), exist_ok=True)
    with open(os.path.join(out_dir, pb), "wb") as f:
        f.write(gd.SerializeToString())
    return {"pb": pb, "signature": {"inputs": inputs, "outputs": {k: t.name for k, t in outputs.items()}}}


def _tf():
    import tensorflow as tf

    return tf


def dense(x, units: int, activation, name: str):
    """A TF1 dense layer written by hand (tf.compat.v1.layers needs Keras 2), as pre-Keras code did."""
    tf = _tf()
    v1 = tf.compat.v1
    with v1.variable_scope(name):
        w = v1.get_variable("kernel", [int(x.shape[-1]), units], initializer=v1.glorot_uniform_initializer())
        b = v1.get_variable("bias", [units], initializer=v1.random_normal_initializer(stddev=0.1))
    return activation(tf.matmul(x, w) + b)


def _sparse_inputs(v1, tf, name: str, dtype) -> tuple:
    sp = v1.sparse_placeholder(dtype, [None, None], name=name)
    return sp, {"indices": sp.indices.name, "values": sp.values.name, "dense_shape": sp.dense_shape.name}


def _vocab_list_feeds(rng, batch, hostile):
    lens = r.row_lengths(rng, batch, 3, hostile)
    country = r.sparse(lens, r.strings(rng, int(lens.sum()), COUNTRIES, hostile))
    lens2 = r.row_lengths(rng, batch, 2, hostile)
    level = r.sparse(lens2, r.ints(rng, int(lens2.sum()), 0, 10, hostile))
    return {"country": country, "level": level, "age": r.floats(rng, (batch, 1), hostile)}


@r.entry("tf1_feature_columns", feeds=_vocab_list_feeds, user_imports=USER_IMPORTS)
def tf1_vocab_list_indicator(out_dir: str) -> dict:
    """String and int vocabulary lists (embedding and indicator), a numeric column, a small MLP."""
    tf = _tf()
    v1 = tf.compat.v1
    fc = v1.feature_column
    with tf.Graph().as_default() as g:
        v1.set_random_seed(1)
        country, c_in = _sparse_inputs(v1, tf, "country", tf.string)
        level, l_in = _sparse_inputs(v1, tf, "level", tf.int64)
        age = v1.placeholder(tf.float32, [None, 1], name="age")
        cols = [fc.embedding_column(fc.categorical_column_with_vocabulary_list("country", COUNTRIES), 4,
                                    combiner="mean"),
                fc.indicator_column(fc.categorical_column_with_vocabulary_list("level", LEVELS, dtype=tf.int64)),
                fc.embedding_column(fc.categorical_column_with_vocabulary_list("level", LEVELS, dtype=tf.int64,
                                                                               num_oov_buckets=2), 3, combiner="sum"),
                fc.numeric_column("age")]
        emb = fc.input_layer({"country": country, "level": level, "age": age}, cols)
        h = dense(emb, 8, tf.nn.relu, "hidden")
        score = dense(h, 1, tf.sigmoid, "score")
        with v1.Session(graph=g) as sess:
            sess.run([v1.global_variables_initializer(), v1.tables_initializer()])
            return _freeze(sess, g, {"score": score, "embedding": emb},
                           {"country": c_in, "level": l_in, "age": age.name}, out_dir)



# ------------------------------------------------------------------------------------------ vocabulary files
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "ünï", "中文")
CODES = (3, 17, 42, 99, 1000, -5)


def _vocab_file_feeds(rng, batch, hostile):
    lens = r.row_lengths(rng, batch, 3, hostile)
    lens2 = r.row_lengths(rng, batch, 2, hostile)
    lens3 = r.row_lengths(rng, batch, 2, hostile)
    return {"word": r.sparse(lens, r.strings(rng, int(lens.sum()), WORDS, hostile)),
            "tag": r.sparse(lens3, r.strings(rng, int(lens3.sum()), WORDS[:4], hostile)),
            "code": r.sparse(lens2, np.array([CODES[i] if i < len(CODES) else i * 7 for i in
                                              rng.integers(0, len(CODES) + 3, int(lens2.sum()))], np.int64)
                             if not hostile else r.ints(rng, int(lens2.sum()), -10, 1100, hostile))}


@r.entry("tf1_feature_columns", feeds=_vocab_file_feeds, user_imports=USER_IMPORTS)
def tf1_vocab_file(out_dir: str) -> dict:
    """Vocabulary FILE columns (string keys with OOV buckets, int keys with a default, an indicator), the graph
    holding the files' absolute paths, which lie outside the .pb's folder (and do not exist where it is used:
    the artifact maps them, as a user copying a model to another machine must)."""
    tf = _tf()
    v1 = tf.compat.v1
    fc = v1.feature_column
    vocab_dir = os.path.join(out_dir, "vocab")
    os.makedirs(vocab_dir)
    words_path = os.path.join(vocab_dir, "words.txt")
    codes_path = os.path.join(vocab_dir, "codes.txt")
    with open(words_path, "w", encoding="utf-8") as f:
        f.write("\n".join(WORDS) + "\n")
    with open(codes_path, "w") as f:
        f.write("\n".join(str(c) for c in CODES) + "\n")
    with tf.Graph().as_default() as g:
        v1.set_random_seed(2)
        word, w_in = _sparse_inputs(v1, tf, "word", tf.string)
        code, c_in = _sparse_inputs(v1, tf, "code", tf.int64)
        cols = [fc.embedding_column(fc.categorical_column_with_vocabulary_file("word", words_path, len(WORDS),
                                                                               num_oov_buckets=3), 4),
                fc.embedding_column(fc.categorical_column_with_vocabulary_file(
                    "code", codes_path, len(CODES), dtype=tf.int64, default_value=0), 3, combiner="sqrtn"),
                fc.indicator_column(fc.categorical_column_with_vocabulary_file("word", words_path, len(WORDS))),
                fc.embedding_column(fc.categorical_column_with_hash_bucket("tag", 20), 2)]
        tag, t_in = _sparse_inputs(v1, tf, "tag", tf.string)
        emb = fc.input_layer({"word": word, "code": code, "tag": tag}, cols)
        score = dense(dense(emb, 8, tf.nn.relu, "hidden"), 1, tf.sigmoid, "score")
        with v1.Session(graph=g) as sess:
            sess.run([v1.global_variables_initializer(), v1.tables_initializer()])
            art = _freeze(sess, g, {"score": score, "embedding": emb}, {"word": w_in, "code": c_in, "tag": t_in}, out_dir,
                          "model/model.pb")
    art["assets"] = {words_path: "vocab/words.txt", codes_path: "vocab/codes.txt"}
    return art


# ----------------------------------------------------------------------------- every other column kind, TF1
CITIES = tuple(f"city_{i}" for i in range(30))


def _mix_feeds(rng, batch, hostile):
    lens = r.row_lengths(rng, batch, 4, hostile)
    lens_tag = r.row_lengths(rng, batch, 3, hostile)
    n_tag = int(lens_tag.sum())
    weights = r.floats(rng, n_tag, hostile, 1.0)
    if not hostile:
        weights = np.abs(weights) + 0.1
    lens_home = r.row_lengths(rng, batch, 1, hostile)
    return {"city": r.sparse(lens, r.strings(rng, int(lens.sum()), CITIES, hostile)),
            "home_city": r.sparse(lens_home, r.strings(rng, int(lens_home.sum()), CITIES, hostile)),
            "user_id": r.sparse(np.ones(batch, np.int64), r.ints(rng, batch, 0, 10 ** 6, hostile)),
            "item": r.sparse(lens_tag, r.ints(rng, n_tag, 0, 50, False)),
            "item_weight": r.sparse(lens_tag, weights.astype(np.float32)),
            "slot": r.sparse(np.ones(batch, np.int64), r.ints(rng, batch, 0, 20, hostile)),
            "price": r.floats(rng, (batch, 1), hostile, 50.0),
            "age": r.floats(rng, (batch, 1), hostile, 20.0)}


@r.entry("tf1_feature_columns", feeds=_mix_feeds)
def tf1_estimator_mix(out_dir: str) -> dict:
    """Hash buckets (string, int), bucketized, crossed, weighted categorical, identity with a default, shared
    embeddings and numeric columns in one TF1 input_layer, as Estimator-era models mix them."""
    tf = _tf()
    v1 = tf.compat.v1
    fc = v1.feature_column
    with tf.Graph().as_default() as g:
        v1.set_random_seed(3)
        feats, inputs = {}, {}
        for name, dtype in (("city", tf.string), ("home_city", tf.string), ("user_id", tf.int64), ("item", tf.int64),
                            ("item_weight", tf.float32), ("slot", tf.int64)):
            feats[name], inputs[name] = _sparse_inputs(v1, tf, name, dtype)
        for name in ("price", "age"):
            feats[name] = v1.placeholder(tf.float32, [None, 1], name=name)
            inputs[name] = feats[name].name
        city = fc.categorical_column_with_hash_bucket("city", 50)
        user = fc.categorical_column_with_hash_bucket("user_id", 1000, dtype=tf.int64)
        item = fc.categorical_column_with_identity("item", 50)
        slot = fc.categorical_column_with_identity("slot", 10, default_value=0)
        age = fc.bucketized_column(fc.numeric_column("age"), [0.0, 18.0, 25.0, 35.0, 50.0, 65.0])
        cols = [fc.embedding_column(city, 4, combiner="mean"),
                fc.embedding_column(user, 6, combiner="sum"),
                fc.embedding_column(fc.weighted_categorical_column(item, "item_weight"), 4, combiner="sqrtn"),
                fc.embedding_column(slot, 2),
                fc.embedding_column(age, 3),
                fc.embedding_column(fc.crossed_column(["city", age], 64), 4),
                fc.numeric_column("price"),
                *fc.shared_embedding_columns([fc.categorical_column_with_hash_bucket("city", 40),
                                              fc.categorical_column_with_hash_bucket("home_city", 40)], 3,
                                             shared_embedding_collection_name="shared_city_item")]
        emb = fc.input_layer(feats, cols)
        score = dense(dense(emb, 8, tf.nn.relu, "hidden"), 1, tf.sigmoid, "score")
        with v1.Session(graph=g) as sess:
            sess.run([v1.global_variables_initializer(), v1.tables_initializer()])
            return _freeze(sess, g, {"score": score, "embedding": emb}, inputs, out_dir)


# --------------------------------------------------------------- a wide model with delimited string features
N_STR, N_INT, N_NUM, N_BUCKET = 12, 8, 6, 6  # + 8 columns over split strings: 40
TAGS = tuple(f"t{i}" for i in range(40))
GENRES = ("rock", "jazz", "pop", "folk", "rap", "soul")


def _delimited(rng, batch: int, vocab, sep: str, hostile: bool) -> np.ndarray:
    """One delimited string per row, as production logs hold multi-valued features ("t1|t7|t3")."""
    out = []
    for _ in range(batch):
        n = int(rng.integers(0 if hostile else 1, 5))
        toks = list(r.strings(rng, n, vocab, hostile))
        if hostile and rng.random() < 0.3:
            toks.insert(int(rng.integers(0, n + 1)), "")  # empty token: "a||b", leading / trailing separators
        out.append(sep.join(toks))
    if hostile and batch:
        for k, v in enumerate(("", sep, sep * 3, " ", "ünï" + sep + "中文", "x" * 300)):
            out[int(rng.integers(0, batch))] = v
    return np.array(out, dtype=object)


def _wide_feeds(rng, batch, hostile):
    feeds = {}
    for i in range(N_STR):
        lens = r.row_lengths(rng, batch, 1 + i % 4, hostile)
        feeds[f"s{i}"] = r.sparse(lens, r.strings(rng, int(lens.sum()), [f"v{k}" for k in range(20)], hostile))
    for i in range(N_INT):
        lens = r.row_lengths(rng, batch, 1 + i % 3, hostile)
        feeds[f"i{i}"] = r.sparse(lens, r.ints(rng, int(lens.sum()), 0, 100, hostile and i % 2 == 0))
    for i in range(N_NUM + N_BUCKET):
        feeds[f"f{i}"] = r.floats(rng, (batch, 1), hostile, 10.0)
    feeds["tags"] = _delimited(rng, batch, TAGS, "|", hostile)
    feeds["genres"] = _delimited(rng, batch, GENRES, ",", hostile)
    feeds["title"] = _delimited(rng, batch, TAGS[:10] + GENRES, " ", hostile)
    feeds["path"] = _delimited(rng, batch, ("home", "cart", "item", "pay"), "/", hostile)
    return feeds


@r.entry("tf1_feature_columns", feeds=_wide_feeds)
def tf1_wide_split_strings(out_dir: str) -> dict:
    """~40 columns as a production TF1 ranking model has them, with delimited string features split in the
    graph: tf.compat.v1.string_split (StringSplit, delimiter set) and tf.compat.v1.strings.split (StringSplitV2:
    a separator string, and whitespace without one), each feeding hash-bucket / vocabulary / indicator columns."""
    tf = _tf()
    v1 = tf.compat.v1
    fc = v1.feature_column
    with tf.Graph().as_default() as g:
        v1.set_random_seed(4)
        feats, inputs, cols = {}, {}, []
        for i in range(N_STR):
            feats[f"s{i}"], inputs[f"s{i}"] = _sparse_inputs(v1, tf, f"s{i}", tf.string)
            cols.append(fc.embedding_column(fc.categorical_column_with_hash_bucket(f"s{i}", 100 + 10 * i),
                                            4 + 4 * (i % 2), combiner=("mean", "sum", "sqrtn")[i % 3]))
        for i in range(N_INT):
            feats[f"i{i}"], inputs[f"i{i}"] = _sparse_inputs(v1, tf, f"i{i}", tf.int64)
            cat = (fc.categorical_column_with_identity(f"i{i}", 100, default_value=0) if i % 2 == 0 else
                   fc.categorical_column_with_hash_bucket(f"i{i}", 64, dtype=tf.int64))
            cols.append(fc.embedding_column(cat, 4))
        for i in range(N_NUM + N_BUCKET):
            feats[f"f{i}"] = v1.placeholder(tf.float32, [None, 1], name=f"f{i}")
            inputs[f"f{i}"] = feats[f"f{i}"].name
            num = fc.numeric_column(f"f{i}")
            cols.append(num if i < N_NUM else fc.embedding_column(
                fc.bucketized_column(num, [-10.0, -3.0, -1.0, 0.0, 1.0, 3.0, 10.0]), 3))
        for name in ("tags", "genres", "title", "path"):
            feats[name + "_raw"] = v1.placeholder(tf.string, [None], name=name)
            inputs[name] = feats[name + "_raw"].name
        # delimited strings split in the graph, the way TF1 input functions did it
        feats["tags"] = v1.string_split(feats["tags_raw"], "|")                              # StringSplit
        feats["path"] = v1.string_split(feats["path_raw"], "/", skip_empty=False)            # keeps empty tokens
        feats["genres"] = v1.strings.split(feats["genres_raw"], sep=",", result_type="SparseTensor")  # V2
        feats["title"] = v1.strings.split(feats["title_raw"], result_type="SparseTensor")    # V2, whitespace
        cols += [fc.embedding_column(fc.categorical_column_with_hash_bucket("tags", 500), 8, combiner="sum"),
                 fc.embedding_column(fc.categorical_column_with_vocabulary_list("genres", GENRES,
                                                                                num_oov_buckets=1), 4),
                 fc.indicator_column(fc.categorical_column_with_vocabulary_list("genres", GENRES)),
                 fc.embedding_column(fc.categorical_column_with_hash_bucket("title", 200), 4, combiner="sqrtn"),
                 fc.embedding_column(fc.categorical_column_with_vocabulary_list(
                     "path", ("home", "cart", "item", "pay"), default_value=0), 2),
                 fc.embedding_column(fc.crossed_column(["s0", "s1"], 300), 4),
                 fc.embedding_column(fc.crossed_column(["tags", "i1"], 300), 4),
                 fc.indicator_column(fc.categorical_column_with_identity("i0", 100, default_value=0))]
        emb = fc.input_layer(feats, cols)
        score = dense(dense(emb, 16, tf.nn.relu, "hidden"), 1, tf.sigmoid, "score")
        with v1.Session(graph=g) as sess:
            sess.run([v1.global_variables_initializer(), v1.tables_initializer()])
            return _freeze(sess, g, {"score": score, "embedding": emb}, inputs, out_dir)
