"""The vectorized symbol binder: values, consistency errors naming both inputs, static dims."""

from __future__ import annotations

import numpy as np
import pytest

from recom_tvm.errors import FeedError, InvalidArgumentError
from recom_tvm.runtime.binding import Binder

SOURCES = [
    {"ref": "a:0", "kind": "tensor", "shape": ["B_a", "1"]},
    {"ref": "b:0", "kind": "tensor", "shape": ["B_b", "nnz_b"]},
    {"ref": "shape_b:0", "kind": "shape", "shape": ["B_b", "w_b"]},
    {"ref": "c:0", "kind": "tensor", "shape": ["B_a", "B_a * 2"]},  # an expression: not bound, not checked
]


def _env(ba=4, bb=4, nnz=7, w=3, c_rows=4):
    return {"a:0": np.zeros((ba, 1)), "b:0": np.zeros((bb, nnz)), "shape_b:0": np.array([bb, w]),
            "c:0": np.zeros((c_rows, 5))}


def test_binds_every_symbol_once_with_its_source():
    bound = Binder(SOURCES).bind(_env())
    assert bound == {"B_a": (4, "a:0"), "B_b": (4, "b:0"), "nnz_b": (7, "b:0"), "w_b": (3, "shape_b:0")}


def test_inconsistent_symbol_names_both_inputs():
    with pytest.raises(InvalidArgumentError, match=r"inconsistent sizes: shape_b:0 implies B_b = 5 but b:0 implies "
                                                   r"B_b = 4"):
        Binder(SOURCES).bind({**_env(), "shape_b:0": np.array([5, 3])})
    with pytest.raises(InvalidArgumentError, match="c:0 implies B_a = 6 but a:0 implies B_a = 4"):
        Binder(SOURCES).bind(_env(c_rows=6))


def test_static_dims_and_ranks_are_checked():
    with pytest.raises(FeedError, match=r"a:0: expected \['B_a', '1'\], got \[4, 2\]"):
        Binder(SOURCES).bind({**_env(), "a:0": np.zeros((4, 2))})
    with pytest.raises(FeedError, match="b:0: expected 2 shape entries, got 3"):
        Binder(SOURCES).bind({**_env(), "b:0": np.zeros((4, 7, 1))})


def test_no_sources():
    assert Binder([]).bind({}) == {}
