"""Why N serving threads do not serve N times the requests: each step of the request path alone, from 1, 2, 4 and 8
threads (issue 15 item 6).

Steps, each thread on its own slot (VM, staging buffer, native context), requests of one batch:
  host     the native host stage alone (feeds -> packed staging buffer; GIL released inside)
  host_kjt the same from a keyed-jagged request
  h2d      the one host->device copy and the argument tensors, then a device sync (default stream)
  device   the module on arguments already on the device, then a device sync (default stream)
  device_stream  the same on the slot's own CUDA stream (models built with keep_storage), that stream synced
  d2h      the outputs copied back (outputs of one device call, reused)
  run      CompiledModel.run, the whole path as served: the device part inside the native call (config.native_serve,
           runtime/native/src/rh_device.c), a stream per VM where the model allows it
  run_shared  the same with config.slot_streams off: every request on the default stream
  run_py   run() with config.native_serve off: the device part from Python step by step, on the default stream
           (the default before 2026-12-06: about ten GIL round trips per request)
  run_kjt, run_kjt_shared, run_kjt_py  run() from the keyed-jagged request (whose host stage holds the GIL least)
After the timing, run, run_shared and run_py serve every thread's requests again from all threads at once and count
the answers that differ from the build host's (mismatches: a race between streams would show there). With
--gpu-busy, `run` from 1 and the most threads again under CUPTI: the share of time the GPU ran anything and its
time per request (whether the device binds). And, first, a GIL-free step (SHA-256 of 128 KB) from the same
thread counts: what the machine gives.
A step that scales is not the serializing one. Prints requests per second per step and thread count (the median of
--repeat measurements, taken in turn over the thread counts: the device machine is shared, and one short measurement
of one thread read half of the next one's in 2026-12-07's run) and the speedup over 1 thread; writes
$OUT/threads_scaling.json (or --out), every measurement included (<step>_runs).

    python benchmarks/threads_scaling.py --dir .device/backlog/request/rp --models e,mixed100 --batch 32
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

STEPS = ("run", "run_shared", "run_py", "run_kjt", "run_kjt_shared", "run_kjt_py", "host", "host_kjt", "h2d",
         "device", "device_stream", "d2h")


def _load(in_dir: str, name: str):
    from request_path_gpu import load_prepared

    try:
        model, _, requests, _ = load_prepared(in_dir, name)
    except ValueError as err:
        raise SystemExit(str(err)) from err
    return model, requests["threads"]


class _Worker:
    """One serving thread's state: its slot and, per step, what that step needs ready."""

    def __init__(self, model, pairs: list) -> None:
        from recom_tvm.runtime.keyed_jagged import KeyedJagged

        requests = [feeds for feeds, _ in pairs]
        self.model, self.requests, self.expected = model, requests, [exp for _, exp in pairs]
        self.native = model.native_host()
        self.slot = model._new_slot()  # its own VM and staging buffer, outside the model's pool
        self.ctx = self.slot.context(self.native)
        self.params = model._device_params()
        self.kjts = [KeyedJagged.from_feeds(model.spec, f) for f in requests]
        self.reset()

    def reset(self) -> None:
        """The staging buffer and device arguments of request 0 (the host steps overwrite the staging buffer, and
        device arguments of one request over another's packed data read out of bounds)."""
        res = self.native.request(self.ctx, self.requests[0], self.slot.reserve)
        self.res = res
        self.args = self.slot.arguments(res[0], self.native.program.module_args, res[1])
        self.outs, _ = self.slot.call(self.args, self.params, len(self.model.spec.outputs))
        self.model.device.sync()

    def step(self, name: str, i: int) -> None:
        m, s = self.model, self.slot
        if name == "host":
            self.native.request(self.ctx, self.requests[i % len(self.requests)], s.reserve)
        elif name == "host_kjt":
            self.native.request_kjt(self.ctx, self.kjts[i % len(self.kjts)], s.reserve)
        elif name == "h2d":
            s.arguments(self.res[0], self.native.program.module_args, self.res[1])
            m.device.sync()
        elif name == "device":
            s.call(self.args, self.params, len(m.spec.outputs))
            m.device.sync()
        elif name == "device_stream":
            stream = s.stream()
            if stream is None:  # a model without keep_storage: the default stream
                s.call(self.args, self.params, len(m.spec.outputs))
                m.device.sync()
                return None
            import tvm_ffi

            with tvm_ffi.use_raw_stream(m.device, stream.handle):
                _, keep = s.call(self.args, self.params, len(m.spec.outputs))
                stream.synchronize()
            del keep
        elif name == "d2h":
            [o.numpy() for o in self.outs]
        elif name in ("run", "run_shared", "run_py"):
            return m.run(self.requests[i % len(self.requests)])
        elif name in ("run_kjt", "run_kjt_shared", "run_kjt_py"):
            return m.run(self.kjts[i % len(self.kjts)])
        return None


def _mismatches(workers: list, step: str) -> int:
    """Every worker's requests served through `step` from all threads at once: answers unlike the build host's."""
    bad = [0] * len(workers)

    def serve(k: int) -> None:
        w = workers[k]
        for i, exp in enumerate(w.expected):
            got = w.step(step, i)
            bad[k] += not all(np.allclose(got[n], e, rtol=1e-4, atol=1e-5) for n, e in exp.items())

    ths = [threading.Thread(target=serve, args=(k,)) for k in range(len(workers))]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return sum(bad)


def _configure(step: str) -> None:
    """The request path a step measures: streams per VM unless *_shared / *_py, the one-call path unless *_py."""
    from recom_tvm import config

    config.slot_streams = not step.endswith(("_shared", "_py"))
    config.native_serve = not step.endswith("_py")


def _rate(workers: list, name: str, threads: int, per_thread: int) -> float:
    """Requests per second of `threads` threads doing `per_thread` steps each (after 3 warm-up steps each)."""
    from gpu_common import threaded_rate

    for w in workers[:threads]:
        w.reset()
        for i in range(3):
            w.step(name, i)
    return threaded_rate([lambda i, w=w: w.step(name, i) for w in workers[:threads]], per_thread)


def _busy(threads: int, per_thread: int) -> float:
    """A GIL-free step (SHA-256 of 128 KB: hashlib releases the GIL above 2 KB): what the machine gives N threads."""
    import hashlib

    from gpu_common import threaded_rate

    a = bytes(128 << 10)
    return threaded_rate([lambda i: hashlib.sha256(a).digest()] * threads, per_thread)


def _gpu_busy(workers: list, threads: int, per_thread: int) -> dict | None:
    """The `run` step from `threads` threads under CUPTI (torch.profiler): the share of the wall time in which the
    GPU ran anything (the union of every kernel's and copy's interval, all streams), and GPU time per request. A
    share near 1 means more threads cannot add requests per second: the device, not the host, binds. None where
    the profiler is unavailable (the build host's dry run)."""
    try:
        import torch
        from torch.profiler import ProfilerActivity, profile
    except ImportError:
        return None
    _configure("run")
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        rate = _rate(workers, "run", threads, per_thread)
        wall_us = (time.perf_counter() - t0) * 1e6
    spans = sorted((e.time_range.start, e.time_range.end, e.name) for e in prof.events()
                   if str(e.device_type).endswith("CUDA"))
    if not spans:
        return None
    union, last = 0.0, -1.0  # (spans sorted by start: `last` is the latest end so far)
    for a, b, _ in spans:
        if b > last:
            union += b - max(a, last)
            last = b
    first = spans[0][0]
    copies = sum(b - a for a, b, n in spans if n.startswith(("Memcpy", "Memset")))
    kernels = sum(b - a for a, b, n in spans if not n.startswith(("Memcpy", "Memset")))
    requests = threads * (per_thread + 3)  # (_rate's warm-up steps are profiled too)
    return {"threads": threads, "requests_per_s_profiled": round(rate, 1),
            "busy_share": round(union / max(last - first, 1e-9), 3), "profiled_wall_us": round(wall_us, 1),
            "gpu_span_us": round(last - first, 1), "kernel_us_per_request": round(kernels / requests, 2),
            "copy_us_per_request": round(copies / requests, 2),
            "activities_per_request": round(len(spans) / requests, 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True, help="a request_path_gpu.py prepare folder (rp)")
    p.add_argument("--models", default="e,mixed100")
    p.add_argument("--threads", default="1,2,4,8")
    p.add_argument("--per-thread", type=int, default=200)
    p.add_argument("--repeat", type=int, default=3,
                   help="measurements of each step and thread count, taken in turn; the median is reported")
    p.add_argument("--steps", default=",".join(STEPS), help="a subset of the steps, comma-separated")
    p.add_argument("--out", default=os.environ.get("OUT"))
    p.add_argument("--tag", default="", help="appended to the JSON's name (threads_scaling<tag>.json)")
    p.add_argument("--gpu-busy", action="store_true",
                   help="also profile `run` from 1 and the most threads: the GPU's busy share and time per request")
    a = p.parse_args()
    from device_info import gpu_name, machine

    from recom_tvm import config

    counts = [int(t) for t in a.threads.split(",")]
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": gpu_name(), "host": machine(),
           "cpu_cores": os.cpu_count(),
           "native_threads": config.native_threads, "feeds_outside_gil": config.native_feeds_outside_gil,
           "models": {}}
    res["gil_free_step"] = {t: round(float(np.median([_busy(t, a.per_thread) for _ in range(a.repeat)])), 1)
                            for t in counts}
    print(f"{res['device']}, {os.cpu_count()} CPU cores; a GIL-free step (SHA-256): "
          + ", ".join(f"{t} threads {r / res['gil_free_step'][counts[0]]:.2f}x" for t, r in res["gil_free_step"].items()))
    for name in a.models.split(","):
        model, requests = _load(a.dir, name)
        workers = [_Worker(model, requests) for _ in range(max(counts))]
        rows = {}
        print(f"\n{name}: requests per second (speedup over 1 thread)")
        print(f"{'step':>13} | " + " | ".join(f"{t:>2} threads      " for t in counts))
        for step in [x for x in a.steps.split(",") if x in STEPS]:
            _configure(step)
            # --repeat rounds over the thread counts in turn (a drift of the machine reaches every count alike);
            # the median of each
            runs: dict[int, list[float]] = {t: [] for t in counts}
            for _ in range(a.repeat):
                for t in counts:
                    runs[t].append(_rate(workers, step, t, a.per_thread))
            rates = {t: float(np.median(r)) for t, r in runs.items()}
            rows[step] = {t: round(r, 1) for t, r in rates.items()}
            rows[f"{step}_runs"] = {t: [round(x, 1) for x in r] for t, r in runs.items()}
            print(f"{step:>13} | " + " | ".join(f"{r:8.0f} ({r / rates[counts[0]]:4.2f}x)" for r in rates.values()),
                  flush=True)
        for step in ("run", "run_shared", "run_py"):
            _configure(step)
            rows[f"{step}_mismatches"] = _mismatches(workers, step)
            print(f"{step} answers, {len(workers)} threads at once: {rows[f'{step}_mismatches']} mismatches of "
                  f"{sum(len(w.expected) for w in workers)}")
        if a.gpu_busy:
            try:
                rows["gpu_busy"] = [b for b in (_gpu_busy(workers, t, a.per_thread) for t in (counts[0], counts[-1]))
                                    if b is not None]
            except Exception as err:  # noqa: BLE001 - a profiler problem must not lose the run's other figures
                print(f"--gpu-busy failed: {type(err).__name__}: {err}")
                rows["gpu_busy"] = []
            for b in rows["gpu_busy"]:
                print(f"run under CUPTI, {b['threads']} threads: {b['requests_per_s_profiled']:.0f} req/s, GPU busy "
                      f"{100 * b['busy_share']:.0f}% of its span, per request {b['kernel_us_per_request']:.1f} us of "
                      f"kernels + {b['copy_us_per_request']:.1f} us of copies ({b['activities_per_request']:.1f} "
                      f"activities)", flush=True)
        _configure("run")
        rows["streams"] = workers[0].slot.stream() is not None
        rows["cuda_graphs"] = model._capture_gate() is not None
        rows["one_call"] = model.one_call  # (run() in one native call; False: step by step, serve_error says why)
        print(f"{name}: CUDA graphs {rows['cuda_graphs']}, run() in one native call {rows['one_call']}"
              + (f" ({model.serve_error})" if rows["one_call"] is False else ""), flush=True)
        res["models"][name] = rows
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, f"threads_scaling{a.tag}.json"), "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
