"""The few CUDA driver calls the request path needs and TVM's Python API lacks: a stream per VM, and host<->device
copies queued on it.

TVM's tensor copies (`Tensor.copyto`, `Tensor.numpy`) always use the legacy default stream, whatever stream
`tvm_ffi.use_raw_stream` makes current for the kernels. A VM on a stream of its own (runtime/request_slots) so
copies its packed request in and its outputs back on that stream here, through the driver API (libcuda, which
every machine with an NVIDIA driver has; no toolkit needed).

The streams are created *blocking* (CU_STREAM_DEFAULT): work on the legacy default stream waits for them and they
wait for it. So whatever still runs on the default stream beside the VMs' streams (`CompiledModel.execute`, the
parameters' upload, a host check's device read) stays ordered with every request, at the price of a
synchronisation point, never of a race. TVM's own `create_raw_stream` makes non-blocking streams, which is why it
is not used here.

The calls release the GIL (ctypes) and cost about a microsecond each.
"""

from __future__ import annotations

import ctypes
import threading

_lib = None
_lock = threading.Lock()
_contexts: dict[int, ctypes.c_void_p] = {}
_tls = threading.local()


class CudaDriverError(RuntimeError):
    pass


def _driver():
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                lib = ctypes.CDLL("libcuda.so.1")
                for name in ("cuInit", "cuDeviceGet", "cuDevicePrimaryCtxRetain", "cuCtxSetCurrent", "cuStreamCreate",
                             "cuStreamDestroy_v2", "cuMemcpyHtoDAsync_v2", "cuMemcpyDtoHAsync_v2",
                             "cuStreamSynchronize", "cuGetErrorString"):
                    getattr(lib, name).restype = ctypes.c_int
                lib.cuMemcpyHtoDAsync_v2.argtypes = [ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t,
                                                     ctypes.c_void_p]
                lib.cuMemcpyDtoHAsync_v2.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_size_t,
                                                     ctypes.c_void_p]
                lib.cuStreamSynchronize.argtypes = [ctypes.c_void_p]
                lib.cuCtxSetCurrent.argtypes = [ctypes.c_void_p]
                _check(lib, lib.cuInit(0), "cuInit")
                _lib = lib
    return _lib


def _check(lib, code: int, what: str) -> None:
    if code:
        msg = ctypes.c_char_p()
        lib.cuGetErrorString(code, ctypes.byref(msg))
        raise CudaDriverError(f"{what} failed: CUDA error {code} ({(msg.value or b'?').decode()})")


def _bind(device_id: int):
    """The driver with the device's primary context (the one the CUDA runtime, hence TVM, uses) current on this
    thread; the runtime makes it current only on a thread's first runtime call, which may come after ours."""
    lib = _driver()
    bound = getattr(_tls, "bound", None)
    if bound is None:
        bound = _tls.bound = set()
    if device_id not in bound:
        ctx = _contexts.get(device_id)
        if ctx is None:
            with _lock:
                ctx = _contexts.get(device_id)
                if ctx is None:
                    dev = ctypes.c_int()
                    _check(lib, lib.cuDeviceGet(ctypes.byref(dev), device_id), "cuDeviceGet")
                    ctx = ctypes.c_void_p()
                    _check(lib, lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
                    _contexts[device_id] = ctx
        _check(lib, lib.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
        bound.add(device_id)
    return lib


def primary_context(device_id: int) -> int:
    """The handle of the device's primary context (the one TVM's runtime uses), retained."""
    _bind(device_id)
    return _contexts[device_id].value or 0


class Stream:
    """A blocking CUDA stream on one device, with the copies the request path queues on it."""

    def __init__(self, device_id: int) -> None:
        self.device_id = device_id
        lib = _bind(device_id)
        handle = ctypes.c_void_p()
        _check(lib, lib.cuStreamCreate(ctypes.byref(handle), 0), "cuStreamCreate")  # 0: CU_STREAM_DEFAULT
        self.handle = handle.value or 0

    def to_device(self, dst: int, src: int, nbytes: int) -> None:
        lib = _bind(self.device_id)
        _check(lib, lib.cuMemcpyHtoDAsync_v2(dst, src, nbytes, self.handle), "cuMemcpyHtoDAsync")

    def to_host(self, dst: int, src: int, nbytes: int) -> None:
        lib = _bind(self.device_id)
        _check(lib, lib.cuMemcpyDtoHAsync_v2(dst, src, nbytes, self.handle), "cuMemcpyDtoHAsync")

    def synchronize(self) -> None:
        lib = _bind(self.device_id)
        _check(lib, lib.cuStreamSynchronize(self.handle), "cuStreamSynchronize")

    def __del__(self) -> None:
        lib = _lib
        if lib is not None and getattr(self, "handle", 0):
            try:
                _bind(self.device_id)
                lib.cuStreamDestroy_v2(ctypes.c_void_p(self.handle))
            except Exception:  # noqa: BLE001 - at interpreter exit the driver may be gone already
                pass
