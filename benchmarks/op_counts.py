"""Op counts per column type: TF's frozen graph vs recom_tvm's imported and optimized modules.

    python benchmarks/op_counts.py [--json out.json]

Each model holds one column (plus a 1-layer bottom MLP on a dense input and a small top MLP). "TF ops in the
column" counts the compute ops under the column's DenseFeatures scope (Const / Identity / NoOp excluded);
"Relax ops" counts calls in the imported `main` (match_cast / tuple plumbing excluded); "kernels" counts
call_tir sites after recom ops and Relax ops are lowered (before TVM's operator fusion), and "syncs" the device->host copies that learn a size or check
an error (the unoptimized import keeps TF's data-dependent shapes). "column ops" count the Relax calls in the
column's own subgraph (the slice from its concat input back to the inputs), imported and after
`recom_tvm.optimize` (one-column models: nothing to fuse, so this is redundancy elimination alone).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    import recom_tvm
    from recom_tvm import report
    from recom_tvm.frontend.columns import ColumnResolver
    from recom_tvm.frontend.graph import Graph
    from recom_tvm.frontend.loader import load
    from recom_tvm.models import tf_export, zoo

    rows = []
    specs = dict(zoo.per_column_type())
    for name, spec in specs.items():
        paths = tf_export.export(spec)
        with open(paths["pb"], "rb") as f:
            graph = Graph.from_bytes(f.read())
        loaded = load(paths["pb"], paths["signature"])
        col_of = ColumnResolver(graph, loaded.features)
        in_col = [n for n in graph.order if col_of(n) not in (None, "dense")]
        mod, _, _ = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"])
        opt = recom_tvm.optimize(mod)
        rows.append({
            "column": name,
            "tf_ops_column": sum(report.tf_op_counts(graph, in_col).values()),
            "tf_ops_total": sum(report.tf_op_counts(graph).values()),
            "relax_ops": sum(report.relax_op_counts(mod).values()),
            "kernels": report.kernel_launches(mod),
            "syncs": report.device_syncs(mod),
            "column_ops": sum(report.column_op_counts(mod).values()),
            "column_ops_optimized": sum(report.column_op_counts(opt).values()),
            "relax_ops_optimized": sum(report.relax_op_counts(opt).values()),
            "kernels_optimized": report.kernel_launches(opt),
            "syncs_optimized": report.device_syncs(opt),
        })
    print(f"{'':24s} {'TF ops':>15s} | {'imported':>35s} | {'optimized':>35s}")
    print(f"{'column type':24s} {'column':>7s} {'model':>7s} | {'col ops':>8s} {'Relax ops':>9s} {'kernels':>8s} "
          f"{'syncs':>6s} | {'col ops':>8s} {'Relax ops':>9s} {'kernels':>8s} {'syncs':>6s}")
    for r in rows:
        print(f"{r['column']:24s} {r['tf_ops_column']:7d} {r['tf_ops_total']:7d} | {r['column_ops']:8d} "
              f"{r['relax_ops']:9d} {r['kernels']:8d} {r['syncs']:6d} | {r['column_ops_optimized']:8d} "
              f"{r['relax_ops_optimized']:9d} {r['kernels_optimized']:8d} {r['syncs_optimized']:6d}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
