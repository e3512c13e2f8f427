"""recom_tvm.optimize on real imported models: op counts per column type, no data-dependent shape and no
device->host sync left, the column summary, and switching passes off."""

from __future__ import annotations

import pytest
from tvm import relax

import recom_tvm
from recom_tvm import report
from recom_tvm.models import zoo
from recom_tvm.passes import identify_columns

TYPES = zoo.per_column_type()


def _column_ops(mod) -> int:
    """Relax ops of the embedding columns (their slices back from the concat), not the dense tail's."""
    return sum(report.column_op_counts(mod).values())


@pytest.mark.parametrize("name", sorted(TYPES))
def test_no_data_dependent_shapes_left(compiled, name):
    c = compiled(TYPES[name])
    opt = recom_tvm.optimize(c.mod)
    assert report.device_syncs(opt) == 0
    # every symbol left is an input size: defined by the function's parameters, none by a match_cast
    main = opt["main"]
    params_syms = {v.name for p in main.params for v in relax.analysis.definable_tir_vars_in_type(p.ty)}
    all_syms = {v.name for v in relax.analysis.defined_symbolic_vars(main)}
    assert all_syms <= params_syms, all_syms - params_syms


@pytest.mark.parametrize("name, most", [("hash_string", 3), ("hash_int", 3), ("hash_string_dense", 3),
                                        ("identity", 4), ("identity_default", 8), ("identity_dense", 10)])
def test_categorical_column_falls_to_a_handful_of_ops(compiled, name, most):
    """A hash column: rows = indices[:, 0] (slice + reshape) and one bag. Identity with default keeps its
    preprocessing (5 elementwise ops: TF's out-of-range -> default); a filter that value ranges cannot prove
    becomes the mask; dense inputs build their mask and grid."""
    c = compiled(TYPES[name])
    before, after = _column_ops(c.mod), _column_ops(recom_tvm.optimize(c.mod))
    assert before >= 15 and after <= most, (before, after)


def test_bucketized_column_is_one_gather(compiled):
    c = compiled(TYPES["bucketized"])
    opt = recom_tvm.optimize(c.mod)
    counts = report.relax_op_counts(opt)
    assert counts["recom.gather"] == 1 and "recom.embedding_bag" not in counts
    assert counts["recom.bucketize"] == 1


def test_demo_columns_before_and_after(compiled):
    c = compiled(zoo.demo())
    before = {col.name: col for col in identify_columns(c.mod)}
    after = {col.name: col for col in identify_columns(recom_tvm.optimize(c.mod, disable=["fuse_columns"]))}
    fused = {col.name: col for col in identify_columns(recom_tvm.optimize(c.mod))}
    assert set(before) == set(after) == set(fused) == {
        "age_bucketized_embedding", "user_id_embedding", "country_embedding", "tags_embedding",
        "item_ids_embedding", "category_embedding"}
    assert after["tags_embedding"].op == "recom.embedding_bag" and after["tags_embedding"].combiner == "sum"
    assert after["age_bucketized_embedding"].op == "recom.gather"
    assert after["tags_embedding"].kind == "hash_bucket" and after["item_ids_embedding"].kind == \
        "identity_with_default"
    assert after["category_embedding"].inputs == ["category"]
    assert {col.op for col in fused.values()} == {"recom.fused_embedding"}
    slots = sorted(col.concat_slot for col in after.values())
    assert slots[0][0] == 0 and all(a[0] + a[1] <= b[0] for a, b in zip(slots, slots[1:]))
    for cols in (after, fused):
        assert {col.concat_slot for col in before.values()} == {col.concat_slot for col in cols.values()}


def test_passes_can_be_switched_off(compiled):
    c = compiled(TYPES["hash_int"])
    full = report.device_syncs(recom_tvm.optimize(c.mod))
    no_elim = report.device_syncs(recom_tvm.optimize(c.mod, disable=["eliminate_redundancy"]))
    no_rule = report.device_syncs(recom_tvm.optimize(c.mod, disable=["eliminate_redundancy.sparse_column"]))
    assert full == 0 and no_elim > 0 and no_rule > 0
    with pytest.raises(ValueError, match="unknown pass"):
        recom_tvm.optimize(c.mod, disable=["nope"])
