"""What one in-flight request holds, pooled per model so that N threads run N requests at once.

A TVM VM is not reentrant, so each slot has its own VM (the executable and the device parameters are shared), its
native host-stage context, and its staging buffer: every argument of the module laid out in one host buffer (pinned
memory, `cuda_host`, when the target is CUDA), copied to the device in one host->device copy (asynchronous on the
stream the kernels run on: no synchronisation until the outputs are copied back). On llvm the module reads the
staging buffer in place. Buffers grow geometrically and are reused from request to request.

By default (config.native_serve) the whole device part of a request runs inside the native library's call
(`device_part`: rh_device.c, one GIL round trip per request); the methods below are the step-by-step path that
`execute`, the benchmarks' step timings and a CUDA-graph build's first request per batch on a VM (its capture,
alone on the device) use.

Streams (CUDA, config.slot_streams, on by default; models whose `main` keeps its storages:
backend/keep_storage.py): each slot
runs its requests on a blocking CUDA stream of its own (runtime/cuda_driver.py), so requests of several threads
overlap on the device. The packed request goes in and the outputs come back (into a pinned buffer of the slot) on
that stream, one synchronisation per request, after which the request's storages are released. Without the
marker (old exports, CUDA-graph builds before 2026-12-07) or with it on a CUDA-graph build unless
config.cuda_graph_streams, every request runs on the default stream as before. With it, a CUDA-graph build's
capture (the first request of a batch on a VM) runs on the slot's stream too, alone on the device
(runtime/capture_gate.py).
"""

from __future__ import annotations

import ctypes
import queue
import threading

import numpy as np
import tvm
import tvm.runtime.vm  # noqa: F401  (not imported by `import tvm` in runtime-only mode)
import tvm_ffi

from .. import config
from .abi import KEEP_STORAGE_ABI
from .native.program import DTYPE

_ALIGN = 256  # outputs' offsets in the pinned output buffer


class Slot:
    def __init__(self, executable, device, native, graphs: bool = False, n_outputs: int = 1) -> None:
        self.vm = tvm.runtime.vm.VirtualMachine(executable, device)
        self.main = self.vm["main"]
        self.device = device
        self.gpu = device.dlpack_device_type() != 1  # not kDLCPU: stage in pinned host memory, copy once
        # main returns (outputs, storages): the storages are dropped once the request's stream is synchronised
        self.keeps = bool(self.vm.module.implements_function(KEEP_STORAGE_ABI))
        # kDLCUDA; CUDA-graph builds where config.cuda_graph_streams (their dispatch returns its storages since
        # 2026-12-07: keep_storage; not yet run on a GPU that way)
        self._streams = self.keeps and device.dlpack_device_type() == 2 and (not graphs or config.cuda_graph_streams)
        self._stream = None
        self.out_host = None  # pinned host buffer the outputs come back into (stream path)
        self.out_view = None
        self.ctx = native.context() if native is not None else None
        self.native = native
        self.host = None   # staging: host (pinned on CUDA) tvm tensor of uint8
        self.dev = None    # its device twin (CUDA)
        self.capacity = 0
        self.captured: set = set()  # capture keys (batch sizes) this VM has run: CUDA graphs captured
        self.guarded: set | None = None  # the keys the native context's guard holds (lib.guard; None: no guard)
        self.n_outputs = n_outputs
        self._device = None  # (params, (native, stream), the native library's device part): serve()

    def device_part(self, native, params: list, stream):
        """The native library's handle of this slot's device part (rh_device.c: the VM's main, the parameters,
        the stream the request runs on), made again when the parameters or the stream change."""
        key = (native, stream.handle if stream is not None else 0)
        if self._device is not None and self._device[0] is params and self._device[1] == key:
            return self._device[2]
        from .native.device_api import api, shape_function

        cuda = self.device.dlpack_device_type() == 2
        cu_ctx = 0
        if cuda:
            from .cuda_driver import primary_context

            cu_ctx = primary_context(self.device.index)
        handle = native.lib.device_new(api(cuda), self.main.__chandle__(), shape_function().__chandle__(),
                                       [p.__chandle__() for p in params], self.device.dlpack_device_type(),
                                       self.device.index, cu_ctx, key[1], int(self.keeps), self.n_outputs)
        self._device = (params, key, handle)
        return handle

    def context(self, native):
        """This slot's context of the native host stage."""
        if self.native is not native:
            self.ctx, self.native = native.context(), native
            self.guarded = None  # (a new context has no guard)
        return self.ctx

    def staging(self, nbytes: int) -> tuple[int, int, int]:
        """(host address, device address (0 on a CPU device: the module reads the host buffer), capacity) of a
        staging buffer of at least nbytes."""
        addr, cap = self.reserve(nbytes)
        return addr, int(self.dev.data_ptr()) if self.dev is not None else 0, cap

    def reserve(self, nbytes: int) -> tuple[int, int]:
        """(address, capacity) of a staging buffer of at least nbytes (for NativeHost.request)."""
        if self.host is None or nbytes > self.capacity:
            cap = max(nbytes, 2 * self.capacity, 1 << 16)
            cap = (cap + 4095) // 4096 * 4096
            # pinned host memory: DLPack's kDLCUDAHost (3); tvm_ffi.device parses no name for it ("cuda_host" raises)
            host_dev = tvm_ffi.device(3, 0) if self.gpu else self.device
            self.host = tvm.runtime.empty((cap,), "uint8", host_dev)
            self.dev = tvm.runtime.empty((cap,), "uint8", self.device) if self.gpu else None
            self.capacity = cap
        return int(self.host.data_ptr()), self.capacity

    def stream(self):
        """This slot's CUDA stream (cuda_driver.Stream) for the next request, or None: the default stream."""
        if not (self._streams and config.slot_streams):
            return None
        if self._stream is None:
            from .cuda_driver import Stream

            self._stream = Stream(self.device.index)
        return self._stream

    def call(self, args: list, params: list, n_outputs: int) -> tuple[list, object]:
        """Run main -> (its outputs as a list, what must outlive the request's stream work: its storages, or None)."""
        out = self.main(*args, *params)
        keep = None
        if self.keeps:
            out, keep = out[0], out[1]
        return ([out] if n_outputs == 1 else list(out)), keep

    def fetch(self, outs: list, stream) -> list:
        """The outputs as numpy arrays: on `stream`, async copies into the slot's pinned output buffer and one
        synchronisation; without a stream, TVM's copies (default stream)."""
        if stream is None:
            return [_host_copy(v) for v in outs]
        plan, total = [], 0
        for v in outs:
            dt = _numpy_dtype(v)
            if dt is None or v.device.dlpack_device_type() != 2 or not v.is_contiguous():
                plan.append(None)
                continue
            n = int(np.prod(v.shape, dtype=np.int64)) * dt.itemsize
            plan.append((total, n, dt))
            total += (n + _ALIGN - 1) // _ALIGN * _ALIGN
        if total:
            base = self._out_buffer(total)
            for v, p in zip(outs, plan):
                if p is not None and p[1]:
                    stream.to_host(base + p[0], v.data_ptr(), p[1])
        stream.synchronize()
        view = self.out_view
        return [v.numpy() if p is None else view[p[0]:p[0] + p[1]].view(p[2]).reshape(tuple(v.shape)).copy()
                for v, p in zip(outs, plan)]

    def _out_buffer(self, nbytes: int) -> int:
        if self.out_host is None or nbytes > self.out_view.size:
            grown = 2 * (0 if self.out_view is None else self.out_view.size)
            cap = (max(nbytes, grown, 1 << 16) + 4095) // 4096 * 4096
            self.out_host = tvm.runtime.empty((cap,), "uint8", tvm_ffi.device(3, 0))  # pinned (kDLCUDAHost)
            addr = int(self.out_host.data_ptr())
            self.out_view = np.ctypeslib.as_array((ctypes.c_uint8 * cap).from_address(addr))
        return int(self.out_host.data_ptr())

    def arguments(self, descs: list, module_args: list, nbytes: int, stream=None) -> list:
        """The module's arguments from the staging buffer: one host->device copy (CUDA; on `stream` if given), then
        one tensor per argument at its offset (its own DLTensor: compiled functions want byte_offset 0, so no
        offset views)."""
        base = self.host
        if self.gpu:
            if nbytes and stream is not None:
                stream.to_device(int(self.dev.data_ptr()), int(self.host.data_ptr()), nbytes)
            elif nbytes:
                self.host._create_view((nbytes,), "uint8").copyto(self.dev._create_view((nbytes,), "uint8"))
            base = self.dev
        addr = int(base.data_ptr())
        dev_type, dev_id = self.device.dlpack_device_type(), self.device.index
        dlpack = self.native.lib.dlpack
        out = []
        for inp, (off, shape) in zip(module_args, descs):
            if off < 0:
                out.append(tvm_ffi.Shape(list(shape)))
            else:
                ext = _External(dlpack(addr + off, dev_type, dev_id, DTYPE[inp["dtype"]], shape), (dev_type, dev_id))
                out.append(tvm_ffi.from_dlpack(ext))
        return out


_DLPACK_COPY = frozenset(("float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16",
                          "uint32", "uint64"))


def _host_copy(v) -> np.ndarray:
    """A numpy copy of an output: a CPU tensor of a plain numeric dtype through DLPack (0.4 us against 4.4 for
    TVM's numpy(), which parses its dtype each time), any other through numpy() (a device tensor: a copy on the
    default stream)."""
    if v.device.dlpack_device_type() == 1 and str(v.dtype) in _DLPACK_COPY:
        return np.from_dlpack(v).copy()
    return v.numpy()


def _numpy_dtype(v):
    """numpy's dtype for a tensor's, None where numpy has no plain equivalent (TVM's numpy() then converts)."""
    name = str(v.dtype)
    if name in ("bfloat16",) or name.startswith(("float8", "float6", "float4", "int4")) or "x" in name:
        return None
    try:
        return np.dtype(name)
    except TypeError:
        return None


class _External:
    """A DLPack producer for memory the slot owns (tvm_ffi.from_dlpack takes objects with __dlpack__)."""

    __slots__ = ("capsule", "device")

    def __init__(self, capsule, device) -> None:
        self.capsule, self.device = capsule, device

    def __dlpack__(self, stream=None):
        return self.capsule

    def __dlpack_device__(self):
        return self.device


class SlotPool:
    """Up to config.max_vms slots, created on demand; a request takes one and gives it back."""

    def __init__(self) -> None:
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        self._count = 0
        self._lock = threading.Lock()

    def acquire(self, make) -> Slot:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._count < max(1, config.max_vms):
                self._count += 1
                try:
                    return make()
                except BaseException:
                    self._count -= 1
                    raise
        return self._free.get()

    @property
    def created(self) -> int:
        """Slots made so far (each holds a VM)."""
        return self._count

    def release(self, slot: Slot) -> None:
        self._free.put(slot)
