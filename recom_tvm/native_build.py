"""Compile the native host stage (recom_tvm/runtime/native/src) on the build host.

One shared library per source version, cached under config.cache_dir/native: a CPython extension on the stable
ABI (Py_LIMITED_API 3.11), so the file `export_library` ships beside a model loads on any CPython >= 3.11 of the
same platform without a compiler there. The C compiler is $CC, else the first of cc / gcc / clang on PATH (what
TVM's export_library links with is there too).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sysconfig
import tempfile
import threading

from . import config

SRC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime", "native", "src")
LIMITED_API = "0x030B0000"
FLAGS = ["-O2", "-std=c11", "-shared", "-fPIC", "-fvisibility=hidden", "-fno-strict-aliasing",
         f"-DPy_LIMITED_API={LIMITED_API}"]
_LOCK = threading.Lock()
_BUILT: dict[str, str] = {}


class NativeBuildError(RuntimeError):
    """The native host stage could not be compiled here (no C compiler, no Python headers, a compile error)."""


def compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc:
        return cc
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


def sources() -> list[str]:
    return sorted(os.path.join(SRC_DIR, f) for f in os.listdir(SRC_DIR) if f.endswith((".c", ".h")))


def library_path() -> str:
    """The compiled library (built on first use, then cached by source hash); NativeBuildError if it cannot be."""
    cc = compiler()
    if cc is None:
        raise NativeBuildError("no C compiler found (set $CC)")
    include = sysconfig.get_paths().get("include")
    if not include or not os.path.exists(os.path.join(include, "Python.h")):
        raise NativeBuildError(f"Python.h not found in {include}")
    h = hashlib.sha256()
    for path in sources():
        with open(path, "rb") as f:
            h.update(os.path.basename(path).encode() + b"\0" + f.read())
    h.update(" ".join([cc] + FLAGS).encode())
    key = h.hexdigest()[:16]
    with _LOCK:
        if key in _BUILT:
            return _BUILT[key]
        out_dir = os.path.join(config.cache_dir, "native", key)
        out = os.path.join(out_dir, "recom_tvm_host.abi3.so")
        if not os.path.exists(out):
            os.makedirs(out_dir, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
            os.close(fd)
            cmd = [cc, *FLAGS, f"-I{include}", "-x", "c", *[s for s in sources() if s.endswith(".c")], "-o", tmp,
                   "-lpthread"]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                os.unlink(tmp)
                raise NativeBuildError(f"compiling the native host stage failed:\n{' '.join(cmd)}\n{res.stderr}")
            os.replace(tmp, out)  # atomic: concurrent builders each write a whole file
            config.log(f"native host stage built: {out}")
        _BUILT[key] = out
        return out


def try_library_path() -> str | None:
    """library_path(), or None (logged) where the native host stage cannot be built: the numpy reference runs."""
    try:
        return library_path()
    except NativeBuildError as err:
        config.log(f"native host stage unavailable, using numpy: {err}")
        return None
