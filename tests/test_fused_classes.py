"""The fused kernel's column classes (issue 14's mutation check): maximal runs of columns with the same multi-id
kind and row length. `_plan` orders the classes by kind (heavy first) and gives single-id classes several rows
per block: a class mixing kinds would get the other kind's work split."""

from __future__ import annotations

import numpy as np

from recom_tvm.ops.fused_kernel import META, column_classes
from recom_tvm.runtime.fused_layout import KIND


def _meta(*cols: tuple[str, int]) -> np.ndarray:
    m = np.zeros((len(cols), len(META)), np.int64)
    for c, (kind, dim) in enumerate(cols):
        m[c, META.index("kind")], m[c, META.index("dim")] = KIND[kind], dim
    return m


def test_classes_are_runs_of_one_kind_and_dim():
    got = column_classes(_meta(("csr", 8), ("dense", 8), ("one", 8), ("numeric", 8), ("csr", 4), ("csr", 4)))
    assert [(k.first, k.count, k.dim, k.multi) for k in got] == [
        (0, 2, 8, True), (2, 2, 8, False), (4, 2, 4, True)]


def test_a_kind_change_starts_a_class():
    got = column_classes(_meta(("one", 16), ("csr", 16), ("one", 16)))
    assert [(k.first, k.count, k.multi) for k in got] == [(0, 1, False), (1, 1, True), (2, 1, False)]
