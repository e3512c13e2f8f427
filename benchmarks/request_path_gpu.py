"""The request path from TF-style feeds on the GPU, step by step: host stage, host->device copy, kernels,
device->host copy; 1 vs 8 threads (and 8 with a one-thread host stage each); every answer checked against outputs
computed on the build host.

    # build host (TVM compiler + TF): export the models (cached), build them for CUDA (weights left out: they are
    # generated from a seed on both sides), compute the reference outputs with the llvm build of the same module
    python benchmarks/request_path_gpu.py prepare --dir .device/request_path [--models e,mixed100] [--arch sm_90]
    # GPU machine (TVM runtime + numpy; no TF, no compiler), ~3 minutes:
    python benchmarks/request_path_gpu.py run --dir .device/request_path --out $OUT
    # the device command's logic on the build host: the same folder built for llvm
    python benchmarks/request_path_gpu.py prepare --dir /tmp/rp --target llvm --batches 1,32 && \
        python benchmarks/request_path_gpu.py run --dir /tmp/rp

Models: RECom's E (1,000 columns; its five large tables at 4,096 rows so that the host can compute the reference:
the kernels' gathers are cheaper than at 2^23 rows, which gpu_models.py measures; the host stage and the copies are
the same) and mixed-100 (the build host's benchmark model). Parameters: float tables and weights drawn from a seed
with numpy (the same bits on both machines: PCG64 and `random(dtype=float32)`; a digest per parameter checks it),
anything else carried as is.

What the run measures per batch (B = 1, 32, 256, 2,048; median over fresh inputs drawn on the device):
  run()        what a user calls: native host stage into the pinned staging buffer, one copy, the VM, outputs back
  host stage   the native host stage alone (feeds -> staging buffer; NativeHost.request, GIL released)
  H2D          the one host->device copy of the staging buffer (synchronised to time it)
  kernels      the module on device-resident arguments (synchronised)
  D2H          the outputs' copy back
  steps sum    the four above, each synchronised (run() overlaps the copy with nothing else, so it is ~ the sum)
  run kjt      run() on the same requests in TorchRec's keyed-jagged layout (KeyedJagged.from_feeds, built outside the
               timing), and its native host stage alone (host kjt): buffers read in place, no Python per feature
Correctness: each batch's carried request (as feeds and as a keyed-jagged request) and 16 carried requests of B = 32
served by 1 and by 8 threads (each thread its own VM and staging buffer; feeds, then keyed-jagged), every answer
compared with the host's (allclose, rtol 1e-4).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import platform
import sys
import threading
import time
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gpu_common import cli, write_json  # noqa: E402
from recom_tvm.runtime.keyed_jagged import KeyedJagged  # noqa: E402  (numpy only: runtime-only safe)

BATCHES = (1, 32, 256, 2048)
THREAD_BATCH, THREAD_REQUESTS = 32, 16
MODELS = {"e": ("model_e", 4096), "mixed100": ("mixed", 100)}
RTOL, ATOL = 1e-4, 1e-5


def _spec(name: str):
    from recom_tvm.models import zoo

    fn, arg = MODELS[name]
    return getattr(zoo, fn)(arg)


def _seed(name: str) -> int:
    return zlib.crc32(name.encode())


def generated_params(shapes: dict, carried: dict) -> dict:
    """Float parameters drawn from (name) with numpy, bit-identical on any machine; the others as carried.
    Tables in [-1, 1), matrices scaled by 1/sqrt(fan-in), vectors by 0.1."""
    out = {}
    for name, shape in shapes.items():
        if name in carried:
            out[name] = carried[name]
            continue
        x = np.random.Generator(np.random.PCG64(_seed(name))).random(int(np.prod(shape)), dtype=np.float32)
        x = (x * 2 - 1).reshape(shape)
        if len(shape) == 2 and shape[1] > 1 and not name.startswith("recom_tvm"):
            x *= np.float32(1 / np.sqrt(shape[0]))
        elif len(shape) == 1 and not name.startswith("recom_tvm"):
            x *= np.float32(0.1)
        out[name] = x
    return out


def _digest(arr: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ host
def prepare(out_dir: str, models: list[str], target: str, arch: str, batches: tuple[int, ...]) -> None:
    import recom_tvm
    from recom_tvm import config
    from recom_tvm.models import tf_export

    config.cuda_arch = arch
    os.makedirs(out_dir, exist_ok=True)
    for m in models:
        spec = _spec(m)
        t0 = time.perf_counter()
        paths = tf_export.export(spec)
        mod, params, _ = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"])
        opt = recom_tvm.optimize(mod)
        t_opt = time.perf_counter() - t0
        ref_model = recom_tvm.build(opt, "llvm", params)
        model = ref_model if target == "llvm" else recom_tvm.build(opt, target, params)
        shapes = ref_model.param_shapes()
        assert model.param_shapes() == shapes, "llvm and the target disagree on the parameters"
        dtypes = {n: str(ref_model._host_param(n).dtype) for n in shapes}
        carried = {n: np.asarray(ref_model._host_param(n)) for n in shapes if dtypes[n] != "float32"}
        gen = generated_params(shapes, carried)
        ref_model.set_params(gen)
        lib = f"{m}.so"
        model.export_library(os.path.join(out_dir, lib), include_params=False)
        requests = {"batch": {}, "threads": []}
        for b in batches:
            feeds = spec.sample(b, rng=77 + b)
            requests["batch"][b] = (feeds, ref_model.run(feeds))
        for k in range(THREAD_REQUESTS):
            feeds = spec.sample(THREAD_BATCH, rng=5000 + k)
            requests["threads"].append((feeds, ref_model.run(feeds)))
        with open(os.path.join(out_dir, f"{m}.requests.pkl"), "wb") as f:
            pickle.dump(requests, f, protocol=4)
        if carried:
            np.savez(os.path.join(out_dir, f"{m}.carried.npz"), **carried)
        meta = {"model": m, "spec": spec.name, "lib": lib, "target": target, "arch": arch,
                "batches": list(batches), "host": platform.node() or "build host",
                "param_digests": {n: _digest(v) for n, v in gen.items()},
                "reference": "the llvm build of the same optimized module, same parameters, on the build host",
                "import_optimize_s": round(t_opt, 1)}
        with open(os.path.join(out_dir, f"{m}.meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        print(f"{m}: {len(shapes)} parameters ({len(carried)} carried), lib {lib}, requests at B = "
              f"{list(batches)} + {THREAD_REQUESTS} x B = {THREAD_BATCH}; import+optimize {t_opt:.0f}s", flush=True)
    total = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    print(f"{out_dir}: {total / 2**20:.1f} MiB")


# ---------------------------------------------------------------------------------------------- device
def _sync(dev) -> None:
    dev.sync()


def _median(ts: list[float]) -> float:
    return float(np.median(ts)) * 1e3


def _times(fn, items: list, iters: int) -> list[float]:
    """Seconds per call of fn over items in turn, after 2 warm-up calls."""
    out = []
    for i in range(iters + 2):
        t0 = time.perf_counter()
        fn(items[i % len(items)])
        if i >= 2:
            out.append(time.perf_counter() - t0)
    return out


def step_times(model, sets: list, iters: int) -> dict:
    """Each step of run()'s request path, synchronised after each (ms, median), and run() itself."""
    native = model.native_host()
    assert native is not None, f"the native host stage is off: {model.native_error}"
    dev = model.device
    params = model._device_params()
    slot = model._pool.acquire(model._new_slot)
    names = [o["name"] for o in model.spec.outputs]
    ts = {k: [] for k in ("host", "h2d", "kernels", "d2h", "run")}
    import tvm_ffi

    stream = slot.stream()  # the slot's own CUDA stream where run() uses one (models built with keep_storage)
    sync = stream.synchronize if stream is not None else (lambda: _sync(dev))
    try:
        ctx = slot.context(native)
        for i in range(iters + 2):
            feeds = sets[i % len(sets)]
            with tvm_ffi.use_raw_stream(dev, stream.handle) if stream is not None else contextlib.nullcontext():
                t0 = time.perf_counter()
                res = native.request(ctx, feeds, slot.reserve)
                assert res is not None, f"native host stage refused the request: {native.last_refusal}"
                t1 = time.perf_counter()
                args = slot.arguments(res[0], native.program.module_args, res[1], stream)
                sync()
                t2 = time.perf_counter()
                outs, keep = slot.call(args, params, len(names))
                sync()
                t3 = time.perf_counter()
                slot.fetch(outs, stream)
                t4 = time.perf_counter()
                del keep
            if i >= 2:  # warm-up: staging buffers grown, pools filled
                for k, a, b in (("host", t0, t1), ("h2d", t1, t2), ("kernels", t2, t3), ("d2h", t3, t4)):
                    ts[k].append(b - a)
    finally:
        model._pool.release(slot)
    ts["run"] = _times(model.run, sets, iters)
    # the same requests in TorchRec's keyed-jagged layout (built by the client, outside the timing): run() and the
    # native host stage alone, which reads the buffers in place (no Python per feature)
    kjts = [KeyedJagged.from_feeds(model.spec, f) for f in sets]
    slot = model._pool.acquire(model._new_slot)
    try:
        ctx = slot.context(native)

        def host_kjt(kjt):
            got = native.request_kjt(ctx, kjt, slot.reserve)
            assert got is not None, f"native host stage refused the keyed-jagged request: {native.last_refusal}"

        ts["host_kjt"] = _times(host_kjt, kjts, iters)

        def host_feeds(feeds):
            assert native.request(ctx, feeds, slot.reserve) is not None, native.last_refusal

        from recom_tvm import config  # the host stage as before string elements left the GIL, same run

        old = config.native_strings_outside_gil
        config.native_strings_outside_gil = False
        try:
            ts["host_gil_strings"] = _times(host_feeds, sets, iters)
        finally:
            config.native_strings_outside_gil = old
    finally:
        model._pool.release(slot)
    ts["run_kjt"] = _times(model.run, kjts, iters)
    out = {k: round(_median(v), 4) for k, v in ts.items()}
    out["steps_sum"] = round(sum(out[k] for k in ("host", "h2d", "kernels", "d2h")), 4)
    out["staging_bytes"] = int(res[1])
    return out


def _close(got: dict, exp: dict) -> tuple[bool, float]:
    err, ok = 0.0, True
    for k, e in exp.items():
        g = got[k]
        ok &= g.shape == e.shape and bool(np.allclose(g, e, rtol=RTOL, atol=ATOL))
        if g.shape == e.shape and e.size:
            err = max(err, float(np.abs(g.astype(np.float64) - e).max()))
    return ok, err


def threads_check(model, requests: list, threads: int, per_thread: int) -> dict:
    """`threads` threads serve the carried requests (each thread its own order); every answer checked."""
    bad, errors = [], []

    def serve(t: int) -> None:
        try:
            for i in range(per_thread):
                k = (i * (2 * t + 1) + t) % len(requests)
                feeds, exp = requests[k]
                if not _close(model.run(feeds), exp)[0]:
                    bad.append((t, i, k))
        except Exception as err:  # noqa: BLE001 - reported
            errors.append(repr(err))

    ths = [threading.Thread(target=serve, args=(t,)) for t in range(threads)]
    t0 = time.perf_counter()
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    wall = time.perf_counter() - t0
    return {"threads": threads, "requests": threads * per_thread, "mismatches": len(bad), "errors": errors[:3],
            "req_per_s": round(threads * per_thread / wall, 1)}


def load_prepared(in_dir: str, name: str):
    """A model prepared in `in_dir` as it runs here: (model with its parameters generated, meta, requests, seconds
    the parameters took); raises ValueError when they come out differently from the build host's."""
    from recom_tvm.runtime import load

    with open(os.path.join(in_dir, f"{name}.meta.json")) as f:
        meta = json.load(f)
    model = load(os.path.join(in_dir, meta["lib"]))
    carried_path = os.path.join(in_dir, f"{name}.carried.npz")
    carried = dict(np.load(carried_path)) if os.path.exists(carried_path) else {}
    t0 = time.perf_counter()
    gen = generated_params(model.param_shapes(), carried)
    wrong = [n for n, v in gen.items() if _digest(v) != meta["param_digests"][n]]
    if wrong:
        raise ValueError(f"{name}: parameters generated differently from the build host's: {wrong[:4]}")
    model.set_params(gen)
    params_s = time.perf_counter() - t0
    with open(os.path.join(in_dir, f"{name}.requests.pkl"), "rb") as f:
        requests = pickle.load(f)
    return model, meta, requests, params_s


def run(in_dir: str, out_dir: str | None, iters: int, per_thread: int) -> int:
    import tvm  # noqa: F401

    from device_info import gpu_name, machine
    from recom_tvm import config

    results = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": None, "host": machine(),
               "native_threads": config.native_threads,
               "max_vms": config.max_vms, "cpu_cores": os.cpu_count(), "models": {}}
    failures = 0
    for meta_path in sorted(p for p in os.listdir(in_dir) if p.endswith(".meta.json")):
        m = meta_path[:-len(".meta.json")]
        spec = _spec(m)
        try:
            model, meta, requests, params_s = load_prepared(in_dir, m)
        except ValueError as err:
            print(err)
            failures += 1
            continue
        gpu = model.device.dlpack_device_type() != 1
        results["device"] = gpu_name() if gpu else f"host CPU ({platform.processor() or platform.machine()}, llvm)"
        mres = {"spec": meta["spec"], "params_s": round(params_s, 1),
                "host_stage": "native" if model.native_host() is not None else f"numpy ({model.native_error})",
                "reference": meta["reference"], "batches": {}}
        print(f"\n{results['device']}: model {m} ({len(spec.columns)} columns), host stage {mres['host_stage']}, "
              f"native_threads {config.native_threads}; parameters generated in {mres['params_s']}s", flush=True)
        print(f"{'B':>5} | {'run()':>8} | {'host':>8} {'H2D':>8} {'kernels':>8} {'D2H':>8} {'sum':>8} | "
              f"{'staged':>8} | {'run kjt':>8} {'host kjt':>8} | {'host, strings with the GIL':>8} | "
              f"max err vs host")
        for b in meta["batches"]:
            feeds, exp = requests["batch"][b]
            ok, err = _close(model.run(feeds), exp)
            ok_kjt, err_kjt = _close(model.run(KeyedJagged.from_feeds(model.spec, feeds)), exp)
            failures += (not ok) + (not ok_kjt)
            sets = [spec.sample(b, rng=100_000 + 10 * b + i) for i in range(4)]
            row = step_times(model, sets, iters if b <= 256 else max(10, iters // 3))
            row.update({"ok": ok, "max_err": err, "ok_kjt": ok_kjt, "max_err_kjt": err_kjt})
            mres["batches"][b] = row
            print(f"{b:5d} | {row['run']:8.3f} | {row['host']:8.3f} {row['h2d']:8.3f} {row['kernels']:8.3f} "
                  f"{row['d2h']:8.3f} {row['steps_sum']:8.3f} | {row['staging_bytes'] / 2**20:6.2f}MB | "
                  f"{row['run_kjt']:8.3f} {row['host_kjt']:8.3f} | {row['host_gil_strings']:8.3f} | "
                  f"{max(err, err_kjt):.1e} "
                  f"{'ok' if ok and ok_kjt else 'MISMATCH'}", flush=True)
        one = threads_check(model, requests["threads"], 1, per_thread)
        eight = threads_check(model, requests["threads"], 8, per_thread)
        kjt_requests = [(KeyedJagged.from_feeds(model.spec, f), e) for f, e in requests["threads"]]
        one_kjt = threads_check(model, kjt_requests, 1, per_thread)
        eight_kjt = threads_check(model, kjt_requests, 8, per_thread)
        wide = config.native_threads  # the same 8 serving threads, each request's host stage on its thread alone
        config.native_threads = 1
        try:
            eight_single = threads_check(model, requests["threads"], 8, per_thread)
        finally:
            config.native_threads = wide
        mres["threads"] = {"batch": THREAD_BATCH, "one": one, "eight": eight, "eight_native_threads_1": eight_single,
                           "speedup": round(eight["req_per_s"] / one["req_per_s"], 2),
                           "speedup_native_threads_1": round(eight_single["req_per_s"] / one["req_per_s"], 2),
                           "one_kjt": one_kjt, "eight_kjt": eight_kjt,
                           "speedup_kjt": round(eight_kjt["req_per_s"] / one_kjt["req_per_s"], 2)}
        failures += sum(bool(x["mismatches"] or x["errors"]) for x in (one, eight, eight_single, one_kjt, eight_kjt))
        print(f"threads (B = {THREAD_BATCH}): 1 thread {one['req_per_s']:.0f} req/s, 8 threads "
              f"{eight['req_per_s']:.0f} req/s ({mres['threads']['speedup']}x), 8 threads with native_threads 1 "
              f"{eight_single['req_per_s']:.0f} req/s ({mres['threads']['speedup_native_threads_1']}x); "
              f"mismatches {one['mismatches']} / {eight['mismatches']} / {eight_single['mismatches']}, errors "
              f"{one['errors'] or 0} / {eight['errors'] or 0} / {eight_single['errors'] or 0}; keyed-jagged: 1 thread "
              f"{one_kjt['req_per_s']:.0f} req/s, 8 threads {eight_kjt['req_per_s']:.0f} req/s "
              f"({mres['threads']['speedup_kjt']}x), mismatches {one_kjt['mismatches']} / {eight_kjt['mismatches']}",
              flush=True)
        results["models"][m] = mres
        if out_dir:  # after each model: a run cut short keeps what it measured
            write_json(out_dir, "request_path_gpu.json", results)
        del model
    print(f"\n{'every answer matches the host' if not failures else f'{failures} FAILURES'}")
    return 1 if failures else 0


def main() -> int:
    p = cli(__doc__, ".device/request_path")
    p.add_argument("--models", default="e,mixed100")
    p.add_argument("--target", default="cuda")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--iters", type=int, default=60)
    p.add_argument("--per-thread", type=int, default=200)
    a = p.parse_args()
    if a.mode == "prepare":
        prepare(a.dir, a.models.split(","), a.target, a.arch, tuple(int(b) for b in a.batches.split(",")))
        return 0
    return run(a.dir, a.out, a.iters, a.per_thread)


if __name__ == "__main__":
    sys.exit(main())
