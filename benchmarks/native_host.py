"""The request path on the build host: the native host stage vs the numpy reference vs TF-CPU's whole inference,
and llvm run() vs TF-CPU, on the mixed 100-column model (recom_tvm.models.zoo.mixed(100)), in one run.

    python benchmarks/native_host.py [--batches 32,2048] [--run-batches 1,32,...,2048] [--json out.json]
    python benchmarks/native_host.py --report out.json      # the markdown tables of BENCHMARKS.md

- prepare(): the native host stage (config.native_threads threads, and 1), split into its steps (ingest with the
  GIL, feed checks, sorting, host ops, id checks + binding + layout, packing), against the numpy reference (its
  own split: host_stage.step_times) and TF-CPU's whole inference (graph mode, frozen graph, all cores); and the
  host stage of the same model built with config.device_hash on (what a CUDA build runs: strings and AsString
  integers shipped to the device hash instead of hashed here);
- run() on llvm against TF-CPU at the suite's batches, split into prepare and the compiled module (execute);
- the same request as keyed-jagged, and with the hashing ops on the per-op numpy fallback (what an op without
  native code costs); serialized tf.Examples on the Estimator-style example_mix model.
Inputs are drawn fresh (a pool of distinct requests, cycled); the figure is the median, min in parentheses.
CPU time (process_time) is reported next to wall time: the build host is shared, and wall time includes waiting.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

RUN_BATCHES = (1, 32, 64, 128, 256, 512, 1024, 2048)


def _times(fn, inputs, repeat: int) -> dict:
    fn(inputs[0])
    wall, cpu = [], []
    for i in range(repeat):
        x = inputs[i % len(inputs)]
        c0, w0 = time.process_time(), time.perf_counter()
        fn(x)
        wall.append(1e3 * (time.perf_counter() - w0))
        cpu.append(1e3 * (time.process_time() - c0))
    return {"median_ms": float(np.median(wall)), "min_ms": float(np.min(wall)),
            "cpu_median_ms": float(np.median(cpu)), "cpu_min_ms": float(np.min(cpu))}


def staged(model):
    """The host stage as run() drives it: into one reused staging buffer (prepare() returns arrays of its own, so it
    writes a fresh buffer each call and pays its page faults). -> fn(feeds)."""
    native = model.native_host()
    ctx = native.context()
    buf = [np.zeros(1 << 20, np.uint8)]

    def destination(nbytes: int):
        if nbytes > buf[0].size:
            buf[0] = np.zeros(2 * nbytes, np.uint8)
        return buf[0].ctypes.data, buf[0].size

    def fn(feeds):
        if native.request(ctx, feeds, destination) is None:
            raise RuntimeError(f"the native host stage refused the request: {native.last_refusal}")
    return fn


def native_steps(model, inputs, repeat: int) -> dict:
    """The native prepare()'s steps, ms, median over the requests."""
    native = model.native_host()
    acc: dict[str, list] = {}
    for i in range(repeat):
        model.prepare(inputs[i % len(inputs)])
        for k, v in native.timings(model._prepare_ctx.ctx).items():
            acc.setdefault(k, []).append(v)
    return {k: float(np.median(v)) for k, v in acc.items()}


def report(path: str) -> None:
    """The BENCHMARKS.md tables of a JSON this script wrote. Figures: median (min) in ms."""
    d = json.load(open(path))
    h = d["host"]
    print(f"Machine: {h['cpu']}, {h['cores']} cores, TF {h['tensorflow']}, Python {h['python']}; {d['date']}; "
          f"native_threads {d['native_threads']}; model {d['model']}.\n")
    print("| B | TF-CPU whole inference | prepare(), native | native, 1 thread | native, keyed-jagged | native, hashing on the per-op numpy fallback | prepare(), numpy reference | TF-CPU / native (target >= 20) |")
    print("|---|---|---|---|---|---|---|---|")
    f = lambda r: f"{r['median_ms']:.3f} ({r['min_ms']:.3f})" if r['median_ms'] < 10 else f"{r['median_ms']:.1f} ({r['min_ms']:.1f})"
    for b, r in sorted(d["prepare"].items(), key=lambda x: int(x[0])):
        print(f"| {b} | {f(r['tf_cpu'])} | **{f(r['native'])}** | {f(r['native_1_thread'])} | {f(r['native_keyed_jagged'])} | {f(r['native_hashing_in_numpy'])} | {f(r['reference'])} | {r['tf_cpu']['median_ms']/r['native']['median_ms']:.1f}x (best {r['tf_cpu']['min_ms']/r['native']['min_ms']:.1f}x) |")
    print()
    print("CPU time (process_time: every thread of the process; TF-CPU's intra-op threads included), ms, median (min):")
    print()
    print("| B | TF-CPU whole inference | prepare(), native | native, 1 thread | native, keyed-jagged | prepare(), numpy "
          "reference | TF-CPU / native |")
    print("|---|---|---|---|---|---|---|")
    g = lambda r: f"{r['cpu_median_ms']:.3f} ({r['cpu_min_ms']:.3f})" if r['cpu_median_ms'] < 10 else \
        f"{r['cpu_median_ms']:.1f} ({r['cpu_min_ms']:.1f})"
    for b, r in sorted(d["prepare"].items(), key=lambda x: int(x[0])):
        print(f"| {b} | {g(r['tf_cpu'])} | **{g(r['native'])}** | {g(r['native_1_thread'])} | "
              f"{g(r['native_keyed_jagged'])} | {g(r['reference'])} | "
              f"{r['tf_cpu']['cpu_median_ms'] / r['native']['cpu_median_ms']:.1f}x |")
    print()
    if "native_device_hash" in next(iter(d["prepare"].values())):
        print("The host stage a CUDA build runs (device_hash on: hash-bucket columns' strings and AsString integers "
              "shipped, not hashed), ms, median (min):")
        print()
        print("| B | TF-CPU whole inference | prepare(), device-hash build | TF-CPU / it (target >= 20) | "
              "the same host stage into a reused staging buffer (as run()) | TF-CPU / it | "
              + " | ".join(next(iter(d["prepare"].values()))["native_device_hash_steps"]) + " |")
        print("|---|---|---|---|---|---|" + "---|" * len(next(iter(d["prepare"].values()))["native_device_hash_steps"]))
        for b, r in sorted(d["prepare"].items(), key=lambda x: int(x[0])):
            st = r.get("native_device_hash_staged")
            print(f"| {b} | {f(r['tf_cpu'])} | **{f(r['native_device_hash'])}** | {r['tf_over_device_hash']:.1f}x | "
                  + (f"**{f(st)}** | {r['tf_cpu']['median_ms'] / st['median_ms']:.1f}x | " if st else "– | – | ")
                  + " | ".join(f"{v:.3f}" for v in r["native_device_hash_steps"].values()) + " |")
        print()
    print("Native prepare() split, ms (median): " )
    print("| B | " + " | ".join(next(iter(d["prepare"].values()))["native_steps"].keys()) + " |")
    print("|---|" + "---|" * len(next(iter(d["prepare"].values()))["native_steps"]))
    for b, r in sorted(d["prepare"].items(), key=lambda x: int(x[0])):
        print(f"| {b} | " + " | ".join(f"{v:.3f}" for v in r["native_steps"].values()) + " |")
    print()
    print("numpy reference split, ms (median):")
    ks = list(next(iter(d["prepare"].values()))["reference_steps"].keys())
    print("| B | " + " | ".join(ks) + " |")
    print("|---|" + "---|" * len(ks))
    for b, r in sorted(d["prepare"].items(), key=lambda x: int(x[0])):
        print(f"| {b} | " + " | ".join(f"{r['reference_steps'][k]:.2f}" for k in ks) + " |")
    print()
    print("| B | TF-CPU | run(), llvm | of which prepare() | of which the module (execute) | TF-CPU / run() |")
    print("|---|---|---|---|---|---|")
    for b, r in sorted(d["run"].items(), key=lambda x: int(x[0])):
        print(f"| {b} | {f(r['tf_cpu'])} | **{f(r['run'])}** | {f(r['prepare'])} | {f(r['execute'])} | {r['tf_cpu']['median_ms']/r['run']['median_ms']:.2f}x |")
    if d.get("examples"):
        print()
        print("| B | tf.Examples (example_mix): TF-CPU whole inference | prepare(), native | prepare(), numpy |")
        print("|---|---|---|---|")
        for b, r in sorted(d["examples"].items(), key=lambda x: int(x[0])):
            print(f"| {b} | {f(r['tf_cpu'])} | **{f(r['native'])}** | {f(r['reference'])} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--columns", type=int, default=100)
    p.add_argument("--batches", default="32,2048")
    p.add_argument("--run-batches", default=",".join(map(str, RUN_BATCHES)))
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--pool", type=int, default=6)
    p.add_argument("--json", default=None)
    p.add_argument("--report", default=None, help="print the markdown tables of this JSON and exit")
    a = p.parse_args()
    if a.report:
        report(a.report)
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import recom_tvm
    from recom_tvm import config
    from recom_tvm.models import tf_export, zoo
    from recom_tvm.runtime import KeyedJagged
    from recom_tvm.models.tf_graph import FrozenGraphRunner
    from suite_host import host_info

    spec = zoo.mixed(a.columns)
    paths = tf_export.export(spec)
    mod, params, _ = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"])
    opt = recom_tvm.optimize(mod)
    model = recom_tvm.build(opt, "llvm", params)
    assert model.native_host() is not None, model.native_error
    # the host stage a CUDA build runs: the hash-bucket columns' strings and integers shipped to the device hash
    old_mode, config.device_hash = config.device_hash, "on"
    dh_model = recom_tvm.build(opt, "llvm", params)
    config.device_hash = old_mode
    assert dh_model.spec.fused["device_hash"] and dh_model.native_host() is not None, dh_model.native_error
    tf_graph = FrozenGraphRunner(paths["pb"], paths["signature"])
    from host_stage import step_times

    threads = config.native_threads
    result = {"date": time.strftime("%Y-%m-%d"), "host": host_info(), "model": spec.name,
              "native_threads": threads, "prepare": {}, "run": {}}
    batches = sorted(set(int(b) for b in a.batches.split(",")) | set(int(b) for b in a.run_batches.split(",")))
    for batch in batches:
        feeds = [spec.sample(batch, rng=9000 + 31 * batch + i) for i in range(a.pool)]
        fds = [tf_graph.feed_dict(f) for f in feeds]
        reps = a.repeat if batch <= 256 else max(8, a.repeat // 3)
        tf_t = _times(tf_graph.run, fds, reps)
        row = {"tf_cpu": tf_t}
        if batch in [int(b) for b in a.batches.split(",")]:
            config.native_threads = threads
            row["native"] = _times(model.prepare, feeds, reps)
            row["native_steps"] = native_steps(model, feeds, reps)
            row["native_device_hash"] = _times(dh_model.prepare, feeds, reps)
            row["native_device_hash_steps"] = native_steps(dh_model, feeds, reps)
            row["native_device_hash_staged"] = _times(staged(dh_model), feeds, reps)
            row["tf_over_device_hash"] = tf_t["median_ms"] / row["native_device_hash"]["median_ms"]
            config.native_threads = 1
            row["native_1_thread"] = _times(model.prepare, feeds, reps)
            config.native_threads = threads
            # the per-op numpy fallback, measured: hashing (and AsString) run in numpy, the rest natively
            config.native_fallback_ops = "StringToHashBucketFast,AsString"
            model._native, model._prepare_ctx = None, type(model._prepare_ctx)()
            row["native_hashing_in_numpy"] = _times(model.prepare, feeds, reps)
            config.native_fallback_ops = ""
            model._native, model._prepare_ctx = None, type(model._prepare_ctx)()
            kjts = [KeyedJagged.from_feeds(model.spec, f) for f in feeds]
            row["native_keyed_jagged"] = _times(model.prepare, kjts, reps)
            row["reference"] = _times(model.prepare_reference, feeds, max(4, reps // 3))
            config.host_stage = "numpy"
            row["reference_steps"] = step_times(model, feeds[:4], reduce=np.median, with_prepare=False)
            config.host_stage = "native"
            row["tf_over_native"] = tf_t["median_ms"] / row["native"]["median_ms"]
            result["prepare"][batch] = row
            s = row["native_steps"]
            print(f"B={batch:5d} TF-CPU {tf_t['median_ms']:.2f} ms | prepare native {row['native']['median_ms']:.3f} "
                  f"(1 thread {row['native_1_thread']['median_ms']:.3f}, keyed-jagged "
                  f"{row['native_keyed_jagged']['median_ms']:.3f}, hashing in numpy "
                  f"{row['native_hashing_in_numpy']['median_ms']:.3f}) | numpy {row['reference']['median_ms']:.2f} | "
                  f"TF / native {row['tf_over_native']:.1f}x | device-hash build "
                  f"{row['native_device_hash']['median_ms']:.3f} ({row['tf_over_device_hash']:.1f}x), into a reused "
                  f"buffer {row['native_device_hash_staged']['median_ms']:.3f} | steps " +
                  ", ".join(f"{k} {v:.3f}" for k, v in s.items()), flush=True)
        if batch in [int(b) for b in a.run_batches.split(",")]:
            prepared = [model.prepare(f) for f in feeds]
            run_t = _times(model.run, feeds, reps)
            exe_t = _times(model.execute, prepared, reps)
            prep_t = _times(model.prepare, feeds, reps)
            result["run"][batch] = {"tf_cpu": tf_t, "run": run_t, "execute": exe_t, "prepare": prep_t,
                                    "tf_over_run": tf_t["median_ms"] / run_t["median_ms"]}
            print(f"B={batch:5d} run() {run_t['median_ms']:.2f} ms (prepare {prep_t['median_ms']:.2f}, module "
                  f"{exe_t['median_ms']:.2f}) vs TF-CPU {tf_t['median_ms']:.2f} ms: "
                  f"{tf_t['median_ms'] / run_t['median_ms']:.2f}x", flush=True)
    # serialized tf.Examples (the Estimator-style signature): ParseExampleV2 natively vs in Python (protobuf)
    ex_spec = zoo.example_mix()
    ex_paths = tf_export.export(ex_spec)
    mod, params, _ = recom_tvm.from_tensorflow(ex_paths["pb"], signature=ex_paths["signature"])
    ex_model = recom_tvm.build(recom_tvm.optimize(mod), "llvm", params)
    ex_tf = FrozenGraphRunner(ex_paths["pb"], ex_paths["signature"])
    result["examples"] = {}
    for batch in [int(b) for b in a.batches.split(",")]:
        feeds = [ex_spec.sample(batch, rng=7000 + i) for i in range(a.pool)]
        reps = a.repeat if batch <= 256 else max(8, a.repeat // 3)
        row = {"tf_cpu": _times(ex_tf.run, [ex_tf.feed_dict(f) for f in feeds], reps),
               "native": _times(ex_model.prepare, feeds, reps),
               "reference": _times(ex_model.prepare_reference, feeds, max(4, reps // 3))}
        result["examples"][batch] = row
        print(f"B={batch:5d} tf.Examples ({ex_spec.name}): prepare native {row['native']['median_ms']:.3f} ms, numpy "
              f"{row['reference']['median_ms']:.2f} ms, TF-CPU whole inference {row['tf_cpu']['median_ms']:.2f} ms",
              flush=True)
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
