"""Requests per second and p50 / p99 latency through Triton Inference Server vs calling CompiledModel.run directly,
at 1 and 8 concurrent clients (closed loop: each client sends its next request when the last is answered).

    # this host (llvm): builds the demo model, exports a repository, starts tritonserver from .venv-triton
    python benchmarks/triton_serving.py local [--seconds 6] [--batches 1,64] [--json results/x.json]
    # a machine with .venv-triton's packages (nvidia-pytriton, tritonclient, apache-tvm) installed
    python benchmarks/triton_serving.py prepare --dir DIR --target cuda
    python3 benchmarks/triton_serving.py run --dir DIR --json $OUT/triton_serving_gpu.json
    # the GPU machine (runtime-only TVM, no nvidia-pytriton / tritonclient there): triton_gpu.py
    python benchmarks/triton_serving.py prepare-gpu --dir .device/triton      # build host
    bash .device/triton/run.sh                                                # GPU machine

Triton's perf_analyzer is not on this package index for this platform (only a placeholder 0.1.0 wheel), so the
load comes from recom_tvm.serving.client's bounded `bench` (threads, one tritonclient per thread, in the server's
venv). On a 2-core host the clients and the server share the cores: the Triton figures include the client's cost.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.dirname(os.path.abspath(__file__))]

from device_info import machine  # noqa: E402
from recom_tvm.serving.client import ClosedLoop, run_threads, save_requests, summarize  # noqa: E402


def _triton_python() -> str:
    """The server side's Python: $RECOM_TVM_TRITON_PYTHON, the checkout's .venv-triton, else this one."""
    venv = os.path.join(ROOT, ".venv-triton", "bin", "python")
    return os.environ.get("RECOM_TVM_TRITON_PYTHON") or (venv if os.path.exists(venv) else sys.executable)


def prepare(directory: str, target: str, batches: list[int], pool: int = 32) -> None:
    """Build the demo model, export the library and a Triton repository, write request pools per batch size."""
    import recom_tvm
    from recom_tvm.models import tf_export, zoo
    from recom_tvm.serving import export_triton, wire

    spec = zoo.demo()
    paths = tf_export.export(spec)
    mod, params, _ = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"])
    model = recom_tvm.build(recom_tvm.optimize(mod), target=target, params=params)
    os.makedirs(directory, exist_ok=True)
    model.export_library(os.path.join(directory, "demo.so"))
    export_triton(os.path.join(directory, "demo.so"), os.path.join(directory, "repo"), "demo")
    features = wire.features_json(model.spec)
    for b in batches:
        save_requests(os.path.join(directory, f"requests_b{b}.npz"),
                      [wire.to_wire(features, spec.sample(b, rng=1000 * b + i)) for i in range(pool)])
    with open(os.path.join(directory, "meta.json"), "w") as f:
        json.dump({"target": target, "batches": batches, "model": "demo"}, f)


def direct(model, requests: list, threads: int, seconds: float) -> dict:
    """CompiledModel.run from `threads` threads of this process, closed loop."""
    from recom_tvm.serving import wire

    features = wire.features_json(model.spec)
    feeds = [wire.from_wire(features, r) for r in requests]
    model.run(feeds[0])
    load = ClosedLoop(seconds)
    t0 = time.perf_counter()
    run_threads(lambda: load.drive(lambda i: model.run(feeds[i % len(feeds)])), threads)
    return summarize(load.latencies, time.perf_counter() - t0)


def through_triton(server, python: str, request_file: str, protocol: str, clients: int, seconds: float) -> dict:
    url = server.http_url if protocol == "http" else server.grpc_url
    before = _stats(server)
    res = subprocess.run([python, "-m", "recom_tvm.serving.client", "bench", "--url", url, "--model", "demo",
                          "--protocol", protocol, "--requests", request_file, "--concurrency", str(clients),
                          "--seconds", str(seconds), "--max-requests", "200000"],
                         capture_output=True, text=True, timeout=seconds + 300, env=dict(os.environ, PYTHONPATH=ROOT))
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-3000:])
    out = json.loads(res.stdout.strip().splitlines()[-1])
    after = _stats(server)
    runs = after["execution_count"] - before["execution_count"]
    out["requests_per_execution"] = round((after["inference_count"] - before["inference_count"]) / max(runs, 1), 2)
    return out


def _stats(server) -> dict:
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/demo/stats", timeout=10) as r:
        stats = json.load(r)["model_stats"][0]
    return {k: int(stats[k]) for k in ("inference_count", "execution_count")}


def run(directory: str, seconds: float, python: str) -> dict:
    from recom_tvm.runtime import load
    from recom_tvm.serving.client import load_requests
    from recom_tvm.serving.server import TritonServer

    with open(os.path.join(directory, "meta.json")) as f:
        meta = json.load(f)
    model = load(os.path.join(directory, "demo.so"))
    rows = []
    with TritonServer(os.path.join(directory, "repo"), python=python) as server:
        for b in meta["batches"]:
            request_file = os.path.join(directory, f"requests_b{b}.npz")
            requests = load_requests(request_file)
            for clients in (1, 8):
                rows.append({"batch": b, "clients": clients, "path": "direct run", **direct(model, requests, clients,
                                                                                            seconds)})
                for protocol in ("http", "grpc"):
                    rows.append({"batch": b, "clients": clients, "path": f"Triton {protocol}",
                                 **through_triton(server, python, request_file, protocol, clients, seconds)})
                    print(json.dumps(rows[-1]), flush=True)
    return {"date": datetime.date.today().isoformat(), "machine": machine(), "target": meta["target"],
            "model": "demo (7 columns, fused), rows per request = batch", "seconds_per_point": seconds,
            "server": "tritonserver 2.51 from nvidia-pytriton 0.7.0, Python backend, 1 instance, dynamic batching "
                      "(preferred 4 / 8 requests, 1 ms queue delay), requests merged by model.py",
            "load": "recom_tvm.serving.client bench (closed loop, one tritonclient per thread)", "rows": rows}


def table(result: dict) -> str:
    lines = ["| batch | clients | path | requests/s | p50 ms | p99 ms | requests per execution |",
             "|---:|---:|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['batch']} | {r['clients']} | {r['path']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r.get('requests_per_execution', '')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["local", "prepare", "run", "prepare-gpu", "run-gpu"])
    p.add_argument("--dir", default=None)
    p.add_argument("--target", default=None, choices=["llvm", "cuda"],
                   help="prepare: default llvm; prepare-gpu: default cuda (llvm: to try run-gpu on this host)")
    p.add_argument("--batches", default=None, help="default 1,64 (prepare-gpu: 1,64,512)")
    p.add_argument("--seconds", type=float, default=None, help="per point: default 6 (run-gpu: 3)")
    p.add_argument("--json", default=None)
    p.add_argument("--arch", default="sm_90", help="prepare-gpu: the CUDA arch")
    p.add_argument("--libpython", default=None,
                   help="prepare-gpu: a libpython3.12.so.1.0 (or Ubuntu's libpython3.12t64 .deb) to carry, for a "
                        "serving Python without one (see triton_pack.py)")
    p.add_argument("--server-tarball", default=None,
                   help="prepare-gpu: reuse a tarball written by triton_pack.py (else packed now: minutes)")
    p.add_argument("--stub-site", default=None,
                   help="prepare-gpu: reuse a tarball written by triton_pack.py --stub-site (else made now)")
    p.add_argument("--models", default=None, help="prepare-gpu / run-gpu: a comma list (default: demo,mixed24)")
    p.add_argument("--max-requests", type=int, default=20000, help="run-gpu: per point")
    args = p.parse_args(argv)
    if args.mode in ("prepare-gpu", "run-gpu"):
        return _gpu(args)
    batches = [int(b) for b in (args.batches or "1,64").split(",")]
    directory = args.dir or tempfile.mkdtemp(prefix="triton_bench_")
    if args.mode in ("local", "prepare"):
        prepare(directory, "llvm" if args.mode == "local" else args.target or "llvm", batches)
        if args.mode == "prepare":
            print(f"prepared {directory}")
            return 0
    result = run(directory, args.seconds or 6.0, _triton_python())
    print(table(result))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


def _gpu(args) -> int:
    import triton_gpu

    models = args.models.split(",") if args.models else None
    directory = args.dir or ".device/triton"
    if args.mode == "prepare-gpu":
        batches = tuple(int(b) for b in (args.batches or "1,64,512").split(","))
        triton_gpu.prepare(directory, args.arch, batches, libpython=args.libpython, models=models,
                           target=args.target or "cuda", server_tarball=args.server_tarball,
                           stub_tarball=args.stub_site)
        return 0
    result = triton_gpu.run(directory, seconds=args.seconds or 3.0,
                            max_requests=args.max_requests, models=models)
    print(triton_gpu.table(result))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0 if result["mismatches"] == 0 and result["bad_requests_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
