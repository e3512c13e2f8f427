"""The GPU's name as nvidia-smi reports it (for results files), or "unknown GPU"."""

from __future__ import annotations

import subprocess


def gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20).stdout.strip().splitlines()[0]
    except Exception:  # noqa: BLE001 - no driver / no GPU
        return "unknown GPU"
