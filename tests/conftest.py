"""Shared fixtures: generated TF models (cached on disk), their TF references, and compiled recom_tvm models."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# our tests must really convert every op: host co-run (TF fallback) only where a test turns it on
os.environ.setdefault("RECOM_TVM_HOST_FALLBACK", "0")
os.environ.setdefault("RECOM_TVM_CACHE", os.path.join(os.path.dirname(os.path.dirname(__file__)), ".cache"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import recom_tvm  # noqa: E402
from recom_tvm.models import tf_export  # noqa: E402

# Float tolerance: only summation order differs from TF (segment sums, matmuls).
ATOL = 2e-5


class Compiled:
    """A spec exported to TF, imported from `source` and built for llvm, with TF as reference."""

    def __init__(self, spec, source: str = "pb", tf1: bool = False, optimized: bool = False) -> None:
        self.spec = spec
        self.paths = tf_export.export(spec, tf1=tf1)
        self.ref = tf_export.TFReference(spec, self.paths, tf1=tf1)
        if source == "pb":
            self.mod, self.params, self.ispec = recom_tvm.from_tensorflow(self.paths["pb"],
                                                                           signature=self.paths["signature"])
        else:
            self.mod, self.params, self.ispec = recom_tvm.from_tensorflow(self.paths[source])
        if optimized:
            self.mod = recom_tvm.optimize(self.mod)
        self.model = recom_tvm.build(self.mod, "llvm", self.params)

    def run_both(self, feeds):
        """(ours, TF's) outputs, or the exceptions each raised."""
        try:
            exp = self.ref(feeds)
        except Exception as err:  # noqa: BLE001
            exp = err
        try:
            got = self.model.run(feeds)["score"]
        except Exception as err:  # noqa: BLE001
            got = err
        return got, exp


def assert_matches_tf(got, exp, what: str = "") -> None:
    """Both raise (ours with a clear recom_tvm error) or both answer with the same values."""
    if isinstance(exp, Exception):
        assert isinstance(got, recom_tvm.RecomError), f"{what}: TF raised {exp!r} but recom_tvm gave {got!r}"
        return
    if isinstance(got, Exception):
        raise AssertionError(f"{what}: recom_tvm raised but TF answered") from got
    assert got.shape == exp.shape, f"{what}: shape {got.shape} vs TF {exp.shape}"
    np.testing.assert_allclose(got, exp, rtol=1e-5, atol=ATOL, err_msg=what)


_COMPILED: dict = {}


@pytest.fixture(scope="session")
def compiled():
    """compiled(spec, source="pb"|"saved_model"|"tf1", optimized=False) -> Compiled, built once per session."""

    def get(spec, source: str = "pb", optimized: bool = False) -> Compiled:
        key = (spec.key(), source, optimized)
        if key not in _COMPILED:
            _COMPILED[key] = Compiled(spec, "tf1" if source == "tf1" else source, tf1=source == "tf1",
                                      optimized=optimized)
        return _COMPILED[key]

    return get


def pytest_sessionfinish(session, exitstatus):
    """No worker process (TVM popen workers, RPC servers) may outlive the test run."""
    import psutil

    left = psutil.Process().children(recursive=True)
    for p in left:
        p.kill()
    if left:
        print(f"\nconftest: killed {len(left)} leftover child process(es): "
              f"{[' '.join(p.cmdline()[:4]) for p in left if p.is_running()][:5]}")
