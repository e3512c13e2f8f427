"""Run chosen candidates of an offline tuning round once each, for a profiler (runtime only).

    ncu --clock-control none --kernel-name regex:cand --metrics dram__bytes_read.sum,... \\
        python3 benchmarks/profile_kernel.py ROUND_DIR/e fused_..._B2048 cand_0 cand_6

The task's request is regenerated as runtime.measure does (a dense-layer task runs on random inputs); each
candidate runs twice (the second is the one to read: warm instruction cache and TLB, like serving). The task may be
given by its batch suffix (B2048), and in rounds of benchmarks/compact_kernels.py candidates by label (default,
tuned, stage_meta, all, ...).
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from recom_tvm.runtime.measure import _device, load_dense_task, load_task

    round_dir, task_name, *funcs = argv or sys.argv[1:]
    with open(os.path.join(round_dir, "manifest.json")) as f:
        manifest = json.load(f)
    if task_name not in manifest["tasks"]:  # a suffix such as B2048
        task_name = next(t for t in manifest["tasks"] if t.endswith(task_name))
    labels_path = os.path.join(round_dir, "labels.json")  # compact_kernels.py rounds name their candidates
    if os.path.exists(labels_path):
        with open(labels_path) as f:
            labels = json.load(f)["labels"][str(manifest["tasks"][task_name]["batch"])]
        funcs = [f if f.startswith("cand_") else f"cand_{labels.index(f)}" for f in funcs if f.startswith("cand_")
                 or f in labels]
    dev = _device(manifest["device_type"])
    task = manifest["tasks"][task_name]
    if task.get("kind") == "dense":  # a dense layer: random inputs of its shapes
        ins, out, lib, keep = load_dense_task(round_dir, task, dev)
        args, tables = ins[:-1], ins[-1]
    else:
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
