"""Host (CPU) latency: recom_tvm on llvm vs TF-CPU (graph mode), same machine, same inputs, same run.

    python benchmarks/host_latency.py --columns 100 --batch 512 [--repeat 20] [--json out.json]

Reports import / build times, the median latency of each system, their ratio, and recom_tvm's split into host
stage (feed checks + string hashing) and compiled module. Inputs are drawn fresh per iteration (a rotating pool).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _median_ms(fn, inputs, repeat: int) -> float:
    fn(inputs[0])
    times = []
    for i in range(repeat):
        x = inputs[i % len(inputs)]
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--columns", type=int, default=100)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--pool", type=int, default=5, help="distinct input batches cycled through")
    p.add_argument("--json", default=None)
    a = p.parse_args()

    import recom_tvm
    from recom_tvm.models import tf_export, zoo

    spec = zoo.mixed(a.columns, seed=0)
    t0 = time.perf_counter()
    paths = tf_export.export(spec)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    mod, params, ispec = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"])
    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = recom_tvm.build(mod, "llvm", params)
    t_build = time.perf_counter() - t0
    ref = tf_export.TFReference(spec, paths)
    inputs = [spec.sample(a.batch, rng=100 + i) for i in range(a.pool)]
    err = max(float(np.abs(model.run(x)["score"] - ref(x)).max()) for x in inputs)
    tf_inputs = [tf_export.to_tf_feeds(spec, x) for x in inputs]
    t_tf = _median_ms(ref.run_tf, tf_inputs, a.repeat)
    t_ours = _median_ms(model.run, inputs, a.repeat)
    t_host = _median_ms(model.prepare, inputs, a.repeat)
    res = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
                                                      f"{os.cpu_count()} cores",
        "model": spec.name, "columns": a.columns, "batch": a.batch, "repeat": a.repeat,
        "tf_cpu_ms": t_tf, "recom_tvm_llvm_ms": t_ours, "recom_tvm_host_stage_ms": t_host,
        "speedup_vs_tf": t_tf / t_ours, "max_abs_err_vs_tf": err, "tf_model_generation_s": t_gen,
        "import_s": t_import, "build_s": t_build, "passes": "none (unoptimized import)",
    }
    print(f"model {spec.name}: {a.columns} columns, batch {a.batch}, median of {a.repeat}")
    print(f"  import {t_import:.2f}s, build (llvm) {t_build:.2f}s; max |diff| vs TF {err:.1e}")
    print(f"  TF-CPU (graph mode)      {t_tf:8.2f} ms")
    print(f"  recom_tvm llvm           {t_ours:8.2f} ms  ({t_tf / t_ours:.2f}x TF)  "
          f"of which host stage {t_host:.2f} ms")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
