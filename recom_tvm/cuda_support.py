"""Building CUDA artifacts on a host without a GPU driver.

TVM's CUDA codegen hands the generated source to a factory in `libtvm_runtime_cuda.so`, which links the driver
(`libcuda.so.1`). Without a driver that library fails to load *silently* and `export_library` writes CUDA source
instead of a binary. Fix: a stub `libcuda.so.1` exporting the nine driver symbols the runtime imports (each
returns CUDA_ERROR_NO_DEVICE), loaded with RTLD_GLOBAL before the CUDA runtime library, and nvcc as the compiler
(`TVM_CUDA_COMPILE_MODE=nvcc`). Exported libraries are then checked for an embedded fatbin.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess

from . import config

_STUB_SRC = r"""
/* recom_tvm: stub of the CUDA driver API for building (never running) CUDA modules on GPU-less hosts. */
typedef int CUresult;
#define NO_DEVICE 100
static const char *kMsg = "recom_tvm CUDA driver stub: no GPU on this host";
CUresult cuGetErrorName(CUresult e, const char **s) { (void)e; *s = "CUDA_ERROR_NO_DEVICE"; return 0; }
CUresult cuGetErrorString(CUresult e, const char **s) { (void)e; *s = kMsg; return 0; }
CUresult cuDeviceGetName(char *n, int len, int d) { (void)n; (void)len; (void)d; return NO_DEVICE; }
CUresult cuFuncSetAttribute(void *f, int a, int v) { (void)f; (void)a; (void)v; return NO_DEVICE; }
CUresult cuLaunchKernelEx(const void *c, void *f, void **p, void **e) { (void)c; (void)f; (void)p; (void)e;
  return NO_DEVICE; }
CUresult cuModuleGetFunction(void **f, void *m, const char *n) { (void)f; (void)m; (void)n; return NO_DEVICE; }
CUresult cuModuleLoadData(void **m, const void *d) { (void)m; (void)d; return NO_DEVICE; }
CUresult cuModuleUnload(void *m) { (void)m; return NO_DEVICE; }
CUresult cuTensorMapEncodeTiled(void *t, int a, unsigned r, void *g, const void *d, const void *s,
  const void *bd, const void *es, int il, int sw, int l2, int oob) {
  (void)t; (void)a; (void)r; (void)g; (void)d; (void)s; (void)bd; (void)es; (void)il; (void)sw; (void)l2; (void)oob;
  return NO_DEVICE; }
"""

FATBIN_MAGIC = b"\x50\xed\x55\xba"  # fatbin wrapper magic in the embedded device image
_READY = False


def _driver_present() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1", mode=ctypes.RTLD_GLOBAL)
        return True
    except OSError:
        return False


def stub_path() -> str:
    """Build (once, cached) and return the path of the driver stub library."""
    out_dir = os.path.join(config.cache_dir, "cuda_stub")
    path = os.path.join(out_dir, "libcuda.so.1")
    if not os.path.exists(path):
        os.makedirs(out_dir, exist_ok=True)
        src = os.path.join(out_dir, "cuda_stub.c")
        with open(src, "w") as f:
            f.write(_STUB_SRC)
        cc = shutil.which("gcc") or shutil.which("cc")
        if cc is None:
            raise RuntimeError("building CUDA artifacts without a GPU driver needs a C compiler (gcc) for the stub")
        tmp = path + f".{os.getpid()}.tmp"
        subprocess.run([cc, "-shared", "-fPIC", "-O1", "-Wl,-soname,libcuda.so.1", "-o", tmp, src], check=True)
        os.replace(tmp, path)
    return path


def nvcc_path() -> str | None:
    cand = os.path.join(config.cuda_home, "bin", "nvcc")
    return cand if os.path.exists(cand) else shutil.which("nvcc")


def prepare_cuda_build() -> None:
    """Make TVM's CUDA codegen usable here: driver (or stub), cudart, libtvm_runtime_cuda, nvcc mode."""
    global _READY
    if _READY:
        return
    if nvcc_path() is None:
        raise RuntimeError("target='cuda' needs nvcc (the CUDA toolkit) on the build host; "
                           f"looked in {config.cuda_home}/bin and on PATH (set CUDA_PATH)")
    os.environ.setdefault("TVM_CUDA_COMPILE_MODE", "nvcc")
    # TVM compiles CUDA with --use_fast_math by default (approximate division, sqrt and exp): TF's outputs are the
    # contract, so IEEE arithmetic (TF-CPU's flush-to-zero of denormals is applied to the feeds on the host)
    os.environ.setdefault("TVM_CUDA_NVCC_NO_FAST_MATH", "1")
    os.environ.setdefault("CUDA_PATH", config.cuda_home)
    if not _driver_present():
        ctypes.CDLL(stub_path(), mode=ctypes.RTLD_GLOBAL)
    lib64 = os.path.join(config.cuda_home, "lib64")
    for name in sorted(os.listdir(lib64)) if os.path.isdir(lib64) else []:
        if name.startswith("libcudart.so."):
            ctypes.CDLL(os.path.join(lib64, name), mode=ctypes.RTLD_GLOBAL)
            break
    import tvm

    if tvm.get_global_func("ffi.Module.create.cuda", allow_missing=True) is None:
        lib = os.path.join(os.path.dirname(tvm.__file__), "lib", "libtvm_runtime_cuda.so")
        ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
    _READY = True


def has_fatbin(path: str) -> bool:
    """True if the exported library embeds a compiled CUDA image (not just CUDA source)."""
    with open(path, "rb") as f:
        data = f.read()
    return FATBIN_MAGIC in data or b"\x7fELF" in data[64:] and b".nv.info" in data


def fatbin_images(path: str) -> list[tuple[str, int]]:
    """(kind, sm) of every image in the fatbins embedded in a library: kind "elf" (SASS) or "ptx", sm e.g. 90.

    Reads the fatbin container format (header: magic, version, header size, payload size; then one entry per
    image with its kind at offset 0 and its SM version at offset 28) so tests can tell which GPUs a library
    runs on without cuobjdump."""
    import struct

    with open(path, "rb") as f:
        data = f.read()
    images, pos = [], data.find(FATBIN_MAGIC)
    while pos >= 0:
        _, _, hsize, fsize = struct.unpack_from("<IHHQ", data, pos)
        entry, end = pos + hsize, pos + hsize + fsize
        while entry + 32 <= end:
            kind, _, ehsize, payload = struct.unpack_from("<HHII", data, entry)
            sm = struct.unpack_from("<I", data, entry + 28)[0]
            images.append(({1: "ptx", 2: "elf"}.get(kind, f"kind{kind}"), sm))
            if ehsize == 0:
                break
            entry += ehsize + payload
        pos = data.find(FATBIN_MAGIC, max(end, pos + 4))
    return images
