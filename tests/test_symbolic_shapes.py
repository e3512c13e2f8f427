"""One import and one build serve every batch size and id count: the batch and each column's id count are
symbolic Relax dims."""

from __future__ import annotations

import numpy as np

import recom_tvm
from recom_tvm.models import zoo

from conftest import assert_matches_tf


def test_signature_has_symbolic_batch_and_nnz(compiled):
    c = compiled(zoo.demo())
    params = c.mod["main"].params
    shapes = {p.name: str(p.ty) for p in params}
    # every feature brings its batch symbol; the concat asserts them equal (on the host, with TF's error) and
    # they are merged into one; sparse indices get a per-feature nnz symbol; dense_shape is a Relax shape
    dense = c.ispec.feature("dense")["tensors"]["value"].split(":")[0]
    assert "(B_dense, 4)" in shapes[dense]
    tags = c.ispec.feature("tags")["tensors"]
    assert "nnz_tags" in shapes[tags["indices"].split(":")[0]]
    assert shapes[tags["dense_shape"].split(":")[0]].startswith("R.Shape([B_tags,")
    assert c.ispec.symbols["B_tags"] == "batch size of feature tags"
    eqs = {tuple(sorted((a["expr"][1][1], a["expr"][2][1]))) for a in c.ispec.assertions if a["expr"][0] == "eq"}
    assert ("B_dense", "B_tags") in eqs or any("B_tags" in e for e in eqs)
    opt = recom_tvm.optimize(c.mod)
    batch_symbols = {s for p in opt["main"].params for s in str(p.ty).replace("(", " ").replace(",", " ").split()
                     if s.startswith("B_")}
    assert len(batch_symbols) == 1, batch_symbols


def test_many_batch_sizes_without_rebuild(compiled):
    c = compiled(zoo.demo())
    executable = c.model.executable
    for batch in (1, 2, 3, 31, 64, 200, 513):
        got, exp = c.run_both(zoo.demo().sample(batch, rng=batch, hostile=batch % 2 == 1))
        assert_matches_tf(got, exp, f"batch={batch}")
    assert c.model.executable is executable


def test_zero_batch(compiled):
    c = compiled(zoo.per_column_type()["hash_int"])
    feeds = c.spec.sample(0, rng=0)
    got, exp = c.run_both(feeds)
    assert_matches_tf(got, exp)
    if not isinstance(exp, Exception):
        assert np.asarray(got).shape == (0, 1)
