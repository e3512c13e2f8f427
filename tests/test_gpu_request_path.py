"""benchmarks/gpu_request_path.py (the GPU run of the dense tail and CUDA graphs) checked on this host: `prepare
--target llvm` builds every variant for the CPU, `run` without PyTorch takes numpy weights and goes through the
same steps (every variant against the numpy reference on both sides of the bucket edges and the graph cap, the
graph sequence, set_params, timings, the JSON)."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_request_path.py")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, env=env, timeout=900)


def test_request_path_run_on_the_cpu(tmp_path):
    d, out = str(tmp_path / "rp"), str(tmp_path / "out")
    res = _run("prepare", "--target", "llvm", "--dir", d, "--models", "demo")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    info = json.load(open(os.path.join(d, "demo", "model.json")))
    assert info["target"] == "llvm"
    assert sorted(info["variants"]) == ["default_graph", "dense", "dense_graph", "tvm_default"]
    res = _run("run", "--dir", d, "--models", "demo", "--iters", "1", "--time-batches", "1,33", "--out", out)
    assert res.returncode == 0 and "all outputs match the reference" in res.stdout, \
        res.stdout[-3000:] + res.stderr[-3000:]
    (path,) = glob.glob(os.path.join(out, "gpu_request_path_cpu_*.json"))
    m = json.load(open(path))["models"]["demo"]
    assert m["failures"] == 0
    # 7 batches + the graph cap and one above, plain and hostile, 4 variants
    assert len(m["checks"]) == 9 * 2 * 4 and all(c["ok"] for c in m["checks"].values())
    assert len(m["graph_sequence"]) == 10 and all(g["ok"] for g in m["graph_sequence"])
    assert sum(g.get("after_set_params", False) for g in m["graph_sequence"]) == 2
    assert set(m["batches"]) == {"1", "33"}
    for row in m["batches"].values():
        assert all(row[f"{v}_device"] > 0 and row[f"{v}_run"] > 0 for v in info["variants"]), row
