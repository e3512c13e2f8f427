"""The corpus (tests/corpus/) through the importer and the passes: per graph, TF ops -> imported Relax ops /
kernels / device syncs -> optimized, and whether the embedding columns fused into one kernel (or why not); per API
route, the TF op types its graphs hold (what docs/IMPORTER.md lists as accepted by source API).

    python benchmarks/corpus_report.py [--json out.json] [--docs]

Runs with host co-run off, like the tests: every op of every corpus graph is really converted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.environ["RECOM_TVM_HOST_FALLBACK"] = "0"
os.environ.setdefault("RECOM_TVM_CACHE", os.path.join(ROOT, ".cache"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# bookkeeping a graph holds that the importer never converts (variables are frozen, asserts are checked)
_NOT_OPS = {"NoOp", "Const", "Placeholder"}


def graph_of(entry):
    """The frozen graph the importer reads for an entry (SavedModels frozen as the importer freezes them)."""
    from corpus import harness
    from recom_tvm.frontend.loader import load

    root, art = harness.artifact(entry)
    if "pb" in art:
        return load(os.path.join(root, art["pb"]), art["signature"]).graph
    return load(os.path.join(root, art["saved_model"])).graph


def rows() -> list[dict]:
    import recom_tvm
    from corpus import ENTRIES, harness
    from recom_tvm import report

    out = []
    for name in sorted(ENTRIES):
        entry = ENTRIES[name]
        t0 = time.perf_counter()
        graph = graph_of(entry)
        mod, _, _ = harness.imported(entry)
        opt = recom_tvm.optimize(mod)
        facts = [str(f) for f in opt.attrs["recom_tvm.facts"]] if "recom_tvm.facts" in opt.attrs else []
        fused = report.relax_op_counts(opt).get("recom.fused_embedding", 0)
        out.append({
            "graph": name, "route": entry.route,
            "tf_ops": sum(report.tf_op_counts(graph).values()),
            "tf_op_types": sorted({n.op for n in graph.nodes.values()} - _NOT_OPS),
            "relax_ops": sum(report.relax_op_counts(mod).values()), "kernels": report.kernel_launches(mod),
            "syncs": report.device_syncs(mod),
            "relax_ops_optimized": sum(report.relax_op_counts(opt).values()),
            "kernels_optimized": report.kernel_launches(opt), "syncs_optimized": report.device_syncs(opt),
            "fused_kernels": fused,
            "not_fused": [f for f in facts if "not fused" in f] + ([entry.why_not_fused] if not entry.fused else []),
        })
        print(f"{name}: {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    return out


def table(data: list[dict]) -> str:
    lines = ["| graph | route | TF ops | imported: ops / kernels / syncs | optimized: ops / kernels / syncs | "
             "one fused kernel |", "|---|---|---|---|---|---|"]
    for r in data:
        why = "yes" if r["fused_kernels"] == 1 and not r["not_fused"] else \
            f"{'yes, partly: ' if r['fused_kernels'] == 1 else 'no: '}{'; '.join(r['not_fused'])[:160]}"
        lines.append(f"| {r['graph']} | {r['route']} | {r['tf_ops']} | {r['relax_ops']} / {r['kernels']} / "
                     f"{r['syncs']} | {r['relax_ops_optimized']} / {r['kernels_optimized']} / {r['syncs_optimized']} "
                     f"| {why} |")
    return "\n".join(lines)


def ops_by_route(data: list[dict]) -> str:
    by: dict[str, set] = {}
    for r in data:
        by.setdefault(r["route"], set()).update(r["tf_op_types"])
    return "\n".join(f"- **{route}** ({len(ops)}): " + ", ".join(f"`{o}`" for o in sorted(ops))
                     for route, ops in sorted(by.items()))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default=None)
    p.add_argument("--docs", action="store_true", help="print the per-route op lists for docs/IMPORTER.md")
    a = p.parse_args()
    data = rows()
    print(table(data))
    fused = sum(r["fused_kernels"] == 1 for r in data)
    print(f"\n{len(data)} graphs; {fused} optimize to one fused embedding kernel; "
          f"{sum(r['syncs_optimized'] == 0 for r in data)} keep no device->host sync")
    if a.docs:
        print("\n" + ops_by_route(data))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d"), "rows": data}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
