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


class TFGraph:
    """A frozen GraphDef in a TF session: run(feeds) with recom_tvm-style feeds."""

    def __init__(self, pb: str, signature: str, threads: int = 0) -> None:
        import tensorflow as tf

        v1 = tf.compat.v1
        with open(signature) as f:
            self.sig = json.load(f)
        gd = v1.GraphDef()
        with open(pb, "rb") as f:
            gd.ParseFromString(f.read())
        self.graph = tf.Graph()
        with self.graph.as_default():
            v1.import_graph_def(gd, name="")
        cfg = v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)
        self.sess = v1.Session(graph=self.graph, config=cfg)
        self.out = self.sig["outputs"]["score"]

    def feed_dict(self, feeds: dict) -> dict:
        fd = {}
        for name, t in self.sig["inputs"].items():
            v = feeds[name]
            if isinstance(t, dict):
                idx, vals, shape = v
                vals = np.asarray(vals)
                if vals.dtype == object:
                    vals = np.array([x.encode() if isinstance(x, str) else x for x in vals], dtype=object)
                fd[t["indices"]], fd[t["values"]], fd[t["dense_shape"]] = np.asarray(idx), vals, np.asarray(shape)
            else:
                v = np.asarray(v)
                if v.dtype == object:
                    v = np.vectorize(lambda x: x.encode() if isinstance(x, str) else x, otypes=[object])(v)
                fd[t] = v
        return fd

    def run(self, fd: dict) -> np.ndarray:
        return self.sess.run(self.out, feed_dict=fd)


def tf_cpu_latency(m, paths: dict, iters_small: int = 7, iters_large: int = 4) -> dict:
    """{batch: median ms} of TF-CPU on fresh inputs (feeding time excluded: feed dicts are built beforehand)."""
    g = TFGraph(paths["pb"], paths["signature"])
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
    g.sess.close()
    return out


def host_info() -> dict:
    import platform

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import tensorflow as tf

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__}
