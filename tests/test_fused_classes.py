"""The fused kernel's column classes (issue 14's mutation check): maximal runs of columns with the same multi-id
kind and row length. `_plan` orders the classes by kind (heavy first) and gives single-id classes several rows
per block: a class mixing kinds would get the other kind's work split."""

from __future__ import annotations

import numpy as np

from recom_tvm.ops.fused_kernel import META, _vec_stores, column_classes
from recom_tvm.runtime.fused_layout import KIND


def _meta(*cols: tuple[str, int]) -> np.ndarray:
    m = np.zeros((len(cols), len(META)), np.int64)
    off = 0
    for c, (kind, dim) in enumerate(cols):
        m[c, META.index("kind")], m[c, META.index("dim")], m[c, META.index("out_off")] = KIND[kind], dim, off
        off += dim
    return m


def test_classes_are_runs_of_one_kind_and_dim():
    got = column_classes(_meta(("csr", 8), ("dense", 8), ("one", 8), ("numeric", 8), ("csr", 4), ("csr", 4)))
    assert [(k.first, k.count, k.dim, k.multi) for k in got] == [
        (0, 2, 8, True), (2, 2, 8, False), (4, 2, 4, True)]


def test_a_kind_change_starts_a_class():
    got = column_classes(_meta(("one", 16), ("csr", 16), ("one", 16)))
    assert [(k.first, k.count, k.multi) for k in got] == [(0, 1, False), (1, 1, True), (2, 1, False)]


def test_vector_stores_only_where_every_row_is_aligned():
    """vec-wide stores need the concat's width, every dim and offset to be multiples of vec (rows start at
    b * width: an odd width misaligns every other row) and no numeric column (copied value by value)."""
    m = _meta(("csr", 8), ("one", 4))
    assert _vec_stores(m, 12, 4) and _vec_stores(m, 16, 4)  # 16: a 4-wide piece written beside the kernel
    assert not _vec_stores(m, 12, 1)
    for width in (13, 14, 15, 17):  # pieces beside the kernel of widths 1, 2, 3, 5
        assert not _vec_stores(m, width, 4), width
    assert _vec_stores(_meta(("csr", 8), ("one", 6)), 14, 2)  # 8, 6, offset 8, width 14: all even
    assert not _vec_stores(_meta(("csr", 8), ("one", 6)), 14, 4)
    assert not _vec_stores(_meta(("csr", 8), ("numeric", 4)), 12, 4)
    assert not _vec_stores(_meta(("csr", 5)), 8, 4)  # a 5-wide row stored as two float4s: 3 values past it
