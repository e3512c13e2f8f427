"""Serving checks: many threads of one process, and memory over many requests of varying size.

    # host only (build for llvm, run here)
    python benchmarks/serving.py local [--runs 10000] [--json out.json]
    # GPU: build here, run with the TVM runtime only on the GPU machine
    python benchmarks/serving.py prepare --dir .device/serving
    python benchmarks/serving.py run --dir .device/serving --out $OUT

1. Concurrency: 8 threads x 1,000 requests (different inputs, batch 1..48, some hostile) must give exactly the
   single-threaded answers; throughput with 1 and 8 threads (each request takes a VM and a staging buffer from
   the model's pool; the native host stage releases the GIL; on CUDA the staging buffer is pinned and the request
   path reports it).
2. Memory: `--runs` requests drawn fresh (batch 1..512, 1-10 ids per multi-hot row): host RSS and device memory
   sampled every 1,000 requests; the growth after the first 1,000 (warm-up: the allocator's pools fill) is the
   figure to watch, and must stay flat.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from device_info import gpu_name  # noqa: E402


def _spec():
    from recom_tvm.models import zoo

    return zoo.demo()


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _device_used_mb() -> float | None:
    try:
        import torch

        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            return (total - free) / 2**20
    except Exception:  # noqa: BLE001 - no torch / no GPU: host only
        pass
    return None


def concurrency(model, spec, threads: int = 8, per_thread: int = 1000) -> dict:
    requests = [spec.sample(1 + (k * 7) % 48, rng=1000 + k, hostile=k % 3 == 0) for k in range(64)]
    expected = [model.run(f)["score"] for f in requests]
    mismatches, errors = [], []

    def serve(t: int, n: int, check: bool) -> None:
        try:
            for i in range(n):
                k = (i * (2 * t + 1) + t) % len(requests)
                got = model.run(requests[k])["score"]
                if check and not np.array_equal(got, expected[k]):
                    mismatches.append((t, i, k))
        except Exception as err:  # noqa: BLE001 - reported
            errors.append(repr(err))

    def timed(nthreads: int, n: int, check: bool) -> float:
        ts = [threading.Thread(target=serve, args=(t, n, check)) for t in range(nthreads)]
        t0 = time.perf_counter()
        for th in ts:
            th.start()
        for th in ts:
            th.join()
        return time.perf_counter() - t0

    wall = timed(threads, per_thread, True)
    single = timed(1, per_thread, False)
    return {"threads": threads, "requests_per_thread": per_thread, "mismatches": len(mismatches),
            "errors": errors[:3], "wall_s": wall, "req_per_s_threads": threads * per_thread / wall,
            "req_per_s_single": per_thread / single}


def memory(model, spec, runs: int, every: int = 1000) -> dict:
    every = max(1, min(every, runs // 2))  # at least two samples: growth is measured between the first and last
    rng = np.random.default_rng(0)
    samples = []
    t0 = time.perf_counter()
    for i in range(runs):
        batch = int(rng.integers(1, 513))
        model.run(spec.sample(batch, rng=int(rng.integers(1 << 31))))
        if (i + 1) % every == 0:
            samples.append({"runs": i + 1, "rss_mb": _rss_mb(), "device_mb": _device_used_mb(),
                            "s": time.perf_counter() - t0})
            print(f"  {i + 1:6d} runs: host RSS {samples[-1]['rss_mb']:.1f} MB"
                  + (f", device {samples[-1]['device_mb']:.1f} MB" if samples[-1]["device_mb"] is not None else ""),
                  flush=True)
    first, last = samples[0], samples[-1]
    growth_dev = None if first["device_mb"] is None else last["device_mb"] - first["device_mb"]
    return {"runs": runs, "samples": samples, "rss_growth_mb": last["rss_mb"] - first["rss_mb"],
            "device_growth_mb": growth_dev, "pool_releases": getattr(model, "pool_releases", None),
            "req_per_s": runs / (time.perf_counter() - t0)}


def request_path(model) -> dict:
    """What run() used: the native host stage (or why not), its threads, the staging buffer's memory."""
    from recom_tvm import config

    native = model.native_host()
    model.run(_spec().sample(4, rng=0))
    slot = model._pool.acquire(model._new_slot)  # the one that request used
    staging = None if slot.host is None else str(slot.host.device)
    model._pool.release(slot)
    return {"host_stage": "native" if native is not None else f"numpy ({model.native_error or config.host_stage})",
            "native_threads": config.native_threads, "max_vms": config.max_vms, "staging_device": staging,
            "one_copy_to_device": bool(slot.gpu), "native_refusals": native.refusals if native else None}


def report(model, spec, runs: int, device: str, out_json: str | None) -> int:
    print(f"device: {device}")
    path = request_path(model)
    print("request path: " + ", ".join(f"{k} {v}" for k, v in path.items()))
    c = concurrency(model, spec)
    print(f"concurrency: {c['threads']} threads x {c['requests_per_thread']} requests: {c['mismatches']} mismatches, "
          f"{len(c['errors'])} errors; {c['req_per_s_threads']:.0f} req/s with {c['threads']} threads, "
          f"{c['req_per_s_single']:.0f} req/s with 1")
    print(f"memory: {runs} requests, batch 1..512, drawn fresh")
    m = memory(model, spec, runs)
    print(f"memory growth after the first 1000 requests: host {m['rss_growth_mb']:+.1f} MB"
          + (f", device {m['device_growth_mb']:+.1f} MB" if m["device_growth_mb"] is not None else "")
          + f"; {m['pool_releases']} pool releases, {m['req_per_s']:.0f} req/s")
    result = {"device": device, "date": time.strftime("%Y-%m-%d"), "model": spec.name, "request_path": path,
              "concurrency": c, "memory": m}
    if out_json:
        os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
        with open(out_json, "w") as f:
            json.dump(result, f, indent=1)
    ok = c["mismatches"] == 0 and not c["errors"]
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["local", "prepare", "run"])
    p.add_argument("--dir", default=".device/serving")
    p.add_argument("--out", default=os.environ.get("OUT"))
    p.add_argument("--json", default=None)
    p.add_argument("--runs", type=int, default=10000)
    p.add_argument("--arch", default="sm_90")
    a = p.parse_args()
    spec = _spec()
    if a.mode == "run":
        from recom_tvm.runtime import load

        model = load(os.path.join(a.dir, "demo.opt.so"))
        out = a.json or (os.path.join(a.out, "serving.json") if a.out else None)
        return report(model, spec, a.runs, gpu_name(), out)
    import platform

    import recom_tvm
    from recom_tvm.models import tf_export

    paths = tf_export.export(spec)
    mod, params, _ = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"])
    if a.mode == "prepare":
        recom_tvm.config.cuda_arch = a.arch
        os.makedirs(a.dir, exist_ok=True)
        recom_tvm.build(recom_tvm.optimize(mod), "cuda", params).export_library(os.path.join(a.dir, "demo.opt.so"))
        print(f"wrote {a.dir}/demo.opt.so ({a.arch})")
        return 0
    model = recom_tvm.build(recom_tvm.optimize(mod), "llvm", params)
    return report(model, spec, a.runs, f"host CPU ({platform.processor() or platform.machine()}, "
                                       f"{os.cpu_count()} cores, llvm)", a.json)


if __name__ == "__main__":
    sys.exit(main())
