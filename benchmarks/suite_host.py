"""The suite's host part: TF-CPU in graph mode on the frozen graphs, and the compile times of every system.

TF runs the frozen GraphDef in a v1 Session (graph mode, Grappler on, the build host's cores), fed through the
placeholders named in signature.json; inputs are drawn fresh for every timed run (uniform ids, 1-10 ids per
multi-hot row). Full-size E / F: the 2^23-row tables are zeros in TF (the resized graph's constants carry no
values), which does not change TF's work.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from recom_tvm.models.tf_graph import FrozenGraphRunner


def tf_cpu_latency(m, paths: dict, iters_small: int = 7, iters_large: int = 4) -> dict:
    """{batch: median ms} of TF-CPU on fresh inputs (feeding time excluded: feed dicts are built beforehand)."""
    g = FrozenGraphRunner(paths["pb"], paths["signature"])
    spec = m.spec()
    out = {}
    for batch in m.batches:
        n = iters_small if batch <= 256 else iters_large
        fds = [g.feed_dict(spec.sample(batch, rng=50_000 + 97 * batch + i)) for i in range(n + 1)]
        g.run(fds[0])  # warm-up: graph optimization, allocation
        ts = []
        for fd in fds[1:]:
            t0 = time.perf_counter()
            g.run(fd)
            ts.append(1e3 * (time.perf_counter() - t0))
        out[batch] = {"median_ms": float(np.median(ts)), "runs_ms": ts}
        print(f"  TF-CPU {m.name} B={batch}: {out[batch]['median_ms']:.2f} ms", flush=True)
    g.close()
    return out


def host_info() -> dict:
    import platform

    from device_info import cpu_name

    cpu = cpu_name() or "unknown"
    import tensorflow as tf

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__}
