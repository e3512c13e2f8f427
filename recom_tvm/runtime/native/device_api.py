"""The entry points the native library's device part calls (rh_device.c), by address: tvm-ffi's C ABI from the
libtvm_ffi that `tvm_ffi` has loaded, the CUDA driver's from libcuda (runtime/cuda_driver.py). The library links
against neither, so it still loads on a host with no GPU and with any tvm-ffi build."""

from __future__ import annotations

import ctypes
import functools
import os

import tvm_ffi

# rh_api's fields, in order (rh.h)
FFI_NAMES = ("TVMFFIFunctionCall", "TVMFFIObjectDecRef", "TVMFFIObjectIncRef", "TVMFFITensorFromDLPack",
             "TVMFFIEnvSetStream", "TVMFFIErrorMoveFromRaised")
CUDA_NAMES = ("cuCtxSetCurrent", "cuMemcpyHtoDAsync_v2", "cuMemcpyDtoHAsync_v2", "cuStreamSynchronize",
              "cuMemHostAlloc", "cuMemFreeHost")

# DLPack (type code, bits) -> numpy dtype name of the outputs serve() hands back
NUMPY_OF_DL = {(0, 8): "int8", (0, 16): "int16", (0, 32): "int32", (0, 64): "int64", (1, 8): "uint8",
               (1, 16): "uint16", (1, 32): "uint32", (1, 64): "uint64", (2, 16): "float16", (2, 32): "float32",
               (2, 64): "float64", (6, 8): "bool"}
SERVED_DTYPES = frozenset(NUMPY_OF_DL.values())


def _address(lib, name: str) -> int:
    return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value or 0


@functools.lru_cache(maxsize=None)
def ffi_addresses() -> tuple[int, ...]:
    lib = ctypes.CDLL(_libtvm_ffi())  # the library tvm_ffi loaded (dlopen: the same handle)
    return tuple(_address(lib, n) for n in FFI_NAMES)


def _libtvm_ffi() -> str:
    """The path of the libtvm_ffi this process has loaded (a runtime bundle's included), else tvm_ffi's own."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rsplit(None, 1)[-1]
                if os.path.basename(path).startswith("libtvm_ffi.") and os.path.exists(path):
                    return path
    except OSError:
        pass
    from tvm_ffi import libinfo

    return libinfo.find_libtvm_ffi()


def api(cuda: bool) -> tuple[int, ...]:
    """rh_api's addresses: tvm-ffi's, then the driver's (zeros without CUDA)."""
    if not cuda:
        return ffi_addresses() + (0,) * len(CUDA_NAMES)
    from ..cuda_driver import _driver

    lib = _driver()
    return ffi_addresses() + tuple(_address(lib, n) for n in CUDA_NAMES)


@functools.lru_cache(maxsize=None)
def shape_function() -> tvm_ffi.Function:
    """tvm-ffi's "ffi.Shape" (a shape argument from its values); kept alive here, its handle given to C."""
    return tvm_ffi.get_global_func("ffi.Shape")
