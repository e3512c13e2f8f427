"""Helpers shared by the GPU benchmarks: the command line and results files, weights generated on the device, timing,
CUDA graphs, kernel lists, bandwidths, the embedding stage's byte count. The GPU machine has numpy, the TVM runtime
and PyTorch only: this module imports the standard library and numpy (`torch` is passed in)."""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import zlib

import numpy as np


def threaded_rate(calls: list, per_thread: int) -> float:
    """Calls per second of len(calls) threads started together (a barrier), thread k calling calls[k](i) for i in
    range(per_thread); timed from the barrier to the last join."""
    barrier = threading.Barrier(len(calls) + 1)

    def loop(call):
        barrier.wait()
        for i in range(per_thread):
            call(i)

    ths = [threading.Thread(target=loop, args=(c,)) for c in calls]
    for th in ths:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in ths:
        th.join()
    return len(calls) * per_thread / (time.perf_counter() - t0)


def cli(doc: str, default_dir: str) -> argparse.ArgumentParser:
    """The GPU scripts' shared arguments: `prepare` (build host) or `run` (GPU machine), --dir, --out, --arch."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["prepare", "run"])
    p.add_argument("--dir", default=default_dir)
    p.add_argument("--out", default=os.environ.get("OUT"))
    p.add_argument("--arch", default="sm_90")
    return p


def write_json(out_dir: str, name: str, data) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, name), "w") as f:
        json.dump(data, f, indent=1)


def report_cases(rows: list[dict], device_name: str, what: str, out_dir: str | None, name: str) -> int:
    """The end of a correctness run over cases ({..., "ok"}): a summary line, {device, date, rows} as JSON in
    out_dir (if any) -> the exit status (1 if a case failed)."""
    failures = sum(not r["ok"] for r in rows)
    print(f"\ndevice: {device_name}; {len(rows) - failures}/{len(rows)} {what} match TensorFlow")
    if out_dir:
        write_json(out_dir, name, {"device": device_name, "date": time.strftime("%Y-%m-%d"), "rows": rows})
    return 1 if failures else 0


def seed_of(spec_seed: int, name: str) -> int:
    return (spec_seed * 1_000_003 + zlib.crc32(name.encode())) % (1 << 62)


def generate(torch, dev, spec_seed: int, name: str, shape, scale: float):
    g = torch.Generator(device=dev).manual_seed(seed_of(spec_seed, name))
    return torch.randn(*shape, generator=g, device=dev) * scale


class DeviceTable:
    """A table on the GPU as numpy-like for reference.combine: rows gathered on the device, copied back."""

    def __init__(self, torch, t) -> None:
        self.torch, self.t, self.shape = torch, t, tuple(t.shape)

    def __getitem__(self, ids):
        idx = self.torch.from_numpy(np.asarray(ids, np.int64)).to(self.t.device)
        return self.t[idx].cpu().numpy()


def timeit(fn, inputs: list, iters: int, sync) -> float:
    fn(inputs[0])
    sync()
    ts = []
    for i in range(iters):
        x = inputs[i % len(inputs)]
        t0 = time.perf_counter()
        fn(x)
        sync()
        ts.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(ts))


def capture(torch, fn, n: int) -> list | None:
    """CUDA graphs of fn(0..n-1) (static inputs), or None if capture fails."""
    try:
        graphs = []
        for i in range(n):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                fn(i)
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                fn(i)
            graphs.append(g)
        return graphs
    except Exception as err:  # noqa: BLE001
        print(f"  (CUDA graph capture failed: {err})")
        return None


def kernels(torch, fn) -> list[tuple[str, float]] | None:
    """(name, device µs) of the GPU kernels one call launches (CUPTI through torch.profiler; TVM's kernels
    included), or None if the profiler is unavailable."""
    try:
        from torch.profiler import ProfilerActivity, profile

        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA], acc_events=True) as prof:
            fn()
            torch.cuda.synchronize()
        out = []
        for e in prof.events():
            if str(e.device_type).endswith("CUDA") and not e.name.startswith(("Memcpy", "Memset", "cudaMemcpy")):
                us = getattr(e, "device_time", None) or getattr(e, "cuda_time", 0.0)
                out.append((e.name, float(us)))
        return out
    except Exception as err:  # noqa: BLE001
        print(f"  (kernel list unavailable: {err})")
        return None


def bandwidths(torch, dev, sync) -> dict:
    """Device copy bandwidth (read + write) and pageable host->device bandwidth, measured now."""
    n = 1 << 28 if dev.type == "cuda" else 1 << 24  # 1 GiB of float32 on the GPU

    def rate(fn, nbytes: int) -> float:
        fn()
        sync()
        t0 = time.perf_counter()
        for _ in range(10):
            fn()
        sync()
        return nbytes * 10 / (time.perf_counter() - t0) / 1e9

    a = torch.empty(n, device=dev)
    b = torch.empty_like(a)
    host = np.ones(1 << 24, np.float32)  # 64 MiB, pageable (what the runtime copies from)
    x = torch.from_numpy(host).to(dev)
    out = {"d2d_copy_GBps": rate(lambda: b.copy_(a), 8 * n),
           "h2d_pageable_GBps": rate(lambda: x.copy_(torch.from_numpy(host)), host.nbytes)}
    del a, b, x
    return out


def embedding_bytes(spec, feeds, packed_bytes: int) -> int:
    from recom_tvm.models import reference

    total, width = packed_bytes, 0
    for c in spec.columns:
        width += c.dim
        if c.kind != "numeric":
            ids, _, _ = reference.column_ids(c, feeds[c.name])
            total += ids.size * c.dim * 4
    batch = len(feeds["dense"])
    return total + batch * width * 4
