"""The fused kernel's two bucketize searches give TF's buckets: the binary search and the linear count
(`KernelConfig.linear_search`: columns with at most that many boundaries count the boundaries <= x instead), on
columns with fewer, exactly as many and more boundaries than the limit, and on values that sit on a boundary, between
duplicates' neighbours, NaN, +-inf and denormals."""

from __future__ import annotations

import numpy as np
import pytest

import recom_tvm
from recom_tvm.models.spec import ColumnSpec, ModelSpec
from recom_tvm.ops.fused_kernel import DEFAULT, KernelConfig

from conftest import assert_matches_tf

# boundary counts around the linear limit of 16: 1, 5, 16 (linear), 17, 40 (binary search kept)
BOUNDS = {n: tuple(float(x) for x in np.round(np.linspace(-4.0, 4.0, n), 3)) for n in (1, 5, 16, 17, 40)}
SPEC = ModelSpec("bucketize_search", tuple(
    ColumnSpec(f"b{n}", "bucketized", 4, "mean", boundaries=b) for n, b in BOUNDS.items()),
    dense_width=2, bottom_mlp=(4,), top_mlp=(8,), seed=5)
SCHEDULES = {
    "binary": DEFAULT,
    "linear": KernelConfig(linear_search=16),
    "linear_once_staged": KernelConfig(linear_search=16, search_once=True, stage_meta=True, group=2, rows=2),
    "linear_64": KernelConfig(linear_search=64, vec=8, threads=64),
}


def _feeds(spec: ModelSpec, n: int, rng: int) -> dict:
    """Random rows, then every boundary, its float neighbours and the special values, in every column."""
    feeds = spec.sample(n, rng=rng)
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1e30, -1e30], np.float32)
    for c in spec.columns:
        b = np.asarray(c.boundaries, np.float32)
        edge = np.concatenate([b, np.nextafter(b, np.float32(-np.inf)), np.nextafter(b, np.float32(np.inf)),
                               special])
        x = feeds[c.name].reshape(-1).copy()
        x[:len(edge)] = edge[:len(x)]
        feeds[c.name] = x.reshape(feeds[c.name].shape)
    return feeds


@pytest.fixture(scope="module")
def model(compiled):
    return compiled(SPEC, optimized=True)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_every_search_buckets_as_tf(model, name):
    opt, _, _ = model.variants["optimized"]
    assert "fused" in " ".join(opt.attrs["recom_tvm.facts"])
    built = recom_tvm.build(opt, "llvm", model.params, kernel_schedules=((None, SCHEDULES[name]),))
    for batch, rng in ((200, 1), (7, 2)):
        feeds = _feeds(SPEC, batch, rng)
        got = built.run(feeds)
        assert_matches_tf(got["embedding"], model.tf_embedding(feeds), f"{name}: embedding stage, B={batch}")
        assert_matches_tf(got["score"], model.ref(feeds), f"{name}: score, B={batch}")
