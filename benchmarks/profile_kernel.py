"""Run chosen candidates of an offline tuning round once each, for a profiler (runtime only).

    ncu --clock-control none --kernel-name regex:cand --metrics dram__bytes_read.sum,... \\
        python3 benchmarks/profile_kernel.py ROUND_DIR/e fused_..._B2048 cand_0 cand_6

The task's request is regenerated as runtime.measure does; each candidate runs twice (the second is the one to
read: warm instruction cache and TLB, like serving).
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from recom_tvm.runtime.measure import _device, load_task

    round_dir, task_name, *funcs = argv or sys.argv[1:]
    with open(os.path.join(round_dir, "manifest.json")) as f:
        manifest = json.load(f)
    dev = _device(manifest["device_type"])
    args, tables, out, lib, keep = load_task(round_dir, manifest, task_name, dev)
    for fn in funcs:
        for _ in range(2):
            lib[fn](*args, tables, out)
        dev.sync()
        print(fn, next(c["config"] for c in manifest["candidates"] if c["task"] == task_name and c["func"] == fn))
    del keep
    return 0


if __name__ == "__main__":
    sys.exit(main())
