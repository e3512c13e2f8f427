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
        """(ours, TF's) outputs, or the exceptions each raised. Also checks that the native host stage and the
        numpy reference give the same module arguments (bit for bit) or the same error on these feeds."""
        try:
            exp = self.ref(feeds)
        except Exception as err:  # noqa: BLE001
            exp = err
        try:
            got = self.model.run(feeds)["score"]
        except Exception as err:  # noqa: BLE001
            got = err
        assert_host_paths_agree(self.model, feeds)
        return got, exp


@pytest.fixture(autouse=True, scope="session")
def _every_run_checks_both_host_paths():
    """Every CompiledModel.run of the suite (differential tests that call run() directly included) also checks
    that the native host stage and the numpy reference agree on its feeds (assert_host_paths_agree), wherever
    the native path is on (config.host_stage, a model built with its host library)."""
    from recom_tvm import config
    from recom_tvm.runtime.compiled_model import CompiledModel

    plain = CompiledModel.run
    checked: dict = {}  # (model, feeds) checked already -> the feeds, held so that their id is not reused

    def run(self, feeds):
        try:
            return plain(self, feeds)
        finally:
            key = (id(self), id(feeds))
            if config.host_stage == "native" and self.host_library and key not in checked:
                assert_host_paths_agree(self, feeds, documented_refusals_ok=True)
                if len(checked) < 4096:  # a request served many times (the threads tests) is checked once
                    checked[key] = (self, feeds)

    CompiledModel.run = CompiledModel.__call__ = run
    yield
    CompiledModel.run = CompiledModel.__call__ = plain


def _outcome(fn, feeds):
    try:
        return fn(feeds), None
    except Exception as err:  # noqa: BLE001
        return None, err


# refusals of valid feeds that are by design (NATIVE_HOST.md): the reference serves these forms
DOCUMENTED_REFUSALS = ("feeds other than one per feature, by feature name",)


def assert_host_paths_agree(model, feeds, documented_refusals_ok: bool = False) -> None:
    """The native host stage takes the request whenever the numpy reference accepts it, and gives the same packed
    buffer and arguments; where the reference raises, model.prepare raises the same error.
    documented_refusals_ok: a feed form the core hands to the reference by design (DOCUMENTED_REFUSALS) passes."""
    native = model.native_host()
    assert native is not None, f"the native host stage is off: {model.native_error}"
    refusals = native.refusals
    got, got_err = _outcome(model.prepare, feeds)
    exp, exp_err = _outcome(model.prepare_reference, feeds)
    if exp_err is not None:
        assert type(got_err) is type(exp_err) and str(got_err) == str(exp_err), (got_err, exp_err)
        return
    assert got_err is None, f"native raised {got_err!r}, the reference accepted the feeds"
    if native.refusals != refusals and documented_refusals_ok and \
            str(native.last_refusal).startswith(DOCUMENTED_REFUSALS):
        return
    assert native.refusals == refusals, f"the native host stage refused valid feeds: {native.last_refusal}"
    assert len(got) == len(exp)
    for i, (a, b) in enumerate(zip(got, exp)):
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape, (i, a.dtype, a.shape, b.dtype, b.shape)
            assert a.tobytes() == b.tobytes(), f"argument {i} differs from the reference"
        else:
            assert tuple(a) == tuple(b), (i, a, b)


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
