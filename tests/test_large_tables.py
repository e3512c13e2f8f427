"""Full-size tables without TensorFlow building them: a resized graph (value-less table constants, TF's zeros),
imported with virtual tables, given real values with set_params, checked against the numpy reference."""

from __future__ import annotations

import os

import numpy as np

import recom_tvm
from recom_tvm.models import reference, tf_export, zoo
from recom_tvm.models.resize import embedding_output, resize_hash_columns, resized_spec
from recom_tvm.passes import identify_columns


def test_resized_model_with_tables_set_at_load(tmp_path):
    spec = zoo.demo()
    paths = tf_export.export(spec)
    big = {"user_id": 200_000, "tags": 150_000}  # 3.2M and 1.2M floats: above the virtual-zeros threshold
    pb = resize_hash_columns(paths["root"], str(tmp_path / "big"), big)
    spec = resized_spec(spec, big)  # what the resized graph computes
    assert os.path.getsize(pb) < os.path.getsize(paths["pb"])  # the big tables are not in the file
    out = embedding_output(pb)
    mod, params, _ = recom_tvm.from_tensorflow(pb, signature=str(tmp_path / "big" / "signature.json"),
                                               outputs=[out])
    virtual = [k for k, v in params.items() if v.ndim and all(s == 0 for s in v.strides)]
    assert len(virtual) == 2 and {params[k].shape[0] for k in virtual} == set(big.values())
    opt = recom_tvm.optimize(mod)
    cols = {c.name.replace("_bucketized_embedding", "").replace("_embedding", ""): c for c in identify_columns(opt)}
    model = recom_tvm.build(opt, "llvm", params)
    rng = np.random.default_rng(0)
    tables = {}
    for c in spec.columns:
        if c.kind == "numeric":
            continue
        t = params[cols[c.name].table]
        tables[c.name] = rng.normal(size=t.shape).astype(np.float32)
    model.set_params({cols[name].table: table for name, table in tables.items()})
    for batch in (1, 9, 300):
        feeds = spec.sample(batch, rng=batch, hostile=True)
        exp = reference.embedding_stage(spec, tables, feeds)
        (got,) = model.run(feeds).values()
        np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-5, err_msg=f"batch={batch}")
    lib = str(tmp_path / "big.so")
    model.export_library(lib)  # the virtual tables are not written
    loaded = recom_tvm.load(lib)
    loaded.set_params({cols[name].table: table for name, table in tables.items()})
    feeds = spec.sample(5, rng=5)
    np.testing.assert_allclose(list(loaded.run(feeds).values())[0], reference.embedding_stage(spec, tables, feeds),
                               rtol=1e-5, atol=1e-5)
