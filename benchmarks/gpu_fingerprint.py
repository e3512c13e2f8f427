"""String hashing on the GPU (recom_tvm.ops.fingerprint_tir): correctness against TF and the host hash, throughput.

    # host (TF + compiler + nvcc): CUDA kernels, a pool of 65,536 strings of every length class, TF's hashes,
    # and the runtime bundle (~10 MiB in all)
    python benchmarks/gpu_fingerprint.py prepare --dir .device/gpu_fingerprint && \
        ../shared/device/stage_runtime.sh .device/gpu_fingerprint
    # GPU machine (runtime only + numpy), carrying .device/gpu_fingerprint:
    source .device/gpu_fingerprint/activate.sh && \
        python3 benchmarks/gpu_fingerprint.py run --dir .device/gpu_fingerprint --out $OUT

On the GPU machine, 1,000,000 strings are drawn from the pool (a fixed LCG, so no RNG version matters) and laid
out end to end at unaligned offsets; the kernel's Fingerprint64 and hash buckets are compared with TF's (computed on
the build host for the pool) and with the host hash recom_tvm.runtime.fingerprint run there on all 1e6 strings.
Workloads: "mixed" (every length class: 0-16, 17-32, 33-64, 65-300 bytes, a quarter each) and "short" (1-16
bytes, typical categorical values). Timed: the kernel alone (median of 20, device synchronised), the host->device
copy of bytes + offsets, and the host hash (numpy, vectorised by length) on the same strings.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

POOL = 65_536
N = 1_000_000
BUCKETS = 10_000_019  # a prime bucket count; the raw fingerprint is checked too
THREADS = 128


def _pool(seed: int = 0) -> list[bytes]:
    """Random unicode (UTF-8) and random bytes; a quarter of each length class, plus every boundary length."""
    from tests.test_fingerprint_tir import BOUNDARIES, _unicode

    rng = random.Random(seed)
    npr = np.random.default_rng(seed)
    ranges = [(0, 16), (17, 32), (33, 64), (65, 300)]
    out = [bytes(npr.integers(0, 256, size=n, dtype=np.uint8))
           for n in BOUNDARIES for _ in range(16)]
    while len(out) < POOL:
        lo, hi = ranges[len(out) % 4]
        target = rng.randint(lo, hi)
        if len(out) % 2:
            out.append(bytes(npr.integers(0, 256, size=target, dtype=np.uint8)))
        else:
            s = _unicode(rng, target).encode()
            while len(s) > hi:  # multi-byte characters may overshoot the class: trim whole characters
                s = s.decode()[:-1].encode()
            out.append(s)
    return out


def prepare(out_dir: str, arch: str, llvm: bool = False) -> None:
    import tensorflow as tf

    import recom_tvm
    from recom_tvm.cuda_support import fatbin_images
    from recom_tvm.ops.fingerprint_tir import build_fingerprint

    recom_tvm.config.cuda_arch = arch
    os.makedirs(out_dir, exist_ok=True)
    for name, kw in {"fp_raw": {}, "fp_bucket": {"buckets_param": True},
                     "fp_bucket_const": {"num_buckets": BUCKETS}}.items():
        lib = os.path.join(out_dir, f"{name}.so")
        build_fingerprint("cuda", threads=THREADS, **kw).export_library(lib)
        assert fatbin_images(lib) == [("elf", int(arch[3:]))], fatbin_images(lib)
        if llvm:  # a CPU copy, to dry-run `run --cpu` on the build host
            build_fingerprint("llvm", **kw).export_library(os.path.join(out_dir, f"{name}.llvm.so"))
    pool = _pool()
    data = np.frombuffer(b"".join(pool), np.uint8)
    offsets = np.zeros(len(pool) + 1, np.int64)
    np.cumsum([len(s) for s in pool], out=offsets[1:])
    fp_tf = tf.fingerprint(tf.constant(pool)).numpy().view("<u8")[:, 0]
    bucket_tf = tf.strings.to_hash_bucket_fast(pool, BUCKETS).numpy()
    np.savez(os.path.join(out_dir, "pool.npz"), data=data, offsets=offsets, fp_tf=fp_tf, bucket_tf=bucket_tf)
    lengths = np.diff(offsets)
    classes = [(lengths == 0).sum(), ((lengths >= 1) & (lengths <= 16)).sum(), ((lengths > 16) & (lengths <= 32)).sum(),
               ((lengths > 32) & (lengths <= 64)).sum(), (lengths > 64).sum()]
    print(f"pool: {len(pool)} strings, {data.size} bytes, lengths {lengths.min()}..{lengths.max()}, "
          f"classes 0 / 1-16 / 17-32 / 33-64 / >64: {[int(c) for c in classes]}")


def _draw(n: int, candidates: np.ndarray, seed: int) -> np.ndarray:
    """n indices into `candidates` from a 64-bit LCG (bit-identical on any numpy)."""
    with np.errstate(over="ignore"):
        x = (np.arange(n, dtype=np.uint64) + np.uint64(seed)) * np.uint64(6364136223846793005) + \
            np.uint64(1442695040888963407)
        x ^= x >> np.uint64(29)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(32)
    return candidates[(x % np.uint64(candidates.size)).astype(np.int64)]


def _layout(pool_data, pool_off, idx):
    lengths = (pool_off[idx + 1] - pool_off[idx]).astype(np.int64)
    offsets = np.zeros(idx.size + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    starts = np.repeat(pool_off[idx] - offsets[:-1], lengths)
    data = pool_data[starts + np.arange(offsets[-1], dtype=np.int64)]
    return data, offsets, lengths


def run(in_dir: str, out_dir: str | None, cpu: bool = False) -> int:
    import tvm

    from device_info import gpu_name
    from recom_tvm.runtime.compiled_model import _load_cuda_runtime
    from recom_tvm.runtime.fingerprint import fingerprint64_buffer

    if not cpu:
        _load_cuda_runtime()
    dev = tvm.cpu() if cpu else tvm.cuda(0)
    suffix = ".llvm.so" if cpu else ".so"
    mods = {k: tvm.runtime.load_module(os.path.join(in_dir, k + suffix))["main"]
            for k in ("fp_raw", "fp_bucket", "fp_bucket_const")}
    pool = np.load(os.path.join(in_dir, "pool.npz"))
    pdata, poff = pool["data"], pool["offsets"]
    plen = np.diff(poff)
    workloads = {"mixed": np.arange(plen.size), "short": np.nonzero((plen >= 1) & (plen <= 16))[0]}
    rows, mismatches = [], 0
    for wname, cand in workloads.items():
        idx = _draw(N, cand, seed=len(wname))
        data, offsets, lengths = _layout(pdata, poff, idx)
        nbytes = data.nbytes + offsets.nbytes
        t0 = time.perf_counter()
        d_data, d_off = tvm.runtime.tensor(data, dev), tvm.runtime.tensor(offsets, dev)
        dev.sync()
        copy_ms = 1e3 * (time.perf_counter() - t0)
        outs = {k: tvm.runtime.tensor(np.zeros(N, np.uint64 if k == "fp_raw" else np.int64), dev) for k in mods}
        calls = {"fp_raw": lambda: mods["fp_raw"](d_data, d_off, outs["fp_raw"]),
                 "fp_bucket": lambda: mods["fp_bucket"](d_data, d_off, outs["fp_bucket"], BUCKETS),
                 "fp_bucket_const": lambda: mods["fp_bucket_const"](d_data, d_off, outs["fp_bucket_const"])}
        t0 = time.perf_counter()
        host_fp = fingerprint64_buffer(data, offsets[:-1], lengths)
        host_ms = 1e3 * (time.perf_counter() - t0)
        t0 = time.perf_counter()
        host_bucket = (host_fp % np.uint64(BUCKETS)).astype(np.int64)
        host_ms_bucket = host_ms + 1e3 * (time.perf_counter() - t0)
        exp_fp, exp_bucket = pool["fp_tf"][idx], pool["bucket_tf"][idx]
        for k, call in calls.items():
            call()
            dev.sync()
            ts = []
            for _ in range(20):
                t0 = time.perf_counter()
                call()
                dev.sync()
                ts.append(time.perf_counter() - t0)
            ms = 1e3 * float(np.median(ts))
            got = outs[k].numpy()
            exp = exp_fp if k == "fp_raw" else exp_bucket
            host = host_fp if k == "fp_raw" else host_bucket
            bad_tf, bad_host = int((got != exp).sum()), int((got != host).sum())
            mismatches += bad_tf + bad_host
            hms = host_ms if k == "fp_raw" else host_ms_bucket
            rows.append({"workload": wname, "kernel": k, "strings": N, "bytes": int(data.nbytes),
                         "mean_len": float(lengths.mean()), "gpu_ms": ms, "strings_per_s": N / ms * 1e3,
                         "GB_per_s": nbytes / ms / 1e6, "h2d_copy_ms": copy_ms, "host_hash_ms": hms,
                         "speedup_vs_host": hms / ms, "mismatch_vs_tf": bad_tf, "mismatch_vs_host_hash": bad_host})
    name = "build host CPU (llvm dry run)" if cpu else gpu_name()
    print(f"\ndevice: {name}; {N} strings per workload, {THREADS} threads per block")
    print(f"{'workload':8s} {'kernel':16s} {'mean B':>6s} {'GPU ms':>8s} {'Mstr/s':>8s} {'GB/s':>6s} "
          f"{'H2D ms':>7s} {'host ms':>8s} {'x host':>7s} {'bad TF':>6s} {'bad host':>8s}")
    for r in rows:
        print(f"{r['workload']:8s} {r['kernel']:16s} {r['mean_len']:6.1f} {r['gpu_ms']:8.3f} "
              f"{r['strings_per_s'] / 1e6:8.1f} {r['GB_per_s']:6.1f} {r['h2d_copy_ms']:7.2f} "
              f"{r['host_hash_ms']:8.1f} {r['speedup_vs_host']:7.0f} {r['mismatch_vs_tf']:6d} "
              f"{r['mismatch_vs_host_hash']:8d}")
    print(f"mismatches in all: {mismatches}")
    if out_dir:
        with open(os.path.join(out_dir, "gpu_fingerprint.json"), "w") as f:
            json.dump({"device": name, "date": time.strftime("%Y-%m-%d", time.gmtime()), "threads": THREADS,
                       "buckets": BUCKETS, "rows": rows, "mismatches": mismatches}, f, indent=1)
    return 1 if mismatches else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["prepare", "run"])
    ap.add_argument("--dir", default=".device/gpu_fingerprint")
    ap.add_argument("--out", default=None)
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--llvm", action="store_true", help="prepare: also build CPU copies of the kernels")
    ap.add_argument("--cpu", action="store_true", help="run: the CPU copies on this host (a dry run)")
    args = ap.parse_args()
    if args.step == "prepare":
        prepare(args.dir, args.arch, args.llvm)
        return 0
    return run(args.dir, args.out, args.cpu)


if __name__ == "__main__":
    sys.exit(main())
