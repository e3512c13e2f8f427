"""Where the TF export of a model spends its time and memory: phase by phase, at growing column counts.

    python benchmarks/export_profile.py [--family f|e] [--scales 0.1,0.2,0.4] [--large-rows 4096]
                                        [--out benchmarks/results]

A spec of the family's column kinds, dims, combiners and MLP (zoo._recom_model) with its bucketized / int / string
column counts scaled (the multi-hot and large columns kept) is exported phase by phase, each scale in a fresh
process into a temporary cache: build_keras (feature columns + DenseFeatures + MLPs), trace (the serving
ConcreteFunction), saved_model.save, freeze (convert_variables_to_constants_v2 + tables), write (model.pb). Per
phase: seconds and peak RSS (VmHWM, reset per phase where the kernel allows). Writes
results/export_profile_<date>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# zoo.model_e / model_f: (bucketized, int, string, multi-hot, large) column counts, top MLP, seed
FAMILIES = {"e": ((880, 50, 50, 15, 5), (1024, 1024, 128), 5),
            "f": ((1000, 90, 100, 7, 3), (2048, 1024, 1024, 512), 6)}


def _mem() -> tuple[float, float]:
    """(current RSS, peak RSS) in GiB."""
    vals = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                k, v = line.split(":")
                vals[k] = int(v.split()[0]) / 2**20
    return vals["VmRSS"], vals["VmHWM"]


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def spec_at(family: str, scale: float, large_rows: int):
    from recom_tvm.models import zoo

    counts, top, seed = FAMILIES[family]
    scaled = tuple(max(1, round(n * scale)) for n in counts[:3]) + counts[3:]
    return zoo._recom_model(f"profile_{family}_{sum(scaled)}", scaled, top, large_rows, seed)


def profile_one(family: str, scale: float, large_rows: int, keras_traces: bool = False) -> dict:
    """Export one spec phase by phase (the steps of tf_export._export_tf2) in this process."""
    from recom_tvm.frontend.loader import freeze_with_tables
    from recom_tvm.models import tf_export

    tf = tf_export._tf()
    spec = spec_at(family, scale, large_rows)
    root = tf_export.artifact_dir(spec)
    vocab_dir = os.path.join(root, "saved_model", "assets")
    os.makedirs(vocab_dir, exist_ok=True)
    phases = []

    def phase(name, fn):
        _reset_peak()
        t = time.perf_counter()
        out = fn()
        rss, peak = _mem()
        phases.append({"phase": name, "s": round(time.perf_counter() - t, 2), "rss_gib": round(rss, 3),
                       "peak_gib": round(peak, 3)})
        print(f"  {name:10s} {phases[-1]['s']:8.1f} s  rss {rss:6.2f}  peak {peak:6.2f} GiB", flush=True)
        return out

    model, sig = phase("build", lambda: tf_export.build_keras(spec, vocab_dir=vocab_dir))
    mod = tf_export._serve_module(model, sig, spec, None)
    concrete = phase("trace", lambda: mod.serve.get_concrete_function())
    if keras_traces:  # the export before EXPORT_FORMAT 2, for comparison
        phase("save", lambda: tf.saved_model.save(mod, os.path.join(root, "saved_model"),
                                                  signatures={"serving_default": concrete}))
    else:
        phase("save", lambda: tf_export.save_serving(mod, os.path.join(root, "saved_model"), concrete))
    gd, _ = phase("freeze", lambda: freeze_with_tables(concrete))

    def write():
        with open(os.path.join(root, "model.pb"), "wb") as f:
            f.write(gd.SerializeToString())
    phase("write", write)
    sizes = {}
    for dirpath, _, files in os.walk(root):
        for fn in files:
            sizes[os.path.relpath(os.path.join(dirpath, fn), root)] = os.path.getsize(os.path.join(dirpath, fn))
    big = {k: round(v / 2**20, 1) for k, v in sizes.items() if v > 2**20}
    return {"family": family, "scale": scale, "keras_traces": keras_traces, "columns": len(spec.columns),
            "concat_width": spec.concat_width, "large_rows": large_rows, "phases": phases,
            "total_s": round(sum(p["s"] for p in phases), 1), "peak_gib": max(p["peak_gib"] for p in phases),
            "files_mib": big}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="f", choices=sorted(FAMILIES))
    ap.add_argument("--scales", default="0.1,0.2,0.4")
    ap.add_argument("--large-rows", type=int, default=4096)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    ap.add_argument("--tag", default="")
    ap.add_argument("--keras-traces", action="store_true",
                    help="save as before EXPORT_FORMAT 2 (tf_keras's layer traces on), for comparison")
    ap.add_argument("--one", type=float, help=argparse.SUPPRESS)  # child: profile one scale, print JSON last
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(profile_one(args.family, args.one, args.large_rows, args.keras_traces)))
        return
    rows = []
    for s in (float(x) for x in args.scales.split(",")):
        with tempfile.TemporaryDirectory(prefix="export_profile_") as tmp:
            env = dict(os.environ, RECOM_TVM_CACHE=tmp)
            print(f"{args.family} scale {s}:", flush=True)
            cmd = [sys.executable, __file__, "--family", args.family, "--one", str(s), "--large-rows",
                   str(args.large_rows)] + ["--keras-traces"] * args.keras_traces
            p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
            lines = p.stdout.strip().splitlines()
            print("\n".join(lines[:-1]), flush=True)
            if p.returncode:
                raise SystemExit(f"scale {s}: exit {p.returncode}")
            rows.append(json.loads(lines[-1]))
    import tensorflow as tf

    result = {"date": time.strftime("%Y-%m-%d"), "host": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "tf": tf.__version__, "keras_traces": args.keras_traces, "rows": rows}
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"export_profile_{result['date']}{args.tag}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print("\n| columns | concat | " + " | ".join(p["phase"] for p in rows[0]["phases"]) + " | total | peak RSS |")
    for r in rows:
        print(f"| {r['columns']} | {r['concat_width']} | " + " | ".join(f"{p['s']} s" for p in r["phases"])
              + f" | {r['total_s']} s | {r['peak_gib']:.2f} GiB |")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
