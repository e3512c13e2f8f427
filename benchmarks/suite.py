"""The benchmark suite (RECom's Figure 1, against real baselines): one command on the build host, one on the GPU.

    # build host (TensorFlow + compiler + nvcc, no GPU needed): every system of every model built for CUDA, TF-CPU
    # latency and compile times measured here
    python benchmarks/suite.py host --dir .device/suite [--models e,f,mixed100,...] [--arch sm_90]
    # GPU machine (TVM runtime + PyTorch; ../shared/device/stage_runtime.sh builds the runtime bundle)
    python benchmarks/suite.py gpu --dir .device/suite --out results/
    # anywhere: tables into BENCHMARKS.md, the figure into results/
    python benchmarks/suite.py report --host results/suite_host_DATE.json --gpu results/suite_gpu_CARD_DATE.json

Models, systems and what is measured: suite_models.py, suite_gpu.py, suite_host.py.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

DEFAULT_MODELS = "e,f,mixed100,mixed1000,sweep10,sweep30,sweep300,sweep2000"


def host(out_dir: str, models: list[str], arch: str, results: str, tf: bool, target: str = "cuda") -> int:
    from suite_host import host_info, tf_cpu_latency
    from suite_models import MODELS, build_model, model_paths
    from tune_models import work_dir

    res = {"date": time.strftime("%Y-%m-%d"), "host": host_info(), "models": {}}
    path = os.path.join(results, f"suite_host_{res['date']}.json")
    if os.path.exists(path):  # add to the day's results
        with open(path) as f:
            res["models"] = json.load(f).get("models", {})
    for name in models:
        m = MODELS[name]
        print(f"== {name} ({m.columns} columns)", flush=True)
        tuning = work_dir({"model_e": "e", "model_f": "f"}[m.factory]) if m.full_size else None
        info = build_model(m, os.path.join(out_dir, name), arch, tuning, target)
        entry = {"columns": info["columns"], "compile": {k: v["times"] for k, v in info["variants"].items()},
                 "kernels": {k: v["kernel_launches_static"] for k, v in info["variants"].items()},
                 "relax_ops": {k: v["relax_ops"] for k, v in info["variants"].items()},
                 "tf_export_s": info["tf_export_s"]}
        if tf:
            entry["tf_cpu"] = tf_cpu_latency(m, model_paths(m))
        res["models"][name] = entry
        os.makedirs(results, exist_ok=True)
        if os.path.exists(path):  # another host run of the day may have added models meanwhile: keep them
            with open(path) as f:
                res["models"] = {**json.load(f).get("models", {}), name: entry}
        with open(path, "w") as f:
            json.dump(res, f, indent=1)
    print(f"host results: {path}")
    return 0


def gpu(in_dir: str, out_dir: str, iters: int, only: list[str] | None) -> int:
    sys.path.insert(0, HERE)
    from device_info import gpu_name

    os.makedirs(out_dir, exist_ok=True)
    card = gpu_name()
    res = {"device": card, "date": time.strftime("%Y-%m-%d"), "models": {}}
    bad = 0
    for d in sorted(glob.glob(os.path.join(in_dir, "*", "model.json"))):
        name = os.path.basename(os.path.dirname(d))
        if only and name not in only:
            continue
        out = os.path.join(out_dir, f"suite_gpu_{name}.json")
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, os.path.join(HERE, "suite_gpu.py"), os.path.dirname(d), out,
                              "--iters", str(iters)])
        bad += rc != 0
        if os.path.exists(out):
            with open(out) as f:
                res["models"][name] = json.load(f)
        res["models"].setdefault(name, {})["wall_s"] = round(time.perf_counter() - t0, 1)
        res["models"][name]["rc"] = rc
    tag = "".join(ch for ch in card.lower().replace("nvidia ", "") if ch.isalnum())
    path = os.path.join(out_dir, f"suite_gpu_{tag}_{res['date']}.json")
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    print(f"gpu results: {path} ({bad} model(s) failed)")
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["host", "gpu", "report"])
    p.add_argument("--dir", default=".device/suite")
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--arch", default="sm_90")
    p.add_argument("--results", default=os.path.join(HERE, "results"))
    p.add_argument("--no-tf", action="store_true", help="host: skip the TF-CPU measurements")
    p.add_argument("--target", default="cuda", help="host: llvm builds a dry run of the GPU part for this host")
    p.add_argument("--out", default=os.environ.get("OUT", "."))
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--host", default=None, help="report: the host results JSON")
    p.add_argument("--gpu", default=None, help="report: the GPU results JSON")
    a = p.parse_args()
    models = a.models.split(",")
    if a.mode == "host":
        return host(a.dir, models, a.arch, a.results, not a.no_tf, a.target)
    if a.mode == "gpu":
        return gpu(a.dir, a.out, a.iters, models if a.models != DEFAULT_MODELS else None)
    from suite_report import report

    return report(a.host, a.gpu, a.results)


if __name__ == "__main__":
    sys.exit(main())
