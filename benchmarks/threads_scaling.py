"""Why N serving threads do not serve N times the requests: each step of the request path alone, from 1, 2, 4 and 8
threads (issue 15 item 6).

Steps, each thread on its own slot (VM, staging buffer, native context), requests of one batch:
  host     the native host stage alone (feeds -> packed staging buffer; GIL released inside)
  host_kjt the same from a keyed-jagged request
  h2d      the one host->device copy and the argument tensors, then a device sync
  device   the module on arguments already on the device, then a device sync
  d2h      the outputs copied back (outputs of one device call, reused)
  run      CompiledModel.run, the whole path
  device_stream, run_stream   device / run with each thread on a CUDA stream of its own (tvm_ffi.use_raw_stream;
           run_stream's answers are checked after the timing)
  run_si   run with Python's GIL switch interval at 0.1 ms instead of 5 ms (a GIL convoy would show here)
  run_locked  run with its device section (H2D, the module, D2H) under one process-wide lock: the null stream
           serializes that section anyway; the lock takes the threads' contention for the driver out of it
and, first, a GIL-free step (SHA-256 of 128 KB) from the same thread counts: what the machine gives.
A step that scales is not the serializing one. Prints requests per second per step and thread count and the speedup
over 1 thread; writes $OUT/threads_scaling.json (or --out).

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

STEPS = ("host", "host_kjt", "h2d", "device", "d2h", "run", "device_stream", "run_stream", "run_si", "run_locked")


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
        self.stream = model.device.create_raw_stream() if model.device.dlpack_device_type() == 2 else None
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
        out = self.slot.main(*self.args, *self.params)
        self.outs = [out] if len(self.model.spec.outputs) == 1 else list(out)
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
            s.main(*self.args, *self.params)
            m.device.sync()
        elif name == "d2h":
            [o.numpy() for o in self.outs]
        elif name in ("run", "run_si"):
            m.run(self.requests[i % len(self.requests)])
        elif name == "run_locked":  # main() puts the lock around the model's device section for this step
            m.run(self.requests[i % len(self.requests)])
        elif name == "device_stream":
            with self._own_stream():
                s.main(*self.args, *self.params)
                m.device.sync(self.stream)
        elif name == "run_stream":
            with self._own_stream():
                return m.run(self.requests[i % len(self.requests)])

    def _own_stream(self):
        import contextlib

        import tvm_ffi

        if self.stream is None:
            return contextlib.nullcontext()
        return tvm_ffi.use_raw_stream(self.model.device, self.stream)

    def check_stream_answers(self) -> int:
        """Mismatches of run_stream's answers against the build host's outputs."""
        bad = 0
        for i, exp in enumerate(self.expected):
            got = self.step("run_stream", i)
            bad += not all(np.allclose(got[k], e, rtol=1e-4, atol=1e-5) for k, e in exp.items())
        return bad


_DEVICE_LOCK = threading.Lock()


def _locked(section):
    import contextlib

    def locked(gate, slot, key):
        stack = contextlib.ExitStack()
        stack.enter_context(_DEVICE_LOCK)
        stack.enter_context(section(gate, slot, key))
        return stack

    return locked


def _rate(workers: list, name: str, threads: int, per_thread: int) -> float:
    """Requests per second of `threads` threads doing `per_thread` steps each (after 3 warm-up steps each)."""
    for w in workers[:threads]:
        w.reset()
        for i in range(3):
            w.step(name, i)
    barrier = threading.Barrier(threads + 1)

    def loop(w):
        barrier.wait()
        for i in range(per_thread):
            w.step(name, i)

    ths = [threading.Thread(target=loop, args=(w,)) for w in workers[:threads]]
    for th in ths:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in ths:
        th.join()
    return threads * per_thread / (time.perf_counter() - t0)


def _busy(threads: int, per_thread: int) -> float:
    """A GIL-free step (SHA-256 of 128 KB: hashlib releases the GIL above 2 KB): what the machine gives N threads."""
    import hashlib

    a = bytes(128 << 10)

    def loop():
        for _ in range(per_thread):
            hashlib.sha256(a).digest()

    ths = [threading.Thread(target=loop) for _ in range(threads)]
    t0 = time.perf_counter()
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return threads * per_thread / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True, help="a request_path_gpu.py prepare folder (rp)")
    p.add_argument("--models", default="e,mixed100")
    p.add_argument("--threads", default="1,2,4,8")
    p.add_argument("--per-thread", type=int, default=200)
    p.add_argument("--out", default=os.environ.get("OUT"))
    a = p.parse_args()
    from device_info import gpu_name

    from recom_tvm import config

    counts = [int(t) for t in a.threads.split(",")]
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": gpu_name(), "cpu_cores": os.cpu_count(),
           "native_threads": config.native_threads, "models": {}}
    res["gil_free_step"] = {t: round(_busy(t, a.per_thread), 1) for t in counts}
    print(f"{res['device']}, {os.cpu_count()} CPU cores; a GIL-free step (SHA-256): "
          + ", ".join(f"{t} threads {r / res['gil_free_step'][counts[0]]:.2f}x" for t, r in res["gil_free_step"].items()))
    for name in a.models.split(","):
        model, requests = _load(a.dir, name)
        workers = [_Worker(model, requests) for _ in range(max(counts))]
        rows = {}
        print(f"\n{name}: requests per second (speedup over 1 thread)")
        print(f"{'step':>9} | " + " | ".join(f"{t:>2} threads      " for t in counts))
        for step in STEPS:
            old = sys.getswitchinterval()
            if step == "run_si":
                sys.setswitchinterval(1e-4)
            if step == "run_locked":
                model._device_section = _locked(type(model)._device_section)
            try:
                rates = {t: _rate(workers, step, t, a.per_thread) for t in counts}
            finally:
                sys.setswitchinterval(old)
                model.__dict__.pop("_device_section", None)
            rows[step] = {t: round(r, 1) for t, r in rates.items()}
            print(f"{step:>9} | " + " | ".join(f"{r:8.0f} ({r / rates[counts[0]]:4.2f}x)" for r in rates.values()),
                  flush=True)
        rows["run_stream_mismatches"] = sum(w.check_stream_answers() for w in workers)
        print(f"run_stream answers: {rows['run_stream_mismatches']} mismatches of {len(workers) * len(requests)}")
        res["models"][name] = rows
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "threads_scaling.json"), "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
