"""What compact tables cost in accuracy, and what they save in memory: every table dtype against TensorFlow.

    python benchmarks/compact_accuracy.py [--models demo,mixed24,mixes,e,f] [--batch 256] [--requests 3]
                                          [--out benchmarks/results] [--tag c] [--markdown benchmarks/BENCHMARKS.md]

Per model and table dtype (float32, float16, bfloat16, int8; `recom_tvm.build(..., table_dtype=...)`, llvm on
this host): the max and mean absolute error of the scores and of the embedding stage (DenseFeatures' output)
against TensorFlow running the same frozen graph on the same requests (fresh random inputs, `--requests` of
`--batch` rows, the last one hostile: empty rows, out-of-range and negative ids), and the memory the model needs
(`CompiledModel.memory_usage`: tables by dtype, other weights, one request's workspace). E and F run with
small tables (`zoo.model_e(large_rows)`, default 4096 rows) so that TF can export them here; their full-size
table bytes (2^23-row large tables) are computed from the same layout. "mixes" is weighted_mix, vocab_mix,
crossed_mix and example_mix (weighted, vocabulary, crossed columns, tf.Example input; errors the max / mean over the
four); "f_small" is zoo.model_f_small (F's kinds and MLP, 129 columns, a quick stand-in for F);
zoo.per_column_type's one-column models have no fused kernel (nothing to compact: every table stays
float32, with a warning), and mixed24 holds their column kinds and input formats in one fused kernel. Writes
results/compact_accuracy_<date>.json and, with --markdown, the
table between the `compact:begin` / `compact:end` markers of BENCHMARKS.md.
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

DTYPES = ("float32", "float16", "bfloat16", "int8")
FULL_ROWS = 1 << 23


def _specs(names: list[str], large_rows: int) -> dict[str, list]:
    from recom_tvm.models import zoo

    out = {}
    for n in names:
        if n == "demo":
            out[n] = [zoo.demo()]
        elif n == "mixed24":
            out[n] = [zoo.mixed(24, seed=3)]
        elif n == "mixes":
            out[n] = [zoo.weighted_mix(), zoo.vocab_mix(), zoo.crossed_mix(), zoo.example_mix()]
        elif n == "e":
            out[n] = [zoo.model_e(large_rows)]
        elif n == "f":
            out[n] = [zoo.model_f(large_rows)]
        elif n == "f_small":
            out[n] = [zoo.model_f_small(large_rows)]
        else:
            raise SystemExit(f"unknown model {n!r}: demo, mixed24, mixes, e, f, f_small")
    return out


class _TFGraph:
    """The frozen graph in a TF1 Session, fetching the score and the embedding stage in one run."""

    def __init__(self, pb: str, signature: dict, fetches: list[str]) -> None:
        import tensorflow as tf

        v1 = tf.compat.v1
        gd = v1.GraphDef()
        with open(pb, "rb") as f:
            gd.ParseFromString(f.read())
        self.graph = tf.Graph()
        with self.graph.as_default():
            v1.import_graph_def(gd, name="")
        self.sess = v1.Session(graph=self.graph)
        inits = [op for op in self.graph.get_operations() if op.type in (
            "LookupTableImportV2", "InitializeTableV2", "InitializeTableFromTextFileV2")]
        if inits:  # vocabulary tables the frozen graph carries
            self.sess.run(inits)
        self.inputs, self.fetches = signature["inputs"], fetches

    def __call__(self, feeds: dict) -> list[np.ndarray]:
        fd = {}
        for name, desc in self.inputs.items():
            if isinstance(desc, str):
                fd[desc] = feeds[name]
            else:
                for part, value in zip(("indices", "values", "dense_shape"), feeds[name]):
                    fd[desc[part]] = value
        return self.sess.run(self.fetches, feed_dict=fd)


def _full_size_tables(model, spec) -> dict[str, int]:
    """Table bytes per dtype with E / F's large tables at their full 2^23 rows (same layout rules)."""
    from recom_tvm.runtime import compact

    recipe = next(r for r in model.spec.param_recipes.values() if "concat_flat" in r)
    large = {c["table"] for c in model.spec.fused["columns"] if c["name"].startswith("l") and c.get("table")}
    shapes = {t: ([FULL_ROWS, s[1]] if t in large else s) for t, s in recipe["shapes"].items()}
    big = dict(recipe, shapes=shapes)
    dts = compact.table_dtypes(big)
    out: dict[str, int] = {}
    for t, _, rows, stride in compact.layout(big, {}):
        out[dts[t]] = out.get(dts[t], 0) + 4 * rows * stride
    return out


def measure_model(name: str, specs: list, batch: int, requests: int, dtypes=DTYPES) -> list[dict]:
    import recom_tvm
    from recom_tvm.models import tf_export
    from recom_tvm.models.resize import embedding_output

    acc: dict[str, dict] = {d: {"score": [], "emb": [], "mem": None, "full": None} for d in dtypes}
    t0 = time.perf_counter()
    for spec in specs:
        paths = tf_export.export(spec)
        with open(paths["signature"]) as f:
            sig = json.load(f)
        emb = embedding_output(paths["pb"])
        score = sig["outputs"]["score"]
        tf_run = _TFGraph(paths["pb"], sig, [score, emb])
        mod, params, _ = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"],
                                                   outputs=[score, emb])
        opt = recom_tvm.optimize(mod)
        feeds = [spec.sample(batch, rng=1000 + i, hostile=i == requests - 1) for i in range(requests)]
        want = [tf_run(f) for f in feeds]
        for d in dtypes:
            model = recom_tvm.build(opt, "llvm", params, table_dtype=d)
            outs = [model.run(f) for f in feeds]
            names = [o["name"] for o in model.spec.outputs]
            for got, (w_score, w_emb) in zip(outs, want):
                g_score, g_emb = (got[n] for n in names)
                acc[d]["score"].append(np.abs(g_score.astype(np.float64) - w_score).reshape(-1))
                acc[d]["emb"].append(np.abs(g_emb.astype(np.float64) - w_emb).reshape(-1))
            mem = model.memory_usage(feeds[0])
            if acc[d]["mem"] is None:
                acc[d]["mem"] = mem
            else:  # several models: their sums
                acc[d]["mem"] = {k: (acc[d]["mem"][k] or 0) + (v or 0) if k in ("tables", "weights", "workspace")
                                 else acc[d]["mem"][k] for k, v in mem.items()}
            if name in ("e", "f"):
                acc[d]["full"] = _full_size_tables(model, spec)
    rows = []
    for d in dtypes:
        s, e = np.concatenate(acc[d]["score"]), np.concatenate(acc[d]["emb"])
        mem = acc[d]["mem"]
        rows.append({"model": name, "models": len(specs), "table_dtype": d, "batch": batch, "requests": requests,
                     "score_max_abs": float(s.max()), "score_mean_abs": float(s.mean()),
                     "emb_max_abs": float(e.max()), "emb_mean_abs": float(e.mean()),
                     "tables_bytes": mem["tables"], "tables_by_dtype": mem["tables_by_dtype"],
                     "weights_bytes": mem["weights"], "workspace_bytes": mem.get("workspace"),
                     "full_size_tables_bytes": sum(acc[d]["full"].values()) if acc[d]["full"] else None})
    print(f"{name}: {len(specs)} model(s), {len(dtypes)} dtypes in {time.perf_counter() - t0:.0f}s", flush=True)
    return rows


def _mb(n) -> str:
    if n is None:
        return "–"
    return f"{n / 2**20:.2f} MB" if n < 2**30 else f"{n / 2**30:.2f} GB"


def markdown(result: dict) -> str:
    lines = [f"Generated by `benchmarks/compact_accuracy.py` ({result['date']}, {result['host']}, llvm; TF "
             f"{result['tf']}): errors against TensorFlow on the same frozen graph, {result['requests']} requests of "
             f"B = {result['batch']} (the last hostile). Memory: `CompiledModel.memory_usage` (workspace: one "
             f"request's tensors, an upper bound; several models: their sums); E and F with {result['large_rows']}-row "
             "large tables, and their "
             f"tables at full size (2^23 rows) from the same layout.", "",
             "| model | table dtype | score max / mean abs err | embedding stage max / mean abs err | tables | "
             "weights | workspace | tables at full size |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        name = r["model"] + (f" ({r['models']} models)" if r["models"] > 1 else "")
        lines.append(f"| {name} | {r['table_dtype']} | {r['score_max_abs']:.2e} / {r['score_mean_abs']:.2e} | "
                     f"{r['emb_max_abs']:.2e} / {r['emb_mean_abs']:.2e} | {_mb(r['tables_bytes'])} | "
                     f"{_mb(r['weights_bytes'])} | {_mb(r['workspace_bytes'])} | "
                     f"{_mb(r['full_size_tables_bytes'])} |")
    return "\n".join(lines)


def write_markdown(path: str, text: str) -> None:
    begin, end = "<!-- compact:begin -->", "<!-- compact:end -->"
    with open(path) as f:
        doc = f.read()
    if begin not in doc:
        raise SystemExit(f"{path} has no {begin} marker")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(head + begin + "\n" + text + "\n" + end + tail)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="demo,mixed24,mixes,e,f")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--requests", type=int, default=3)
    p.add_argument("--large-rows", type=int, default=4096, help="rows of E / F's large tables (TF exports them)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--tag", default="", help="suffix of the results file (compact_accuracy_<date><tag>.json), so "
                   "that a second run the same day keeps the first one's file")
    p.add_argument("--markdown", default=None, help="BENCHMARKS.md to update between the compact markers")
    a = p.parse_args()
    import tensorflow as tf

    rows = []
    for name, specs in _specs(a.models.split(","), a.large_rows).items():
        rows += measure_model(name, specs, a.batch, a.requests)
    result = {"date": time.strftime("%Y-%m-%d"), "host": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores", "tf": tf.__version__, "batch": a.batch, "requests": a.requests,
              "large_rows": a.large_rows, "rows": rows}
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"compact_accuracy_{result['date']}{a.tag}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    text = markdown(result)
    print(text)
    print(f"-> {path}")
    if a.markdown:
        write_markdown(a.markdown, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
