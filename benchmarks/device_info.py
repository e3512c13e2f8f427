"""What a results file names the machine by: the GPU as nvidia-smi reports it, the CPU and cores."""

from __future__ import annotations

import os
import platform
import subprocess


def gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20).stdout.strip().splitlines()[0]
    except Exception:  # noqa: BLE001 - no driver / no GPU
        return "unknown GPU"


def cpu_name() -> str | None:
    """The CPU's model name from /proc/cpuinfo, or None where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return None


def machine() -> str:
    """"CPU model, N cores, OS arch" of this host."""
    return f"{cpu_name() or 'unknown CPU'}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"
