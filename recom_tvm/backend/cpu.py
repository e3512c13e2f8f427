"""The CPU that target="llvm" compiles for (config.llvm_mcpu)."""

from __future__ import annotations

import platform

import tvm

from .. import config

# x86-64-v3 (Haswell / Zen and later): 256-bit vectors and FMA, what the dense tail's CPU schedules are made for
_V3_FLAGS = {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}


def host_has_x86_64_v3() -> bool:
    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return _V3_FLAGS <= set(flags)


def llvm_mcpu() -> str:
    """The -mcpu for target="llvm" ("" for LLVM's generic CPU)."""
    mcpu = config.llvm_mcpu
    if mcpu in ("", "generic"):
        return ""
    if mcpu == "auto":
        return "x86-64-v3" if host_has_x86_64_v3() else ""
    return mcpu


def llvm_target() -> tvm.target.Target:
    mcpu = llvm_mcpu()
    return tvm.target.Target({"kind": "llvm", **({"mcpu": mcpu} if mcpu else {})})
