"""TF1 models with partitioned embedding tables (`fixed_size_partitioner`): embedding_lookup writes DynamicPartition
+ a gather per shard + ParallelDynamicStitch, which did not import ("unsupported op DynamicPartition"). The graph
rewrite (frontend/partitioned.py) makes it one gather from the stacked shards; in TF's "div" layout, checked id by
id at import, a gather by the ids themselves, fused like any column. Imported and optimized models against a TF
session on the frozen graph: scores and the embedding stage, ordinary and hostile requests."""

from __future__ import annotations

import numpy as np
import pytest

import recom_tvm
from recom_tvm.errors import UnsupportedOpError
from recom_tvm.frontend.partitioned import OP, rewrite_partitioned_lookups
from recom_tvm.passes import identify_columns

from conftest import FrozenTF1Model


def _columns(partitions: int):
    import tensorflow as tf

    v1 = tf.compat.v1

    def build():
        user = v1.placeholder(tf.string, [None, 2], name="user")
        item = v1.placeholder(tf.int64, [None, 1], name="item")
        city = v1.placeholder(tf.string, [None, 1], name="city")
        fc = v1.feature_column
        cols = [fc.embedding_column(fc.categorical_column_with_hash_bucket("user", 100), 8, combiner="mean"),
                fc.embedding_column(fc.categorical_column_with_identity("item", 10), 4, combiner="sum"),
                fc.embedding_column(fc.categorical_column_with_hash_bucket("city", 7), 4, combiner="sqrtn")]
        with v1.variable_scope("m", partitioner=v1.fixed_size_partitioner(partitions)):
            emb = fc.input_layer({"user": user, "item": item, "city": city}, cols)
        w = v1.get_variable("w", initializer=np.linspace(-1, 1, 16, dtype=np.float32).reshape(16, 1))
        score = tf.sigmoid(tf.matmul(emb, w) + 0.1)
        return {"embedding": tf.identity(emb, name="embedding"), "score": tf.identity(score, name="score")}

    return build


def _requests(rng):
    words = np.array([b"a", b"bb", b"", b"zz", b"q", b"long string here"], object)
    for b in (1, 5, 64, 0):
        yield {"user": rng.choice(words, size=(b, 2)), "item": rng.integers(0, 10, size=(b, 1)),
               "city": rng.choice(words, size=(b, 1))}, f"B={b}"


@pytest.mark.parametrize("partitions", [3, 4])
def test_feature_columns_over_partitioned_tables(tmp_path, partitions):
    """input_layer with hash-bucket (100 and 7 rows over 3 / 4 shards: uneven, and more shards than rows) and
    identity columns, all partitioned; TF's "div" layout: the lookups become gathers by the ids, and the hash-bucket
    columns are fused (the identity column's checked ids keep it beside the kernel, as unpartitioned); an item id
    outside [0, 10) is TF's error."""
    m = FrozenTF1Model(_columns(partitions), {"user": "user:0", "item": "item:0", "city": "city:0"}, tmp_path)
    ops = {c.name: c.op for c in identify_columns(m.opt)}
    assert ops == {"user_embedding": "recom.fused_embedding", "city_embedding": "recom.fused_embedding",
                   "item_embedding": "recom.gather"}, ops
    rng = np.random.default_rng(partitions)
    for request, what in _requests(rng):
        m.check(request, what)
    for bad in (10, -1, 1 << 40):
        m.check({"user": np.array([[b"a", b"b"]], object), "item": np.array([[bad]], np.int64),
                 "city": np.array([[b"x"]], object)}, f"item {bad}")


@pytest.mark.parametrize("strategy", ["mod", "div"])
def test_embedding_lookup_over_shards(tmp_path, strategy):
    """tf.nn.embedding_lookup over a list of shard variables with either partition strategy: "mod" keeps the
    general gather (row offset[p] + new, checked per shard), "div" the gather by ids; ids outside the table raise
    TF's error either way (the shard gather's, DynamicPartition's), never read another shard's row."""
    import tensorflow as tf

    v1 = tf.compat.v1
    rng = np.random.default_rng(7)
    sizes = [3, 3, 2, 2]  # 10 ids over 4 shards: TF's shard sizes under either strategy

    def build():
        ids = v1.placeholder(tf.int64, [None], name="ids")
        shards = [v1.get_variable(f"t/part_{k}", initializer=rng.normal(size=(n, 4)).astype(np.float32))
                  for k, n in enumerate(sizes)]
        e = v1.nn.embedding_lookup(shards, ids, partition_strategy=strategy)
        return {"e": tf.identity(e, name="e"), "s": tf.identity(tf.reduce_sum(e, axis=1), name="s")}

    m = FrozenTF1Model(build, {"ids": "ids:0"}, tmp_path)
    node = next(n for n in m.gd.node if n.op == "ParallelDynamicStitch")
    gd = type(m.gd)()
    gd.CopyFrom(m.gd)
    assert rewrite_partitioned_lookups(gd) == 1
    rewritten = next(n for n in gd.node if n.name == node.name)
    assert rewritten.op == OP and rewritten.attr["ids_are_rows"].b == (strategy == "div")
    for ids in ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [9, 9, 0], [], [4]):
        m.check({"ids": np.array(ids, np.int64)}, f"{strategy} ids {ids}")
    for bad in ([10], [11], [-1], [3, 12]):
        m.check({"ids": np.array(bad, np.int64)}, f"{strategy} ids {bad}")


def test_a_pattern_it_does_not_know_is_left_alone(tmp_path):
    """A stitch that is not a partitioned lookup (here: its positions are not a Range) is not rewritten."""
    import tensorflow as tf

    v1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [None], name="x")
        p = v1.placeholder(tf.int32, [None], name="p")
        pos = v1.placeholder(tf.int32, [None], name="pos")
        parts = tf.dynamic_partition(x, p, 2)
        places = tf.dynamic_partition(pos, p, 2)
        tf.dynamic_stitch(places, parts, name="out")
    gd = g.as_graph_def()
    assert rewrite_partitioned_lookups(gd) == 0
    path = tmp_path / "stitch.pb"
    path.write_bytes(gd.SerializeToString())
    with pytest.raises(UnsupportedOpError, match="DynamicPartition"):
        recom_tvm.from_tensorflow(str(path), signature={"inputs": {"x": "x:0", "p": "p:0", "pos": "pos:0"},
                                                 "outputs": {"out": "out:0"}})
