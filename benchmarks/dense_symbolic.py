"""A dense layer's kernel as the model builds it (symbolic batch, every bucket dispatched) beside the same schedule
compiled for a static batch: one library per layer and batch, measured cold by `tune_models.py measure` like a
tuning round. What it answers: how much of a layer's in-model time the symbolic batch costs.

    python benchmarks/dense_symbolic.py --round-dir .device/dense_symbolic/round --models e --batches 1,32,2048
    # GPU: python benchmarks/tune_models.py measure --round-dir .device/dense_symbolic/round --out $OUT
Candidates per task: cand_0 the bucket's config at the static batch, cand_1 the same config with the batch symbolic
and any batch allowed (padded rows clamped), cand_2 the layer as built (every default bucket, dispatched by batch;
buckets of whole row blocks shift their last one).
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--round-dir", required=True)
    p.add_argument("--models", default="e")
    p.add_argument("--batches", default="1,32,2048")
    p.add_argument("--rows", type=int, default=1 << 23)
    a = p.parse_args()

    from full_models import optimized
    from recom_tvm.build_module import make_target
    from recom_tvm.schedules.builder import compile_kernels
    from recom_tvm.schedules.dense_space import default_for, extract_dense_tasks, dense_layers
    from recom_tvm.schedules.dense_tail import default_buckets, schedule, schedule_buckets
    from recom_tvm.schedules.offline import new_manifest, write_manifest

    target = make_target("cuda")
    for m in a.models.split(","):
        opt, _, _ = optimized(m, a.rows, "e2e")
        out = os.path.join(a.round_dir, m)
        os.makedirs(out, exist_ok=True)
        manifest = new_manifest(0, target)
        symbolic = dict(dense_layers(opt, target))
        for t in extract_dense_tasks(opt, target, [int(b) for b in a.batches.split(",")]):
            cfg = default_for("cuda", t.batch)
            sym = symbolic[t.key]
            funcs = {"cand_0": schedule(t.mod["main"].without_attr("recom_tvm.dense_task"), cfg, target),
                     "cand_1": schedule(sym, cfg, target),
                     "cand_2": schedule_buckets(sym, default_buckets("cuda"), target)}
            funcs = {k: f.with_attr("global_symbol", k) for k, f in funcs.items()}
            lib = compile_kernels(funcs, target)
            lib.export_library(os.path.join(out, f"{t.name}.so"))
            manifest["tasks"][t.name] = {"kind": "dense", "lib": f"{t.name}.so", "batch": t.batch,
                                         "args": t.arg_shapes(), "key": t.key}
            for i, what in enumerate(("static", "symbolic", "as built")):
                manifest["candidates"].append({"task": t.name, "func": f"cand_{i}", "config": cfg.to_json(),
                                               "default": i == 2, "trace": [], "variant": what})
            print(f"{t.name}: {cfg.knobs()}", flush=True)
        write_manifest(out, manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
