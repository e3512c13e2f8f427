"""TF1 graphs written the ways users write them (a survey of Estimator-style graphs, 2026-12-07) that failed:
each now matches TF, imported and optimized, embedding stage included."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FrozenTF1Model


def test_indicator_of_a_bucketized_column(tmp_path):
    """indicator_column(bucketized_column): SparseToDense's validate_indices check read sum() over the index pairs
    after the first, and TVM's sum of nothing is unwritten memory (B = 1 raised 'indices out of bounds'); at
    B = 0 the slice of those pairs had length -1 (std::bad_alloc)."""
    import tensorflow as tf

    v1 = tf.compat.v1

    def build():
        fc = v1.feature_column
        age = v1.placeholder(tf.float32, [None, 1], name="age")
        ageb = fc.bucketized_column(fc.numeric_column("age"), [20.0, 40.0])
        emb = fc.input_layer({"age": age}, [fc.indicator_column(ageb)])
        return {"emb": tf.identity(emb, name="emb")}

    m = FrozenTF1Model(build, {"age": "age:0"}, tmp_path)
    for ages in ([[30.0]], [[1.0], [25.0], [50.0]], np.zeros([0, 1])):
        m.check({"age": np.asarray(ages, np.float32)}, f"ages {ages}")


def _linear_model(partitions: int):
    import tensorflow as tf

    v1 = tf.compat.v1

    def build():
        fc = v1.feature_column
        feats = {"age": v1.placeholder(tf.float32, [None, 1], name="age"),
                 "city": v1.placeholder(tf.string, [None, 2], name="city"),
                 "dev": v1.placeholder(tf.int64, [None, 1], name="dev")}
        cols = [fc.bucketized_column(fc.numeric_column("age"), [20.0, 40.0]),
                fc.categorical_column_with_hash_bucket("city", 50),
                fc.categorical_column_with_identity("dev", 5)]
        with v1.variable_scope("lin", partitioner=v1.fixed_size_partitioner(partitions)):
            logit = fc.linear_model(feats, cols, sparse_combiner="sqrtn")
        return {"logit": tf.identity(logit, name="logit")}

    return build


def test_linear_model_wide_part(tmp_path):
    """v1 linear_model over several columns (the wide part of Linear / DNNLinearCombined estimators): its
    weighted sum is AddN, which had no converter. Random weights (zeros would hide errors); B = 0 is TF's error
    (its SparseReshape to [B, -1] cannot infer -1 for an empty batch) and ours, as for a dense Reshape."""
    import tensorflow as tf

    rng = np.random.default_rng(11)
    v1 = tf.compat.v1
    build = _linear_model(2)

    def randomized():
        outs = build()
        for var in v1.global_variables():
            v1.add_to_collection("randomize", var.assign(rng.normal(size=var.shape).astype(np.float32)))
        return outs

    m = FrozenTF1Model(randomized, {"age": "age:0", "city": "city:0", "dev": "dev:0"}, tmp_path,
                       init_collection="randomize")
    words = np.array([b"a", b"bb", b"", b"paris"], object)
    for b in (1, 5, 0):
        m.check({"age": rng.uniform(0, 60, size=(b, 1)).astype(np.float32), "city": rng.choice(words, size=(b, 2)),
                 "dev": rng.integers(0, 5, size=(b, 1))}, f"B={b}")
    m.check({"age": np.ones((1, 1), np.float32), "city": words[:2].reshape(1, 2), "dev": np.array([[5]])},
            "dev id 5 out of range")


def test_weighted_column_over_dense_padded_ids_and_weights(tmp_path):
    """weighted_categorical_column over dense ids (-1 missing) and dense weights: optimize() built the bag's mask
    from the ids' and the weights' compacted counts, which Relax cannot prove equal, and the build crashed
    ('NoneType' object has no attribute 'values'); such a rewrite is now refused and the column stays as
    imported."""
    import tensorflow as tf

    v1 = tf.compat.v1

    def build():
        fc = v1.feature_column
        ids = v1.placeholder(tf.int64, [None, 3], name="tags")
        w = v1.placeholder(tf.float32, [None, 3], name="tags_weight")
        col = fc.weighted_categorical_column(fc.categorical_column_with_identity("tags", 40), "tags_weight")
        emb = fc.input_layer({"tags": ids, "tags_weight": w}, [fc.embedding_column(col, 8, combiner="sqrtn")])
        return {"emb": tf.identity(emb, name="emb")}

    m = FrozenTF1Model(build, {"tags": "tags:0", "tags_weight": "tags_weight:0"}, tmp_path)
    m.check({"tags": np.array([[1, 5, -1], [-1, -1, -1], [39, 0, 7]]),
             "tags_weight": np.array([[0.5, 2.0, 1.0], [1.0, 1.0, 1.0], [1.0, -1.0, 3.0]], np.float32)}, "B=3")
    m.check({"tags": np.zeros([0, 3], np.int64), "tags_weight": np.zeros([0, 3], np.float32)}, "B=0")
    m.check({"tags": np.array([[40, 1, 2]]), "tags_weight": np.ones([1, 3], np.float32)}, "id 40 out of range")


def test_saved_model_with_a_sparse_part_the_outputs_never_read(tmp_path):
    """A TF1 SavedModel (simple_save) whose signature has sparse ids and sparse weights: the weights' indices are
    read by nothing, the loader's freeze pruned their placeholder, and the import failed with a bare KeyError."""
    import tensorflow as tf

    import recom_tvm
    from conftest import assert_matches_tf, outcome

    v1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        fc = v1.feature_column
        ids = v1.sparse_placeholder(tf.int64, [None, None], name="tags")
        w = v1.sparse_placeholder(tf.float32, [None, None], name="tags_weight")
        col = fc.weighted_categorical_column(fc.categorical_column_with_identity("tags", 40), "tags_weight")
        emb = fc.input_layer({"tags": ids, "tags_weight": w}, [fc.embedding_column(col, 8, combiner="mean")])
        sess = v1.Session(graph=g)
        sess.run(v1.global_variables_initializer())
        path = str(tmp_path / "sm")
        v1.saved_model.simple_save(sess, path, inputs={"tags": ids, "tags_weight": w}, outputs={"emb": emb})
    mod, params, _ = recom_tvm.from_tensorflow(path)
    built = {"imported": recom_tvm.build(mod, "llvm", params),
             "optimized": recom_tvm.build(recom_tvm.optimize(mod), "llvm", params)}

    def sparse(rows, dtype):
        idx = [[r, c] for r, row in enumerate(rows) for c in range(len(row))]
        return (np.array(idx, np.int64).reshape(-1, 2), np.array([v for row in rows for v in row], dtype),
                np.array([len(rows), max([len(r) for r in rows] + [0])], np.int64))

    for rows, ws in (([[1, 5], [], [39, 0, 7]], [[0.5, 2.0], [], [1.0, -1.0, 0.0]]), ([[40]], [[1.0]])):
        feeds = {"tags": sparse(rows, np.int64), "tags_weight": sparse(ws, np.float32)}
        exp = outcome(lambda: sess.run(emb, {ids: v1.SparseTensorValue(*feeds["tags"]),
                                             w: v1.SparseTensorValue(*feeds["tags_weight"])}))
        for name, model in built.items():
            got = outcome(lambda: model.run(feeds))
            assert_matches_tf(got["emb"] if isinstance(got, dict) else got, exp, f"{rows} [{name}]")
    sess.close()


def _sparse(rows, dtype):
    """(indices, values, dense_shape) of a list of rows."""
    idx = [[r, c] for r, row in enumerate(rows) for c in range(len(row))]
    return (np.array(idx, np.int64).reshape(-1, 2), np.array([v for row in rows for v in row], dtype),
            np.array([len(rows), max([len(r) for r in rows] + [0])], np.int64))


def test_frozen_graph_whose_freeze_pruned_a_sparse_part(tmp_path):
    """Freezing prunes the sparse parts nothing reads (embedding_lookup_sparse reads no dense_shape, a weighted
    column no weight indices); a signature naming the whole SparseTensor was refused ('not in the graph'). The
    part is put back as a Placeholder nothing reads: the feed is taken whole, its parts checked against each
    other, and the outputs match TF (imported and optimized)."""
    import tensorflow as tf

    import recom_tvm

    v1 = tf.compat.v1

    def build():
        ids = v1.sparse_placeholder(tf.int64, [None, None], name="ids")
        tags = v1.sparse_placeholder(tf.int64, [None, None], name="tags")
        w = v1.sparse_placeholder(tf.float32, [None, None], name="tags_weight")
        table = v1.get_variable("t", initializer=np.arange(160, dtype=np.float32).reshape(40, 4) / 7)
        plain = tf.nn.embedding_lookup_sparse(table, ids, None, combiner="mean")
        fc = v1.feature_column
        col = fc.weighted_categorical_column(fc.categorical_column_with_identity("tags", 40), "tags_weight")
        weighted = fc.input_layer({"tags": tags, "tags_weight": w}, [fc.embedding_column(col, 8)])
        return {"plain": tf.identity(plain, name="plain"), "weighted": tf.identity(weighted, name="weighted")}

    def parts(name):
        return {"indices": f"{name}/indices:0", "values": f"{name}/values:0", "dense_shape": f"{name}/shape:0"}

    feeds = {n: parts(n) for n in ("ids", "tags", "tags_weight")}
    m = FrozenTF1Model(build, feeds, tmp_path)
    kept = {n.name for n in m.gd.node if n.op == "Placeholder"}
    assert "ids/shape" not in kept and "tags_weight/indices" not in kept, kept  # what the freeze prunes
    for rows, tags, ws in (([[3, 5], [39]], [[1, 5], [7]], [[0.5, 2.0], [1.0]]),
                           ([[1], [], [2, 2]], [[1], [], [3]], [[1.0], [], [-1.0]])):
        m.check({"ids": _sparse(rows, np.int64), "tags": _sparse(tags, np.int64),
                 "tags_weight": _sparse(ws, np.float32)}, f"{rows} {tags} {ws}")
    bad = _sparse([[3, 5], [39]], np.int64)
    for name, model in m.variants.items():  # the restored dense_shape still bounds the indices, as TF's SparseTensor
        with pytest.raises(recom_tvm.errors.InvalidArgumentError, match="out of bounds of dense_shape"):
            model.run({"ids": (bad[0], bad[1], np.array([2, 1], np.int64)), "tags": _sparse([[1], [2]], np.int64),
                       "tags_weight": _sparse([[1.0], [1.0]], np.float32)})
    # without a signature: sparse_placeholder's naming groups what is left of a triple into the same feature
    # (values alone stay the dense feed TF serving the frozen graph takes)
    _, _, spec = recom_tvm.from_tensorflow(str(tmp_path / "model.pb"))
    assert {(f["name"], f["kind"]) for f in spec.features} == {("ids", "sparse"), ("tags", "sparse"),
                                                                ("tags_weight/values", "dense")}


def test_sparse_placeholder_of_unknown_rank(tmp_path):
    """v1.sparse_placeholder without a shape (Estimator serving receivers): feature columns branch on its rank
    with a tf.cond the importer could not decide ('a conditional on a predicate only known at run time'); taken as
    rank 2 (every feature column's input), a dense_shape of another length is a FeedError."""
    import tensorflow as tf

    import recom_tvm

    v1 = tf.compat.v1

    def build():
        fc = v1.feature_column
        item = v1.sparse_placeholder(tf.int64, name="item")
        col = fc.categorical_column_with_identity("item", 30)
        emb = fc.input_layer({"item": item}, [fc.embedding_column(col, 4)])
        logit = fc.linear_model({"item": item}, [col])
        return {"emb": tf.identity(emb, name="emb"), "logit": tf.identity(logit, name="logit")}

    parts = {"indices": "item/indices:0", "values": "item/values:0", "dense_shape": "item/shape:0"}
    m = FrozenTF1Model(build, {"item": parts}, tmp_path)

    def sparse(rows):
        idx = [[r, c] for r, row in enumerate(rows) for c in range(len(row))]
        return (np.array(idx, np.int64).reshape(-1, 2), np.array([v for row in rows for v in row], np.int64),
                np.array([len(rows), max([len(r) for r in rows] + [1])], np.int64))

    for rows in ([[1, 2], [], [29]], [[7]], [[30]]):
        m.check({"item": sparse(rows)}, f"rows {rows}")
    rank3 = (np.zeros((1, 3), np.int64), np.array([1], np.int64), np.array([1, 1, 1], np.int64))
    for name, model in m.variants.items():
        with pytest.raises(recom_tvm.FeedError):
            model.run({"item": rank3})


def _dropout_graph(old_style: bool):
    """An embedding of dense ids, a dense layer and dropout with keep_prob = placeholder_with_default(1.0), as
    TF1 models served it: TF 2's `v1.nn.dropout` (mask RandomUniform >= 1 - keep_prob), or TF 1.x's (mask
    floor(keep_prob + random_uniform), written out as it wrote it)."""
    import tensorflow as tf

    v1 = tf.compat.v1

    def build():
        ids = v1.placeholder(tf.int64, [None, 2], name="ids")
        keep = v1.placeholder_with_default(1.0, [], name="keep_prob")
        table = tf.constant(np.random.default_rng(4).normal(size=(9, 4)).astype(np.float32))
        emb = tf.reshape(tf.gather(table, ids), [-1, 8], name="emb")
        h = tf.nn.relu(tf.matmul(emb, tf.constant(np.random.default_rng(5).normal(size=(8, 3)).astype(np.float32))))
        if old_style:
            mask = tf.floor(keep + (tf.random.uniform(tf.shape(h)) * 1.0 + 0.0))
            h = tf.math.divide(h, keep) * mask
        else:
            h = v1.nn.dropout(h, keep_prob=keep)
        return {"emb": emb, "score": tf.identity(tf.reduce_sum(h, 1), name="score")}

    return build


@pytest.mark.parametrize("old_style", [False, True], ids=["tf2_mask", "tf1_floor_mask"])
def test_dropout_with_keep_prob_defaulting_to_one(tmp_path, old_style):
    """TF1 dropout driven by keep_prob = placeholder_with_default(1.0) keeps RandomUniform live in the frozen
    graph (no cond), which had no converter: at keep_prob 1 its mask is all true (ones) for any draw, and is
    folded. keep_prob not fed: bit-exact with TF, embedding stage too, B = 0 and an id past the table included.
    keep_prob a serving input: 1.0 matches TF, another value is refused at run time naming the RandomUniform
    node; a constant keep_prob other than 1 is refused at import."""
    import tensorflow as tf

    import recom_tvm

    build = _dropout_graph(old_style)
    ids = np.array([[1, 2], [8, 0], [3, 3]], np.int64)
    m = FrozenTF1Model(build, {"ids": "ids:0"}, tmp_path)
    for feed, what in ((ids, "B = 3"), (ids[:0], "B = 0"), (np.array([[9, 1]], np.int64), "id 9 past the table")):
        m.check({"ids": feed}, what)
    fed = FrozenTF1Model(build, {"ids": "ids:0", "keep_prob": "keep_prob:0"}, tmp_path)
    fed.check({"ids": ids, "keep_prob": np.float32(1.0)}, "keep_prob fed 1")
    for name, model in fed.variants.items():
        with pytest.raises(recom_tvm.InvalidArgumentError, match="dropout is active.*RandomUniform node"):
            model.run({"ids": ids, "keep_prob": np.float32(0.5)})

    def constant_keep():
        v1 = tf.compat.v1
        x = v1.placeholder(tf.float32, [None, 3], name="x")
        return {"y": tf.identity(v1.nn.dropout(x, keep_prob=tf.constant(0.5) + tf.zeros([])), name="y")}

    with pytest.raises(recom_tvm.ConversionError, match="dropout is active here .rate 0.5.*RandomUniform node"):
        FrozenTF1Model(constant_keep, {"x": "x:0"}, tmp_path)


def test_random_noise_is_refused_naming_the_node(tmp_path, monkeypatch):
    """A random draw that is not a dropout mask (noise added to a feature) cannot match TF: refused at import,
    naming the RandomUniform node and its reader."""
    import tensorflow as tf

    import recom_tvm

    monkeypatch.setattr(recom_tvm.config, "host_fallback", False)

    def noisy():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        return {"y": tf.identity(tf.nn.relu(x + tf.random.uniform(tf.shape(x))), name="y")}

    with pytest.raises(recom_tvm.ConversionError, match="RandomUniform node 'random_uniform/RandomUniform'"):
        FrozenTF1Model(noisy, {"x": "x:0"}, tmp_path)


def defaults_saved_model(path: str):
    """A TF1 SavedModel at `path` whose signature lists two placeholder_with_default inputs (a scalar score scale, a
    per-column id offset [2]) beside the ids -> (its Session, reference(feeds by name) -> {"emb", "score"})."""
    import tensorflow as tf

    v1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        ids = v1.placeholder(tf.int64, [None, 2], name="ids")
        scale = v1.placeholder_with_default(2.0, [], name="scale")
        offset = v1.placeholder_with_default(tf.constant([0, 3], tf.int64), [2], name="offset")
        table = tf.constant(np.random.default_rng(7).normal(size=(12, 4)).astype(np.float32))
        emb = tf.reshape(tf.gather(table, tf.minimum(ids + offset, 11)), [-1, 8], name="emb")
        score = tf.identity(tf.reduce_sum(emb, 1) * scale, name="score")
        sess = v1.Session(graph=g)
        placeholders = {"ids": ids, "scale": scale, "offset": offset}
        v1.saved_model.simple_save(sess, path, inputs=placeholders, outputs={"emb": emb, "score": score})

    def reference(feeds: dict) -> dict:
        return sess.run({"emb": emb, "score": score}, {placeholders[k]: v for k, v in feeds.items()})

    return sess, reference


def test_placeholder_with_default_serving_input_may_be_left_out(tmp_path):
    """A TF1 SavedModel whose signature lists placeholder_with_default inputs (a score scale, a per-column id
    offset): Session.run takes their defaults where the request leaves them out, and so must run() and prepare()
    (the native host stage and the reference), imported and optimized, after export / load too. Fed, they are
    ordinary feeds; a feature without a default is still required."""
    import recom_tvm
    from conftest import assert_matches_tf, outcome

    path = str(tmp_path / "sm")
    sess, reference = defaults_saved_model(path)
    mod, params, _ = recom_tvm.from_tensorflow(path)
    built = {"imported": recom_tvm.build(mod, "llvm", params),
             "optimized": recom_tvm.build(recom_tvm.optimize(mod), "llvm", params)}
    assert built["optimized"].spec.feature("scale")["default"] == {"dtype": "float32", "shape": [], "value": [2.0]}
    assert "default" not in built["optimized"].spec.feature("ids")
    built["optimized"].export_library(str(tmp_path / "lib.so"))
    built["loaded"] = recom_tvm.load(str(tmp_path / "lib.so"))
    x = np.array([[1, 2], [8, 0], [3, 3]], np.int64)
    cases = [({"ids": x}, "both left out"),
             ({"ids": x, "scale": np.float32(-0.5)}, "scale fed"),
             ({"ids": x, "offset": np.array([1, 1], np.int64)}, "offset fed"),
             ({"ids": x[:0]}, "B = 0, both left out")]
    for feeds, what in cases:
        exp = reference(feeds)
        for name, model in built.items():
            got = model.run(feeds)
            for out in ("emb", "score"):
                assert_matches_tf(got[out], exp[out], f"{what}, {out} [{name}]")
            if name != "loaded":
                args = model.prepare(feeds)  # (the host stage alone: the defaults reach it too)
                assert len(args) == len(model.prepare_reference(dict(feeds, **{
                    k: v for k, v in model.spec.defaults().items() if k not in feeds})))
    for name, model in built.items():
        got = outcome(lambda: model.run({"scale": np.float32(1.0)}))
        assert isinstance(got, recom_tvm.FeedError) and "missing feed for feature ids" in str(got), (name, got)
    sess.close()


