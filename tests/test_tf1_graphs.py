"""TF1 graphs written the ways users write them (a survey of Estimator-style graphs, 2026-12-07) that failed:
each now matches TF, imported and optimized, embedding stage included."""

from __future__ import annotations

import numpy as np

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
