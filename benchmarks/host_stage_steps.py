"""The native host stage of a prepared model, step by step, from TF-style feeds and from the same request as
keyed-jagged, optionally for two host libraries side by side (an A/B of a change to the native code).

Runs anywhere the host library loads (the build host, or a serving host): it reads the model's spec and its
`*.host.so`, not the compiled module, so a folder prepared for CUDA measures here too.

    python benchmarks/host_stage_steps.py --dir .device/backlog/request/rp --model e --batches 32,2048 \
        [--lib other/recom_tvm_host.abi3.so] [--json out.json]

Median of --iters runs after 5 warm-up runs, ms; each step as the library times it (ingest holds the GIL except
for the string reads it defers, or not at all for a feeds dict in the usual form; the other steps run without it).

--threads 1,2: also the host stage's requests per second (the staging buffer written) from that many Python threads
at once (each its own context and buffer, config.native_threads per request): what the GIL still serializes. A host with fewer
cores than threads cannot show more than its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from recom_tvm import config  # noqa: E402
from recom_tvm.runtime.keyed_jagged import KeyedJagged  # noqa: E402
from recom_tvm.runtime.native import NativeHost, load_library  # noqa: E402
from recom_tvm.runtime.spec import InputSpec  # noqa: E402


def threads_rate(host: NativeHost, call, threads: int, per_call_s: float) -> float:
    """Requests per second of `threads` threads each running call(ctx, destination) on a context and staging
    buffer of its own, about a second each (gpu_common.threaded_rate: started together, timed to the last join)."""
    from gpu_common import threaded_rate

    calls = []
    for _ in range(threads):
        ctx, staging = host.context(), np.zeros(64 << 20, np.uint8)

        def request(i, ctx=ctx, staging=staging, address=staging.ctypes.data):
            call(ctx, lambda n: (address, staging.size))

        for i in range(3):  # (warm-up: the context's arenas)
            request(i)
        calls.append(request)
    return threaded_rate(calls, max(20, int(1.0 / per_call_s)))


def measure(lib_path: str, spec: InputSpec, requests: dict, batches: list, iters: int,
            threads: tuple = ()) -> dict:
    host = NativeHost(load_library(lib_path), spec)
    ctx = host.context()
    staging = np.zeros(1 << 20, np.uint8)

    def destination(nbytes: int):
        nonlocal staging
        if nbytes > staging.size:
            staging = np.zeros(nbytes, np.uint8)
        return staging.ctypes.data, staging.size

    out = {}
    for b in batches:
        feeds = requests["batch"][b][0]
        kjt = KeyedJagged.from_feeds(spec, feeds)
        for layout, call in (("feeds", lambda: host.request(ctx, feeds, destination)),
                             ("keyed_jagged", lambda: host.request_kjt(ctx, kjt, destination))):
            total, steps = [], []
            for i in range(iters + 5):
                t0 = time.perf_counter()
                res = call()
                dt = time.perf_counter() - t0
                if res is None:
                    raise SystemExit(f"the native host stage refused the request: {host.last_refusal}")
                if i >= 5:
                    total.append(dt)
                    steps.append(host.timings(ctx))
            out[f"{layout}_B{b}"] = row = {"total_ms": round(1e3 * float(np.median(total)), 4),
                                           **{k: round(float(np.median([s[k] for s in steps])), 4) for k in steps[0]}}
            each = (lambda c, d, f=feeds: host.request(c, f, d)) if layout == "feeds" else \
                (lambda c, d, k=kjt: host.request_kjt(c, k, d))
            for n in threads:
                row[f"threads_{n}_per_s"] = round(threads_rate(host, each, n, float(np.median(total))), 1)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True, help="a request_path_gpu.py prepare folder")
    p.add_argument("--model", default="e")
    p.add_argument("--batches", default="32,2048")
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--lib", action="append", default=[], help="another host library to measure beside the folder's")
    p.add_argument("--threads", default="", help="thread counts for the host stage's requests per second, e.g. 1,2")
    p.add_argument("--json")
    a = p.parse_args()
    with open(os.path.join(a.dir, f"{a.model}.so.spec.json")) as f:
        spec = InputSpec.from_json(json.dumps(json.load(f)["spec"]))
    with open(os.path.join(a.dir, f"{a.model}.requests.pkl"), "rb") as f:
        requests = pickle.load(f)
    batches = [int(b) for b in a.batches.split(",")]
    libs = [os.path.join(a.dir, f"{a.model}.so.host.so")] + a.lib
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu_cores": os.cpu_count(), "model": a.model, "libraries": {},
           "native_threads": config.native_threads, "feeds_outside_gil": config.native_feeds_outside_gil}
    for lib in libs:
        res["libraries"][lib] = r = measure(lib, spec, requests, batches, a.iters, tuple(int(n) for n in a.threads.split(",") if n))
        print(lib)
        for key, row in r.items():
            print(f"  {key:>18}: {row['total_ms']:7.3f} ms  " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()
                                                                      if k != "total_ms"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
