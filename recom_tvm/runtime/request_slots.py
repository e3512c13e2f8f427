"""What one in-flight request holds, pooled per model so that N threads run N requests at once.

A TVM VM is not reentrant, so each slot has its own VM (the executable and the device parameters are shared), its
native host-stage context, and its staging buffer: every argument of the module laid out in one host buffer (pinned
memory, `cuda_host`, when the target is CUDA), copied to the device in one host->device copy (asynchronous on the
stream the kernels run on: no synchronisation until the outputs are copied back). On llvm the module reads the
staging buffer in place. Buffers grow geometrically and are reused from request to request.
"""

from __future__ import annotations

import queue
import threading

import tvm
import tvm.runtime.vm  # noqa: F401  (not imported by `import tvm` in runtime-only mode)
import tvm_ffi

from .. import config
from .native.program import DTYPE


class Slot:
    def __init__(self, executable, device, native) -> None:
        self.vm = tvm.runtime.vm.VirtualMachine(executable, device)
        self.main = self.vm["main"]
        self.device = device
        self.gpu = device.dlpack_device_type() != 1  # not kDLCPU: stage in pinned host memory, copy once
        self.ctx = native.context() if native is not None else None
        self.native = native
        self.host = None   # staging: host (pinned on CUDA) tvm tensor of uint8
        self.dev = None    # its device twin (CUDA)
        self.capacity = 0
        self.captured: set = set()  # capture keys (batch sizes) this VM has run: CUDA graphs captured

    def context(self, native):
        """This slot's context of the native host stage."""
        if self.native is not native:
            self.ctx, self.native = native.context(), native
        return self.ctx

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

    def arguments(self, descs: list, module_args: list, nbytes: int) -> list:
        """The module's arguments from the staging buffer: one host->device copy (CUDA), then one tensor per
        argument at its offset (its own DLTensor: compiled functions want byte_offset 0, so no offset views)."""
        base = self.host
        if self.gpu:
            if nbytes:
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
