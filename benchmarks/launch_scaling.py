"""Do kernel launches from several threads into one CUDA context scale? (PyTorch only: runs on the GPU machine.)

Each thread, on a CUDA stream of its own, runs "requests" of K tiny kernels (an add on 32 x 128 floats) and one
stream synchronisation, the shape of a small recom_tvm request's device part (mixed-100 at B = 32: six launches,
~41 us on one thread). Prints requests per second from 1 / 2 / 4 / 8 threads, with and without a CUDA graph of the
K kernels (one launch per request), beside a GIL-free step. If plain launches stop scaling where graph replays do,
the device part of small requests is bound by driver calls, not by the GPU (BENCHMARKS.md, ninth session).

    python benchmarks/launch_scaling.py [--kernels 6] [--requests 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gpu_common import threaded_rate  # noqa: E402  (the standard library and numpy only)


def main() -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernels", type=int, default=6)
    p.add_argument("--requests", type=int, default=2000, help="per thread")
    p.add_argument("--threads", default="1,2,4,8")
    p.add_argument("--json", default=os.path.join(os.environ.get("OUT", "."), "launch_scaling.json"))
    a = p.parse_args()
    dev = torch.device("cuda")
    counts = [int(t) for t in a.threads.split(",")]

    class Worker:
        def __init__(self) -> None:
            self.stream = torch.cuda.Stream()
            with torch.cuda.stream(self.stream):
                self.x = torch.ones(32, 128, device=dev)
                self.y = torch.empty_like(self.x)
                self.graph = torch.cuda.CUDAGraph()
                for _ in range(2):  # warm-up before capture
                    self.kernels()
                self.stream.synchronize()
                with torch.cuda.graph(self.graph, stream=self.stream):
                    self.kernels()
            self.stream.synchronize()

        def kernels(self) -> None:
            for _ in range(a.kernels):
                torch.add(self.x, 1.0, out=self.y)

        def request(self, graph: bool) -> None:
            with torch.cuda.stream(self.stream):
                if graph:
                    self.graph.replay()
                else:
                    self.kernels()
            self.stream.synchronize()

    workers = [Worker() for _ in range(max(counts))]
    res = {"device": torch.cuda.get_device_name(), "kernels": a.kernels, "cpu_cores": os.cpu_count(), "rates": {}}
    for mode in ("launches", "graph"):
        res["rates"][mode] = {}
        graph = mode == "graph"
        for t in counts:
            for w in workers[:t]:  # warm-up
                for _ in range(20):
                    w.request(graph)
            calls = [lambda i, w=w: w.request(graph) for w in workers[:t]]
            res["rates"][mode][t] = round(threaded_rate(calls, a.requests), 1)
        base = res["rates"][mode][counts[0]]
        print(f"{mode:>9}: " + ", ".join(f"{t} threads {r:8.0f}/s ({r / base:.2f}x)"
                                         for t, r in res["rates"][mode].items()), flush=True)
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
