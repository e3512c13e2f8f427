"""`main` keeps its storages until the caller has synchronised its stream (recom_tvm.backend.keep_storage), what
lets each VM of a model run on a CUDA stream of its own: the pass on small functions (Before / Expected), where it
declines, and whole models built with it, run on llvm against the same model without it (the stream path itself
runs on the GPU machine: benchmarks/threads_scaling.py, gpu_correctness.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I, relax as R, tirx as T

import recom_tvm
from recom_tvm import config
from recom_tvm.backend.keep_storage import KEEP_STORAGE_ABI, KeepStorageUntilSync, keep_storage
from recom_tvm.cuda_support import nvcc_path
from recom_tvm.models import zoo
from recom_tvm.runtime.request_slots import _numpy_dtype


def test_storages_are_returned_and_their_kills_removed():
    @I.ir_module
    class Before:
        @T.prim_func(private=True)
        def add(x: T.handle, y: T.handle):
            T.evaluate(0)

        @R.function
        def main(x: R.Tensor(("n",), "float32")) -> R.Tensor(("n",), "float32"):
            R.func_attr({"relax.force_pure": True})
            n = T.int64()
            cls = Before
            s0 = R.memory.alloc_storage(R.shape([4 * n]), 0, "global", "float32")
            a0 = R.memory.alloc_tensor(s0, 0, R.shape([n]), "float32")
            R.memory.kill_storage(s0)
            cls.add(x, a0)
            s1 = R.memory.alloc_storage(R.shape([4 * n]), 0, "global", "float32")
            a1 = R.memory.alloc_tensor(s1, 0, R.shape([n]), "float32")
            R.memory.kill_storage(s1)
            cls.add(a0, a1)
            R.memory.kill_tensor(a0)
            return a1

    @I.ir_module
    class Expected:
        @T.prim_func(private=True)
        def add(x: T.handle, y: T.handle):
            T.evaluate(0)

        @R.function
        def main(x: R.Tensor(("n",), "float32")) -> R.Tuple(R.Tensor(("n",), "float32"), R.Tuple(R.Object, R.Object)):
            R.func_attr({"relax.force_pure": True})
            n = T.int64()
            cls = Expected
            s0 = R.memory.alloc_storage(R.shape([4 * n]), 0, "global", "float32")
            a0 = R.memory.alloc_tensor(s0, 0, R.shape([n]), "float32")
            cls.add(x, a0)
            s1 = R.memory.alloc_storage(R.shape([4 * n]), 0, "global", "float32")
            a1 = R.memory.alloc_tensor(s1, 0, R.shape([n]), "float32")
            cls.add(a0, a1)
            R.memory.kill_tensor(a0)
            keep = (s0, s1)
            ret = (a1, keep)
            return ret

        @R.function
        def recom_tvm_keeps_storage() -> R.Prim("int64"):
            return R.prim_value(T.int64(1))

    after = KeepStorageUntilSync(Before)
    tvm.ir.assert_structural_equal(after, Expected)
    assert KeepStorageUntilSync(after).same_as(after)  # applied once


def test_storages_allocated_in_a_branch_come_back_from_it():
    """The CUDA-graph variant's dispatching main allocates in a branch: each side returns (result, its storages),
    unpacked after the branch (the sides' storage tuples differ: R.Any after it)."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((4,), "float32"), c: R.Prim("bool")) -> R.Tensor((4,), "float32"):
            R.func_attr({"relax.force_pure": True})
            if c:
                s = R.memory.alloc_storage(R.shape([16]), 0, "global", "float32")
                y = R.memory.alloc_tensor(s, 0, R.shape([4]), "float32")
                R.memory.kill_storage(s)
                r = y
            else:
                r = x
            return r

    @I.ir_module
    class Expected:
        @R.function
        def recom_tvm_keeps_storage() -> R.Prim("int64"):
            return R.prim_value(T.int64(1))

        @R.function
        def main(x: R.Tensor((4,), "float32"), c: R.Prim("bool")) -> R.Tuple(R.Tensor((4,), "float32"),
                                                                             R.Tuple(R.Object)):
            R.func_attr({"relax.force_pure": True})
            if c:
                s = R.memory.alloc_storage(R.shape([16]), 0, "global", "float32")
                y = R.memory.alloc_tensor(s, 0, R.shape([4]), "float32")
                kept: R.Tuple(R.Object) = (s,)
                then: R.Tuple(R.Tensor((4,), "float32"), R.Tuple(R.Object)) = (y, kept)
                pair: R.Tuple(R.Tensor((4,), "float32"), R.Object) = then
            else:
                none = R.tuple()
                other: R.Tuple(R.Tensor((4,), "float32"), R.Tuple) = (x, none)
                pair: R.Tuple(R.Tensor((4,), "float32"), R.Object) = other
            r: R.Tensor((4,), "float32") = pair[0]
            inner: R.Object = pair[1]
            storages: R.Tuple(R.Object) = (inner,)
            result: R.Tuple(R.Tensor((4,), "float32"), R.Tuple(R.Object)) = (r, storages)
            return result

    tvm.ir.assert_structural_equal(KeepStorageUntilSync(Before), Expected)


def test_the_graph_variant_main_calls_returns_its_storages_too():
    """main dispatching to a function that allocates (the CUDA-graph variant): that function returns (result,
    storages) as main does, and main unpacks its call."""

    @I.ir_module
    class Before:
        @R.function(private=True)
        def variant(x: R.Tensor((4,), "float32")) -> R.Tensor((4,), "float32"):
            R.func_attr({"relax.force_pure": True})
            s = R.memory.alloc_storage(R.shape([16]), 0, "global", "float32")
            y = R.memory.alloc_tensor(s, 0, R.shape([4]), "float32")
            R.memory.kill_storage(s)
            return y

        @R.function
        def main(x: R.Tensor((4,), "float32"), c: R.Prim("bool")) -> R.Tensor((4,), "float32"):
            R.func_attr({"relax.force_pure": True})
            cls = Before
            if c:
                r = cls.variant(x)
            else:
                r = x
            return r

    out = KeepStorageUntilSync(Before)
    assert KEEP_STORAGE_ABI in [gv.name_hint for gv in out.get_global_vars()]
    variant = out["variant"]
    assert isinstance(variant.ret_ty, relax.TupleType) and len(variant.ret_ty.fields) == 2
    text = out["main"].script()
    assert "kill_storage" not in out.script() and "r_kept[0]" in text and "r_kept[1]" in text, text


def test_declines_a_storage_in_a_function_another_one_calls():
    """A callee that allocates is made to return its storages only where main is its one caller (another caller
    would see the new return type)."""

    @I.ir_module
    class Shared:
        @R.function(private=True)
        def variant(x: R.Tensor((4,), "float32")) -> R.Tensor((4,), "float32"):
            R.func_attr({"relax.force_pure": True})
            s = R.memory.alloc_storage(R.shape([16]), 0, "global", "float32")
            y = R.memory.alloc_tensor(s, 0, R.shape([4]), "float32")
            return y

        @R.function
        def other(x: R.Tensor((4,), "float32")) -> R.Tensor((4,), "float32"):
            cls = Shared
            y = cls.variant(x)
            return y

        @R.function
        def main(x: R.Tensor((4,), "float32")) -> R.Tensor((4,), "float32"):
            R.func_attr({"relax.force_pure": True})
            cls = Shared
            y = cls.variant(x)
            return y

    assert KeepStorageUntilSync(Shared).same_as(Shared)


def test_declines_a_main_without_storage():
    @I.ir_module
    class Plain:
        @R.function
        def main(x: R.Tensor((4,), "float32")) -> R.Tensor((4,), "float32"):
            return x

    assert KeepStorageUntilSync(Plain).same_as(Plain)


@pytest.fixture(scope="module")
def demo_optimized(compiled):
    return compiled(zoo.demo(), optimized=True)


def _build(c, mode: str, target: str = "llvm"):
    old = config.keep_storage
    config.keep_storage = mode
    try:
        return recom_tvm.build(c.mod, target, c.params)
    finally:
        config.keep_storage = old


def test_a_model_built_with_it_answers_as_without(demo_optimized):
    """llvm, keep_storage forced on: run() unpacks main's (outputs, storages) and answers bit for bit as the same
    model built without the pass, at several batches; the slot sees the marker and gets the storages back."""
    c = demo_optimized
    kept, plain = _build(c, "on"), _build(c, "off")
    assert KEEP_STORAGE_ABI in kept.executable.as_text() and KEEP_STORAGE_ABI not in plain.executable.as_text()
    for batch in (1, 7, 64):
        feeds = c.spec.sample(batch, batch)
        got, want = kept.run(feeds), plain.run(feeds)
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    slot = kept._pool.acquire(kept._new_slot)
    try:
        assert slot.keeps and slot.stream() is None  # llvm: no stream, storages still returned
        args = kept.prepare(feeds)
        outs, keep = slot.call(kept.upload(args), kept._device_params(), len(kept.spec.outputs))
        assert len(outs) == len(kept.spec.outputs) and len(keep) > 0
    finally:
        kept._pool.release(slot)


def test_a_graph_dispatch_build_answers_as_without(demo_optimized, monkeypatch):
    """llvm with the CUDA-graph build's dispatch (main -> the static-planned variant up to a cap of 8, its own body
    above; no capture on a CPU) and keep_storage on: bit for bit the plain build's answers on both sides of the
    cap, and the storages come back from either side."""
    import recom_tvm.build_module as build_module
    from recom_tvm.backend import pipeline

    def dispatching(mod, target, database=None, sink=None):
        pipe = pipeline.relax_pipeline(target, True, None, 8, sink)
        with target, tvm.transform.PassContext(config={pipeline.USE_CUDA_GRAPH: False}):
            return tvm.compile(mod, target=target, relax_pipeline=pipe)

    c = demo_optimized
    plain = _build(c, "off")
    monkeypatch.setattr(build_module, "compile_module", dispatching)
    kept = _build(c, "on")
    text = kept.executable.as_text()
    assert KEEP_STORAGE_ABI in text and "main_cuda_graph" in text
    for batch in (1, 8, 9, 64):
        feeds = c.spec.sample(batch, batch)
        got, want = kept.run(feeds), plain.run(feeds)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
        slot = kept._pool.acquire(kept._new_slot)
        try:
            outs, keep = slot.call(kept.upload(kept.prepare(feeds)), kept._device_params(), len(kept.spec.outputs))
            np.testing.assert_array_equal(outs[0].numpy(), want[kept.spec.outputs[0]["name"]])
            assert slot.keeps and len(keep) > 0, batch
        finally:
            kept._pool.release(slot)


def test_threads_serving_a_model_that_keeps_storage(demo_optimized, monkeypatch):
    """8 threads, each request on its own VM of the pool, main returning (outputs, storages): the single-threaded
    answers bit for bit (llvm; on CUDA the same path adds a stream per VM)."""
    from conftest import in_threads

    monkeypatch.setattr(config, "max_vms", 8)
    c = demo_optimized
    kept = _build(c, "on")
    requests = [c.spec.sample(1 + 13 * k % 97, k) for k in range(16)]
    expected = [kept.run(f) for f in requests]
    bad = []

    def serve(t: int) -> None:
        for k in range(len(requests)):
            i = (k + t) % len(requests)
            got = kept.run(requests[i])
            bad.extend(n for n in got if not np.array_equal(got[n], expected[i][n]))

    assert in_threads(serve) == [] and bad == []


@pytest.mark.skipif(nvcc_path() is None, reason="nvcc (CUDA toolkit) is not installed on this host")
def test_cuda_builds_keep_storage_with_and_without_graphs(demo_optimized, monkeypatch):
    """By default (auto) a CUDA build carries the marker, a build with CUDA graphs too (its main dispatches in a
    branch: each side returns its storages, the graph variant its own), keep_storage=off does not."""
    c = demo_optimized
    assert KEEP_STORAGE_ABI in _build(c, "auto", "cuda").executable.as_text()
    assert KEEP_STORAGE_ABI not in _build(c, "off", "cuda").executable.as_text()
    monkeypatch.setattr(config, "cuda_graph", True)
    text = _build(c, "auto", "cuda").executable.as_text()
    assert KEEP_STORAGE_ABI in text and "vm.builtin.cuda_graph.run_or_capture" in text


def test_output_dtypes_numpy_copies_directly():
    class V:
        def __init__(self, dtype):
            self.dtype = dtype

    assert _numpy_dtype(V("float32")) == np.float32 and _numpy_dtype(V("bool")) == np.bool_
    assert _numpy_dtype(V("int64")) == np.int64
    assert _numpy_dtype(V("bfloat16")) is None and _numpy_dtype(V("float32x4")) is None


def test_declines_more_storages_than_its_bound(monkeypatch):
    """An unfused model's main allocates one storage per op output; above MAX_STORAGES they are not all held to
    the end (the memory per request would multiply): the module stays as it is."""
    import recom_tvm.backend.keep_storage as ks

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType([4], "float32"))
    with bb.function("main", [x], attrs={"relax.force_pure": True}):
        last = x
        for _ in range(3):
            s = bb.emit(relax.op.memory.alloc_storage(relax.ShapeExpr([16]), 0, "global", "float32"))
            last = bb.emit(relax.op.memory.alloc_tensor(s, 0, relax.ShapeExpr([4]), "float32"))
        bb.emit_func_output(last)
    mod = bb.get()
    assert keep_storage(mod["main"]) is not None
    monkeypatch.setattr(ks, "MAX_STORAGES", 2)
    assert keep_storage(mod["main"]) is None and KeepStorageUntilSync(mod).same_as(mod)


def test_fetch_on_a_stream_copies_each_output_into_the_pinned_buffer(monkeypatch):
    """Slot.fetch's stream path, with the driver and pinned memory stood in for (no GPU here): every output is
    queued at its own 256-aligned offset of the slot's output buffer, the stream is synchronised once, and each
    answer is a copy (the buffer is reused by the next request); an output numpy has no plain dtype for, or one
    not on the GPU, goes through TVM's numpy() after the synchronisation."""
    import ctypes

    from recom_tvm.runtime.request_slots import Slot

    class Dev:
        def __init__(self, kind):
            self.kind = kind

        def dlpack_device_type(self):
            return self.kind

    class Out:  # a device tensor as fetch sees it
        def __init__(self, arr, dtype=None, kind=2):
            self.arr, self.shape, self.device = arr, arr.shape, Dev(kind)
            self.dtype = dtype or str(arr.dtype)

        def data_ptr(self):
            return self.arr.ctypes.data

        def is_contiguous(self):
            return True

        def numpy(self):
            events.append("numpy")
            return self.arr.copy()

    events = []

    class FakeStream:
        def to_host(self, dst, src, n):
            events.append(("copy", dst - buf.ctypes.data, n))
            ctypes.memmove(dst, src, n)

        def synchronize(self):
            events.append("sync")

    buf = np.zeros(4096, np.uint8)
    slot = Slot.__new__(Slot)
    slot.out_view = buf

    def out_buffer(nbytes):
        assert nbytes <= buf.size
        return buf.ctypes.data

    monkeypatch.setattr(slot, "_out_buffer", out_buffer, raising=False)
    outs = [Out(np.arange(6, dtype=np.float32).reshape(3, 2)), Out(np.array([True, False])),
            Out(np.arange(3, dtype=np.int64)), Out(np.ones(2, np.uint16), dtype="bfloat16"),
            Out(np.full(2, 7, np.int32), kind=1)]
    got = slot.fetch(outs, FakeStream())
    assert events[:4] == [("copy", 0, 24), ("copy", 256, 2), ("copy", 512, 24), "sync"]
    assert events[4:] == ["numpy", "numpy"]  # bfloat16 and the host tensor, after the synchronisation
    for g, o in zip(got, outs):
        np.testing.assert_array_equal(g, o.arr)
        assert g.shape == o.arr.shape
    buf[:] = 0xFF  # the next request reuses the buffer: the answers are copies
    np.testing.assert_array_equal(got[0], outs[0].arr)
