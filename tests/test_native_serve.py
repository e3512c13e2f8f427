"""run()'s one-call path (config.native_serve): the device part of a request inside the native library's GIL-free
call (runtime/native/src/rh_device.c: the VM's main through tvm-ffi's C ABI). Every answer and every error as the
step-by-step path gives them; the path is taken where it should be and left where it cannot serve."""

from __future__ import annotations

import numpy as np
import pytest

import recom_tvm
from recom_tvm import config
from recom_tvm.models import zoo
from recom_tvm.runtime import compiled_model as cm
from recom_tvm.runtime.keyed_jagged import KeyedJagged

from conftest import FunctionModel, in_threads

DEMO = zoo.demo()


@pytest.fixture
def served(monkeypatch):
    """Counts of _serve's outcomes: answered, refused (the reference decided), retried step by step."""
    counts = {"answered": 0, "refused": 0, "retried": 0}
    plain = cm.CompiledModel._serve

    def count(self, *args):
        out = plain(self, *args)
        counts["retried" if out is cm._RETRY else "refused" if out is None else "answered"] += 1
        return out

    monkeypatch.setattr(cm.CompiledModel, "_serve", count)
    monkeypatch.setattr(config, "native_serve", True)
    return counts


def _both_ways(model, feeds, monkeypatch) -> tuple[dict, dict]:
    monkeypatch.setattr(config, "native_serve", True)
    one = model.run(feeds)
    monkeypatch.setattr(config, "native_serve", False)
    steps = model.run(feeds)
    monkeypatch.setattr(config, "native_serve", True)
    return one, steps


def _same(one: dict, steps: dict) -> None:
    assert one.keys() == steps.keys()
    for k in steps:
        assert one[k].dtype == steps[k].dtype and one[k].shape == steps[k].shape, k
        assert one[k].tobytes() == steps[k].tobytes(), f"output {k!r} differs from the step-by-step path"
        assert one[k].flags.writeable and one[k].flags.c_contiguous


def test_answers_as_the_step_by_step_path(demo, served, monkeypatch):
    """Imported (154 storages, shape arguments) and optimized (one fused kernel, packed input), batches 0 to 300,
    hostile feeds, and keyed-jagged requests: bit for bit, each through the one call."""
    for batch in (0, 1, 7, 64, 300):
        for hostile in (False, True):
            feeds = DEMO.sample(batch, rng=batch + 11 * hostile, hostile=hostile)
            _same(*_both_ways(demo.model, feeds, monkeypatch))
            if batch:
                kjt = KeyedJagged.from_feeds(demo.model.spec, feeds)
                _same(*_both_ways(demo.model, kjt, monkeypatch))
    assert served["answered"] == 18 and served["retried"] == 0 and demo.model.one_call


def test_main_returning_its_storages(compiled, served, monkeypatch):
    """A model built with keep_storage (CUDA's default; forced here on llvm): the outputs are the first of main's
    (outputs, storages), the storages released after the synchronisation."""
    c = compiled(DEMO, optimized=True)
    monkeypatch.setattr(config, "keep_storage", "on")
    kept = recom_tvm.build(c.mod, "llvm", c.params)
    monkeypatch.setattr(config, "keep_storage", "auto")
    for batch in (1, 33):
        feeds = DEMO.sample(batch, rng=batch)
        _same(kept.run(feeds), c.model.run(feeds))
    assert served["answered"] == 4


def test_threads(compiled, served, monkeypatch):
    """8 threads on 8 VMs, each request one GIL-free call: the single-threaded answers, bit for bit."""
    monkeypatch.setattr(config, "max_vms", 8)
    model = compiled(DEMO, optimized=True).model
    requests = [DEMO.sample(1 + 5 * k % 41, rng=300 + k) for k in range(24)]
    monkeypatch.setattr(config, "native_serve", False)
    expected = [model.run(f) for f in requests]
    monkeypatch.setattr(config, "native_serve", True)
    bad = []

    def serve(t: int) -> None:
        for k in range(3 * len(requests)):
            i = (k * (t + 1) + t) % len(requests)
            got = model.run(requests[i])
            bad.extend((t, i, n) for n in got if got[n].tobytes() != expected[i][n].tobytes())

    assert in_threads(serve) == [] and bad == []
    assert served["answered"] >= 8 * 72


def test_refused_feeds_raise_the_reference_error(demo, served, monkeypatch):
    """A request the host stage refuses is the reference's: the same error, and the device part never runs."""
    feeds = DEMO.sample(4, rng=2)
    feeds.pop(next(iter(feeds)))
    errors = []
    for on in (True, False):
        monkeypatch.setattr(config, "native_serve", on)
        with pytest.raises(recom_tvm.FeedError) as err:
            demo.model.run(feeds)
        errors.append(str(err.value))
    assert errors[0] == errors[1] and served["refused"] == 1


@pytest.fixture(scope="module")
def gather_model():
    import tensorflow as tf

    table = tf.constant(np.arange(40, dtype=np.float32).reshape(10, 4))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
    def serve(ids):
        return {"score": tf.reduce_sum(tf.gather(table, ids), axis=1, keepdims=True)}

    return FunctionModel(serve.get_concrete_function(), passes=False)


def test_an_error_inside_main_is_raised_as_before(gather_model, served, monkeypatch):
    """main raising (the imported graph's GatherV2 check on an id outside the table, through a packed function
    back in Python): the one call reports it, the request runs again step by step and raises TF's error, the same
    as with the path off; valid requests are answered in one call."""
    model = gather_model.variants["imported"]
    ok = {"ids": np.array([0, 9, 3], np.int64)}
    _same(*_both_ways(model, ok, monkeypatch))
    assert served["answered"] == 1
    bad = {"ids": np.array([0, 10, 3], np.int64)}
    errors = []
    for on in (True, False):
        monkeypatch.setattr(config, "native_serve", on)
        with pytest.raises(recom_tvm.InvalidArgumentError) as err:
            model.run(bad)
        errors.append(str(err.value))
    assert errors[0] == errors[1] and "10" in errors[0]
    assert served["retried"] == 1
    _same(*_both_ways(model, ok, monkeypatch))  # the VM serves on after the error


def test_an_output_it_cannot_hand_back_turns_the_path_off(compiled, served, monkeypatch):
    """The native call checks main's outputs against the model's; where they differ (here: it is told to expect
    one output of a model that has two) it declines, the request is answered step by step, and later requests of
    that model skip the one call."""
    c = compiled(DEMO, optimized=True)
    model = recom_tvm.build(c.mod, "llvm", c.params)
    plain = cm.Slot.device_part

    def one_output(self, native, params, stream):
        self.n_outputs = 1
        return plain(self, native, params, stream)

    monkeypatch.setattr(cm.Slot, "device_part", one_output)
    feeds = DEMO.sample(5, rng=4)
    got = model.run(feeds)
    assert served["retried"] == 1 and model.one_call is False and "outputs" in model.serve_error
    _same(got, c.model.run(feeds))
    model.run(feeds)
    assert served["retried"] == 1 and served["answered"] == 1  # (the second: c.model's)


def test_one_native_call_per_request(compiled, served, monkeypatch):
    """The device part runs in the host stage's own call (the context armed); only a request that outgrows the
    staging buffer takes a second call (lib.serve) once the buffer has grown."""
    c = compiled(DEMO, optimized=True)
    model = recom_tvm.build(c.mod, "llvm", c.params)  # fresh slots: a 64 KB staging buffer
    lib = model.native_host().lib
    second = []
    plain = lib.serve
    monkeypatch.setattr(lib, "serve", lambda *args: second.append(1) or plain(*args))
    big = DEMO.sample(3000, rng=1)
    monkeypatch.setattr(config, "native_serve", False)
    want = c.model.run(big)
    monkeypatch.setattr(config, "native_serve", True)
    _same(model.run(big), want)
    assert second == [1]
    _same(model.run(big), want)
    model.run(DEMO.sample(3, rng=2))
    assert second == [1] and served["answered"] == 3


def test_no_context_stays_armed(compiled, served):
    """Whatever ends a request (answered from feeds or keyed-jagged, refused, raised), its slot's context is no
    longer armed: the step-by-step path on it gets the layout, not a device outcome (a stale arm once answered a
    later request() with the device part)."""
    c = compiled(DEMO, optimized=True)
    model = recom_tvm.build(c.mod, "llvm", c.params)
    native = model.native_host()
    feeds = DEMO.sample(6, rng=5)
    missing = dict(feeds)
    missing.pop(next(iter(missing)))
    for request in (feeds, KeyedJagged.from_feeds(model.spec, feeds), missing, {"not a feature": 1}):
        try:
            model.run(request)
        except recom_tvm.RecomError:
            pass
        slot = model._pool.acquire(model._new_slot)
        try:
            res = native.request(slot.context(native), feeds, slot.reserve)
            assert isinstance(res[0], list) and isinstance(res[1], int), res
        finally:
            model._pool.release(slot)
    assert served["answered"] == 2 and served["refused"] == 2


def test_a_device_part_that_cannot_be_made_leaves_the_path(compiled, served, monkeypatch):
    """Where the device part cannot be made (here: tvm-ffi's entry points not found), the request is answered
    step by step, the model leaves the one call and says why; the library refuses a device part lacking an entry
    point the device needs."""
    from recom_tvm.runtime.native import device_api

    c = compiled(DEMO, optimized=True)
    model = recom_tvm.build(c.mod, "llvm", c.params)

    def missing(cuda: bool):
        raise OSError("libtvm_ffi.so: cannot open shared object file")

    feeds = DEMO.sample(3, rng=6)
    monkeypatch.setattr(config, "native_serve", False)
    want = c.model.run(feeds)
    monkeypatch.setattr(config, "native_serve", True)
    monkeypatch.setattr(device_api, "api", missing)  # (the shared model is not run while it is patched)
    _same(model.run(feeds), want)
    assert model.one_call is False and "libtvm_ffi" in model.serve_error and served["retried"] == 1
    lib = model.native_host().lib
    with pytest.raises(ValueError, match="entry point"):  # CUDA without the driver's entry points
        lib.device_new(device_api.ffi_addresses() + (0,) * 6, 1, 1, [], 2, 0, 0, 0, 0, 1)
