"""What the passes do to a whole model: ops, kernels, device syncs before/after, and the time each step takes.

    python benchmarks/optimize_report.py --model e --large-rows 4096   # RECom's model E, small-table variant
    python benchmarks/optimize_report.py --model mixed --columns 100 [--latency --batch 512]

Three modules: imported (passes off), unfused (redundancy eliminated, columns not fused), optimized (all passes).
--latency also builds them for llvm and times them against TF-CPU on the same inputs (same run).
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
        t0 = time.perf_counter()
        fn(inputs[i % len(inputs)])
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["e", "f", "mixed", "demo"], default="mixed")
    p.add_argument("--columns", type=int, default=100)
    p.add_argument("--large-rows", type=int, default=4096, help="rows of E/F's large tables (2^23 in RECom)")
    p.add_argument("--latency", action="store_true")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--json", default=None)
    a = p.parse_args()

    import recom_tvm
    from recom_tvm import report
    from recom_tvm.frontend.graph import Graph
    from recom_tvm.models import tf_export, zoo

    spec = {"e": lambda: zoo.model_e(a.large_rows), "f": lambda: zoo.model_f(a.large_rows),
            "mixed": lambda: zoo.mixed(a.columns), "demo": zoo.demo}[a.model]()
    res = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "model": spec.name, "columns": len(spec.columns)}
    t0 = time.perf_counter()
    paths = tf_export.export(spec)
    res["tf_generation_s"] = time.perf_counter() - t0
    with open(paths["pb"], "rb") as f:
        graph = Graph.from_bytes(f.read())
    t0 = time.perf_counter()
    mod, params, _ = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"])
    res["import_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    opt = recom_tvm.optimize(mod)
    res["optimize_s"] = time.perf_counter() - t0
    unfused = recom_tvm.optimize(mod, disable=["fuse_columns"])
    res["tf_ops"] = sum(report.tf_op_counts(graph).values())
    res["tf_nodes"] = len(graph.nodes)
    variants = (("imported", mod), ("unfused", unfused), ("optimized", opt))
    for tag, m in variants:
        res[f"{tag}_relax_ops"] = sum(report.relax_op_counts(m).values())
        res[f"{tag}_kernels"] = report.kernel_launches(m)
        res[f"{tag}_syncs"] = report.device_syncs(m)
    res["facts"] = len(list(opt.attrs["recom_tvm.facts"]))
    print(f"model {spec.name}: {len(spec.columns)} columns; TF graph {res['tf_nodes']} nodes, {res['tf_ops']} "
          f"compute ops")
    print(f"  import {res['import_s']:.1f}s, optimize {res['optimize_s']:.1f}s ({res['facts']} rewrites recorded)")
    print(f"  {'':10s} {'Relax ops':>10s} {'kernels':>9s} {'syncs':>7s}")
    for tag, _ in variants:
        print(f"  {tag:10s} {res[tag + '_relax_ops']:10d} {res[tag + '_kernels']:9d} {res[tag + '_syncs']:7d}")
    if a.latency:
        ref = tf_export.TFReference(spec, paths)
        inputs = [spec.sample(a.batch, rng=100 + i) for i in range(5)]
        tf_inputs = [tf_export.to_tf_feeds(spec, x) for x in inputs]
        res["tf_cpu_ms"] = _median_ms(ref.run_tf, tf_inputs, a.repeat)
        for tag, m in variants:
            t0 = time.perf_counter()
            model = recom_tvm.build(m, "llvm", params)
            res[f"{tag}_build_s"] = time.perf_counter() - t0
            err = max(float(np.abs(model.run(x)["score"] - ref(x)).max()) for x in inputs)
            res[f"{tag}_max_abs_err"] = err
            res[f"{tag}_llvm_ms"] = _median_ms(model.run, inputs, a.repeat)
            res[f"{tag}_host_stage_ms"] = _median_ms(model.prepare, inputs, a.repeat)
        print(f"  latency at batch {a.batch} (median of {a.repeat}, llvm on this host):")
        print(f"    TF-CPU               {res['tf_cpu_ms']:8.2f} ms")
        for tag, _ in variants:
            print(f"    recom_tvm {tag:10s} {res[tag + '_llvm_ms']:8.2f} ms ({res['tf_cpu_ms'] / res[tag + '_llvm_ms']:.2f}x "
                  f"TF; host stage {res[tag + '_host_stage_ms']:.2f} ms; build {res[tag + '_build_s']:.1f}s; "
                  f"max err {res[tag + '_max_abs_err']:.1e})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
