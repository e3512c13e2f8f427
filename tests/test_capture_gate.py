"""runtime/capture_gate.py: a request that may capture a CUDA graph runs alone, the others share the device."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from recom_tvm.runtime.capture_gate import CaptureGate, capture_key_index
from recom_tvm.runtime.spec import InputSpec


def test_exclusive_waits_for_shared_holders_and_excludes_everyone():
    gate, log, inside = CaptureGate(), [], threading.Event()

    def reader(tag: str, hold: float) -> None:
        with gate.shared():
            log.append(("in", tag))
            inside.set()
            time.sleep(hold)
            log.append(("out", tag))

    def writer() -> None:
        with gate.exclusive():
            log.append(("in", "W"))
            time.sleep(0.05)
            log.append(("out", "W"))

    r1 = threading.Thread(target=reader, args=("r1", 0.2))
    r1.start()
    inside.wait()
    w = threading.Thread(target=writer)
    w.start()
    time.sleep(0.05)  # the writer waits for r1 now; a new reader must queue behind it (writers first)
    r2 = threading.Thread(target=reader, args=("r2", 0.0))
    r2.start()
    for t in (r1, w, r2):
        t.join(5)
    assert log == [("in", "r1"), ("out", "r1"), ("in", "W"), ("out", "W"), ("in", "r2"), ("out", "r2")], log
    assert gate.exclusive_entries == 1


def test_shared_holders_run_together():
    gate, barrier = CaptureGate(), threading.Barrier(4, timeout=5)

    def reader() -> None:
        with gate.shared():
            barrier.wait()  # all four inside at once, or BrokenBarrierError

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert not barrier.broken and gate.exclusive_entries == 0


def test_exclusive_released_after_an_error():
    gate = CaptureGate()
    try:
        with gate.exclusive():
            raise RuntimeError("capture failed")
    except RuntimeError:
        pass
    done = threading.Event()
    threading.Thread(target=lambda: (gate.shared().__enter__(), done.set())).start()
    assert done.wait(2)


def _spec(outputs, module_inputs) -> InputSpec:
    return InputSpec(features={}, placeholders={}, module_inputs=module_inputs, host_plan=[], outputs=outputs,
                     symbols={})


def test_capture_key_is_the_output_batch_among_the_arguments():
    inputs = [{"kind": "tensor", "shape": ["packed_len"], "source": "packed"},
              {"kind": "tensor", "shape": ["32", "32"], "source": "param"},
              {"kind": "tensor", "shape": ["B_dense", "B_b0"], "source": "feed"},
              {"kind": "shape", "shape": ["B_b0"], "source": "packed"}]
    out = [{"name": "score", "shape": ["B_b0", "1"]}]
    assert capture_key_index(_spec(out, inputs)) == (2, 0)  # params skipped; a shape argument preferred
    assert capture_key_index(_spec([{"name": "s", "shape": ["7", "1"]}], inputs)) is None  # static batch
    assert capture_key_index(_spec([{"name": "s", "shape": ["N", "1"]}], inputs)) is None  # not an argument dim


def test_a_new_slot_is_made_under_the_shared_gate(compiled, monkeypatch):
    """A request's VM (its slot) is created while the gate is held shared: loading the module onto the device
    during another thread's graph capture failed with cudaErrorStreamCaptureImplicit (8 threads on the H100)."""
    import recom_tvm
    from recom_tvm.models import zoo
    from recom_tvm.runtime import compiled_model

    c = compiled(zoo.demo(), optimized=True)
    model = recom_tvm.build(c.mod, "llvm", c.params)  # a fresh pool: the first request makes its slot
    gate = CaptureGate()
    model._gate, model._gate_key = gate, capture_key_index(model.spec)  # as a CUDA-graph build gets
    held = []

    class Recording(compiled_model.Slot):
        def __init__(self, *args, **kwargs) -> None:
            held.append(gate._readers)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(compiled_model, "Slot", Recording)
    feeds = zoo.demo().sample(3, rng=1)
    np.testing.assert_allclose(model.run(feeds)["score"], c.ref(feeds), rtol=1e-5, atol=2e-5)
    assert held == [1] and gate._readers == 0


def _gated_demo(compiled):
    """The demo built for llvm with the gate a CUDA-graph build gets (no GPU here: the capture itself is the
    GPU run's), and a log of the requests that took the step-by-step device part."""
    import recom_tvm
    from recom_tvm.models import zoo

    c = compiled(zoo.demo(), optimized=True)
    model = recom_tvm.build(c.mod, "llvm", c.params)
    model._gate, model._gate_key = CaptureGate(), capture_key_index(model.spec)
    model.stepwise_slots = []  # (key, slot) of each step-by-step request
    assert model._gate_key is not None
    stepwise = []
    call = model._call

    def logged(slot, args, *rest, **kw):
        stepwise.append(model._capture_key(args))
        model.stepwise_slots.append((model._capture_key(args), id(slot)))
        return call(slot, args, *rest, **kw)

    model._call = logged
    serve = model._serve
    model.served_slots = []  # (batch, slot) of each request served in one native call

    def served(slot, *rest, **kw):
        out = serve(slot, *rest, **kw)
        if isinstance(out, dict):
            model.served_slots.append((len(out["score"]), id(slot)))
        return out

    model._serve = served
    return c, model, stepwise


def test_graph_builds_serve_captured_batches_in_one_native_call(compiled):
    """A model with CUDA graphs takes the one-call path for the batches its slot's VM has captured (the native
    context's guard), and the step-by-step path, alone on the device, for the first request of each batch."""
    from recom_tvm.models import zoo

    c, model, stepwise = _gated_demo(compiled)
    batches = (3, 3, 5, 3, 5, 5, 1, 3)
    for i, b in enumerate(batches):
        feeds = zoo.demo().sample(b, rng=i)
        np.testing.assert_allclose(model.run(feeds)["score"], c.ref(feeds), rtol=1e-5, atol=2e-5, err_msg=str(i))
    assert stepwise == [3, 5, 1]  # one capture per batch (one thread: one slot)
    assert model._gate.exclusive_entries == 3
    assert model.one_call, model.__dict__.get("serve_error")


def test_a_failed_capture_is_tried_again_alone(compiled):
    """A request whose device part fails during its (possible) capture does not mark the batch captured: the next
    request of that batch runs alone again instead of capturing in the one-call path beside other threads."""
    from recom_tvm.models import zoo

    c, model, stepwise = _gated_demo(compiled)
    call = model._call
    fail = [True]

    def flaky(slot, args, *rest, **kw):
        if fail.pop() if fail else False:
            raise RuntimeError("capture failed")
        return call(slot, args, *rest, **kw)

    model._call = flaky
    feeds = zoo.demo().sample(4, rng=7)
    with pytest.raises(RuntimeError, match="capture failed"):
        model.run(feeds)
    np.testing.assert_allclose(model.run(feeds)["score"], c.ref(feeds), rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(model.run(feeds)["score"], c.ref(feeds), rtol=1e-5, atol=2e-5)
    # the failed request and the retry ran alone (the retry step by step), the third in one call
    assert model._gate.exclusive_entries == 2 and stepwise == [4]


def test_graph_builds_in_one_native_call_from_threads(compiled):
    """8 threads, two batch sizes: every answer right, and each slot's VM runs alone exactly once per batch it
    serves (its capture), every other request in one native call beside the others. (A slot the pool made late may
    serve one of the batches only.)"""
    from conftest import in_threads
    from recom_tvm.models import zoo

    c, model, stepwise = _gated_demo(compiled)
    requests = [zoo.demo().sample(2 + i % 2, rng=100 + i) for i in range(6)]
    expected = [c.ref(f) for f in requests]

    def serve(t: int) -> None:
        for k in range(24):
            i = (t + k) % len(requests)
            np.testing.assert_allclose(model.run(requests[i])["score"], expected[i], rtol=1e-5, atol=2e-5)

    assert in_threads(serve) == []
    slots, pairs = model._pool.created, model.stepwise_slots
    assert len(set(pairs)) == len(pairs) == model._gate.exclusive_entries, pairs  # once per slot and batch, alone
    assert {k for k, _ in pairs} == {2, 3} and len({s for _, s in pairs}) == slots and slots <= len(pairs) <= 2 * slots
    assert model.served_slots and set(model.served_slots) <= set(pairs)  # one call only for what the slot captured
