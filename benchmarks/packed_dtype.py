"""The fused kernel's packed input as int64 vs int32 (config.packed_dtype) on the build host (llvm): bytes the host
packs (and, on CUDA, copies to the device in one transfer), prepare() on the native host stage and on the numpy
reference, and the compiled module (execute) and run(), for the same model built both ways, in one run.

    python benchmarks/packed_dtype.py [--models demo,mixed100] [--batches 32,2048] [--json out.json]
    python benchmarks/packed_dtype.py --report out.json      # the markdown table

Inputs are drawn fresh (a pool of distinct requests, cycled); times are the median (min) of wall time in ms.
The outputs of both builds are compared bit for bit on every request of the pool.
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


def _model_spec(name: str):
    from recom_tvm.models import zoo

    if name == "demo":
        return zoo.demo()
    if name.startswith("mixed"):
        return zoo.mixed(int(name[len("mixed"):]))
    raise SystemExit(f"unknown model {name!r} (demo, mixedN)")


def _build(mod, params, dtype: str):
    import recom_tvm
    from recom_tvm import config

    old = config.packed_dtype
    config.packed_dtype = dtype
    try:
        model = recom_tvm.build(recom_tvm.optimize(mod), "llvm", params)
    finally:
        config.packed_dtype = old
    assert model.spec.fused["packed_dtype"] == dtype, model.spec.fused.get("packed_dtype")
    assert model.native_host() is not None, model.native_error
    return model


def _bytes(args) -> tuple[int, int]:
    """(bytes of the packed input, bytes of every array argument: what one request copies to the device)."""
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    packed = next(a for a in arrays if a.dtype in (np.int32, np.int64) and a.ndim == 1)
    return int(packed.nbytes), int(sum(a.nbytes for a in arrays))


def report(path: str) -> None:
    d = json.load(open(path))
    h = d["host"]
    print(f"Machine: {h['cpu']}, {h['cores']} cores, Python {h['python']}; {d['date']}; llvm; native_threads "
          f"{d['native_threads']}. Median (min) ms.\n")
    print("| model | B | packed bytes int64 -> int32 | all arguments' bytes | prepare() native, int64 | int32 | "
          "native write step, int64 -> int32 | prepare() numpy, int64 | int32 | module (execute), int64 | int32 | "
          "outputs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    f = lambda r: f"{r['median_ms']:.3f} ({r['min_ms']:.3f})" if r["median_ms"] < 10 else \
        f"{r['median_ms']:.1f} ({r['min_ms']:.1f})"
    for m, rows in d["models"].items():
        for b, r in sorted(rows.items(), key=lambda x: int(x[0])):
            a, c = r["int64"], r["int32"]
            print(f"| {m} | {b} | {a['packed_bytes']:,} -> **{c['packed_bytes']:,}** | {a['arg_bytes']:,} -> "
                  f"{c['arg_bytes']:,} | {f(a['prepare_native'])} | **{f(c['prepare_native'])}** | "
                  f"{a['native_steps']['write']:.3f} -> {c['native_steps']['write']:.3f} | "
                  f"{f(a['prepare_numpy'])} | {f(c['prepare_numpy'])} | {f(a['execute'])} | {f(c['execute'])} | "
                  f"{'bit-identical' if r['identical'] else 'DIFFER'} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="demo,mixed100")
    p.add_argument("--batches", default="32,2048")
    p.add_argument("--repeat", type=int, default=40)
    p.add_argument("--pool", type=int, default=6)
    p.add_argument("--json", default=None)
    p.add_argument("--report", default=None, help="print the markdown table of this JSON and exit")
    a = p.parse_args()
    if a.report:
        report(a.report)
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import recom_tvm
    from recom_tvm import config
    from recom_tvm.models import tf_export
    from native_host import _times, native_steps
    from suite_host import host_info

    result = {"date": time.strftime("%Y-%m-%d"), "host": host_info(), "native_threads": config.native_threads,
              "models": {}}
    for name in a.models.split(","):
        spec = _model_spec(name)
        paths = tf_export.export(spec)
        mod, params, _ = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"])
        models = {dt: _build(mod, params, dt) for dt in ("int64", "int32")}
        rows = result["models"][name] = {}
        for batch in (int(b) for b in a.batches.split(",")):
            feeds = [spec.sample(batch, rng=4000 + 17 * batch + i) for i in range(a.pool)]
            reps = a.repeat if batch <= 256 else max(10, a.repeat // 3)
            row = {}
            outs = {}
            for dt, model in models.items():
                prepared = [model.prepare(f) for f in feeds]
                packed_bytes, arg_bytes = _bytes(prepared[0])
                outs[dt] = [model.run(f) for f in feeds]
                row[dt] = {"packed_bytes": packed_bytes, "arg_bytes": arg_bytes,
                           "prepare_native": _times(model.prepare, feeds, reps),
                           "prepare_numpy": _times(model.prepare_reference, feeds, max(5, reps // 3)),
                           "native_steps": native_steps(model, feeds, reps),
                           "execute": _times(model.execute, prepared, reps),
                           "run": _times(model.run, feeds, reps)}
            row["identical"] = all(x[k].tobytes() == y[k].tobytes()
                                   for xs, ys in [(outs["int64"], outs["int32"])] for x, y in zip(xs, ys) for k in x)
            rows[batch] = row
            s, t = row["int64"], row["int32"]
            print(f"{name} B={batch}: packed {s['packed_bytes']:,} -> {t['packed_bytes']:,} bytes | prepare native "
                  f"{s['prepare_native']['median_ms']:.3f} -> {t['prepare_native']['median_ms']:.3f} ms (write "
                  f"{s['native_steps']['write']:.3f} -> {t['native_steps']['write']:.3f}) | numpy "
                  f"{s['prepare_numpy']['median_ms']:.2f} -> {t['prepare_numpy']['median_ms']:.2f} ms | module "
                  f"{s['execute']['median_ms']:.3f} -> {t['execute']['median_ms']:.3f} ms | outputs "
                  f"{'identical' if row['identical'] else 'DIFFER'}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
