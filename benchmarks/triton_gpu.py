"""Triton on the GPU machine: prepared here (TF, the compiler, nvcc), run there with the TVM runtime only, the
machine's own Python 3.12, and a tritonserver repacked from the nvidia-pytriton wheel (triton_pack.py).

    # build host -> DIR (git-ignored, ~40 MiB): CUDA (sm_90) libraries of the demo and mixed-24 models in a
    # repository with 2 KIND_GPU instances each, request pools (16 per batch size, 4 at 512) with TF's answers,
    # the repacked server, the stub's site-packages (numpy 1.26 + Ubuntu's libpython3.12 as a fallback) and run.sh.
    # Packing takes ~10 min on 2 busy cores: --server-tarball / --stub-site reuse tarballs written before by
    # triton_pack.py. The .deb: see triton_pack.py (apt-get download libpython3.12t64 from Ubuntu noble-updates).
    python benchmarks/triton_serving.py prepare-gpu --dir .device/triton --libpython libpython3.12t64_*.deb
    # GPU machine, from the repository root, with the lead's .device/activate.sh + TVM runtime bundle beside DIR:
    bash .device/triton/run.sh                 # = source .device/activate.sh; python3 ... run-gpu --dir ...

run-gpu: unpacks the server and the stub's site to /tmp, starts the server on loopback in its own process group
(ended at exit), waits for readiness, checks every pooled request's answer through Triton HTTP and through
CompiledModel.run on CUDA against TensorFlow's (0 mismatches required, exit 1 otherwise) and a bad request
(answered with an error, the server then still answers), then times direct `run` vs Triton HTTP at 1 and 8
clients (closed loop, bounded by seconds and a request count) and writes $OUT/triton_serving_gpu.json. The
client is triton_http.py (stdlib + numpy): the GPU machine has no tritonclient.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (ROOT, os.path.dirname(os.path.abspath(__file__))):
    if _p not in sys.path:
        sys.path.insert(0, _p)

TOLERANCE = 1e-4  # as gpu_correctness.py: float32 CUDA vs TF on CPU
SERVER_TARBALL = "tritonserver_py312.tar.xz"
STUB_TARBALL = "stub_site_py312.tar.xz"


def _models() -> dict:
    from recom_tvm.models import zoo

    return {"demo": zoo.demo(), "mixed24": zoo.mixed(24, seed=3)}


# ------------------------------------------------------------------------------------------------ build host
def prepare(directory: str, arch: str = "sm_90", batches: tuple[int, ...] = (1, 64, 512), pool: int = 16,
            instances: int = 2, python_version: str = "3.12", libpython: str | None = None,
            models: list[str] | None = None, target: str = "cuda", server_tarball: str | None = None,
            stub_tarball: str | None = None) -> dict:
    """Everything run-gpu needs, into `directory` (replaced). target="llvm" makes the same folder for a try of
    run-gpu on a host without a GPU (KIND_CPU instances)."""
    import recom_tvm
    import triton_pack
    from recom_tvm.models import tf_export
    from recom_tvm.serving import export_triton, wire
    from recom_tvm.serving.client import save_requests

    recom_tvm.config.cuda_arch = arch
    instances = instances if target == "cuda" else 1
    if os.path.isdir(directory):
        shutil.rmtree(directory)
    os.makedirs(directory)
    specs = {k: v for k, v in _models().items() if not models or k in models}
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in specs.items():
            t0 = time.perf_counter()
            paths = tf_export.export(spec)
            ref = tf_export.TFReference(spec, paths)
            mod, params, _ = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"])
            model = recom_tvm.build(recom_tvm.optimize(mod), target, params)
            lib = os.path.join(tmp, f"{name}.so")
            model.export_library(lib)
            export_triton(lib, os.path.join(directory, "repo"), name, instances=instances)
            features = wire.features_json(model.spec)
            for b in batches:
                feeds = [spec.sample(b, rng=1000 * b + i) for i in range(pool if b <= 64 else max(pool // 4, 1))]
                save_requests(os.path.join(directory, f"{name}_b{b}.npz"), [wire.to_wire(features, f) for f in feeds],
                              compress=True)
                np.savez(os.path.join(directory, f"{name}_b{b}.ref.npz"),
                         **{str(i): np.asarray(ref(f), np.float32) for i, f in enumerate(feeds)})
            print(f"{name}: built for {target}, request pools and TF's answers for batches {list(batches)} "
                  f"({time.perf_counter() - t0:.0f}s)", flush=True)
    pytriton = None if server_tarball else triton_pack.pytriton_dir(
        os.environ.get("RECOM_TVM_TRITON_PYTHON") or os.path.join(ROOT, ".venv-triton", "bin", "python"))
    if server_tarball:  # one packed before (packing takes minutes on 2 cores)
        shutil.copyfile(server_tarball, os.path.join(directory, SERVER_TARBALL))
        with tarfile.open(server_tarball) as tar:
            manifest = json.load(tar.extractfile("tritonserver/manifest.json"))
    else:
        manifest = triton_pack.pack(os.path.join(directory, SERVER_TARBALL), pytriton, python_version)
    if stub_tarball:
        shutil.copyfile(stub_tarball, os.path.join(directory, STUB_TARBALL))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            triton_pack.pack_stub_site(os.path.join(directory, STUB_TARBALL),
                                       triton_pack.download_stub_wheels(tmp, python_version), libpython,
                                       python_version)
    with tarfile.open(os.path.join(directory, STUB_TARBALL)) as tar:
        carried_libpython = any(n.startswith("libpython/") for n in tar.getnames())
    meta = {"target": target, "arch": arch, "batches": list(batches), "pool": pool, "instances": instances,
            "models": list(specs), "python_version": python_version, "server_system_libs": manifest["system_libs"],
            "libpython_carried": carried_libpython,
            "prepared": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    with open(os.path.join(directory, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    rel = os.path.relpath(os.path.abspath(directory), ROOT)
    with open(os.path.join(directory, "run.sh"), "w") as f:
        f.write(RUN_SH.replace("@DIR@", rel))
    size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(directory, "**"), recursive=True)
               if os.path.isfile(p))
    print(f"prepared {directory}: {size / 2**20:.1f} MiB")
    return meta


RUN_SH = """#!/usr/bin/env bash
# GPU machine, from the repository root: the Triton benchmark (written by triton_serving.py prepare-gpu)
set -uo pipefail
DIR=@DIR@
OUT=${OUT:-/tmp/triton_out}; mkdir -p "$OUT"
source "$DIR/../activate.sh" || { echo "missing $DIR/../activate.sh (the TVM runtime bundle)"; exit 2; }
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 benchmarks/triton_serving.py run-gpu --dir "$DIR" --json "$OUT/triton_serving_gpu.json" 2>&1 \\
    | tee "$OUT/triton_serving_gpu.log"
"""


# ------------------------------------------------------------------------------------------------ GPU machine
def unpack_server(directory: str, dest: str) -> str:
    """The repacked server under dest -> its tritonserver/ directory."""
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    with tarfile.open(os.path.join(directory, SERVER_TARBALL)) as tar:
        _extract(tar, dest)
    return os.path.join(dest, "tritonserver")


def _extract(tar: tarfile.TarFile, dest: str) -> None:
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="tar")
    else:
        tar.extractall(dest)


def stub_env(directory: str, dest: str) -> tuple[str, list[str]]:
    """A venv-like prefix for the Python backend stub: this Python's base interpreter with the carried
    site-packages (numpy 1.26: the stubs break with numpy 2) -> (its python3, extra LD_LIBRARY_PATH dirs).

    The stub's interpreter runs isolated and finds its prefix from the `python3` first on PATH (TritonServer puts
    this one's bin/ first), its pyvenv.cfg and the base Python's standard library. The carried libpython is used
    only if this machine has no libpythonX.Y.so.1.0 of its own (the stub links it)."""
    import subprocess
    import sysconfig

    version = "%d.%d" % sys.version_info[:2]
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    site = os.path.join(dest, "lib", f"python{version}")
    os.makedirs(site)
    os.makedirs(os.path.join(dest, "bin"))
    with tarfile.open(os.path.join(directory, STUB_TARBALL)) as tar:
        _extract(tar, site)
    if os.path.isdir(os.path.join(site, "libpython")):
        shutil.move(os.path.join(site, "libpython"), os.path.join(dest, "libpython"))
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    with open(os.path.join(dest, "pyvenv.cfg"), "w") as f:
        f.write(f"home = {os.path.dirname(base)}\ninclude-system-site-packages = false\n"
                f"version = {'.'.join(map(str, sys.version_info[:3]))}\n")
    python = os.path.join(dest, "bin", "python3")
    os.symlink(base, python)
    name = f"libpython{version}.so.1.0"
    if os.path.exists(os.path.join(sysconfig.get_config_var("LIBDIR") or "", name)):
        return python, []
    try:
        if name in subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=30).stdout:
            return python, []
    except (OSError, subprocess.SubprocessError):
        pass
    carried = os.path.join(dest, "libpython")
    if os.path.exists(os.path.join(carried, name)):
        return python, [carried]
    raise RuntimeError(f"no {name} here (the Python backend stub links it) and none carried: prepare-gpu "
                       "--libpython (see triton_pack.py)")


def link_runtime(repository: str, packages: tuple[str, ...] = ("tvm", "tvm_ffi")) -> list[str]:
    """Link the TVM runtime this process imports (from PYTHONPATH: the device's bundle) into each model's python/
    directory: the Python backend's interpreter ignores PYTHONPATH, and model.py puts python/ on sys.path."""
    import importlib.util

    linked = []
    for pkg in packages:
        origin = os.path.dirname(importlib.util.find_spec(pkg).origin)
        for bundle in glob.glob(os.path.join(repository, "*", "*", "python")):
            dest = os.path.join(bundle, pkg)
            if os.path.islink(dest):
                os.unlink(dest)
            if not os.path.exists(dest):
                os.symlink(origin, dest)
                linked.append(dest)
    return linked


def check(url: str, name: str, model, requests: list, refs: list, features) -> dict:
    """Every request through Triton HTTP and through `model.run` vs TF's answer -> counts and worst errors."""
    from recom_tvm.serving import wire
    from triton_http import replay

    answers = replay(url, name, requests, concurrency=4)
    out = {"requests": len(requests), "mismatches": 0, "triton_max_abs_err": 0.0, "direct_max_abs_err": 0.0,
           "errors": []}
    for req, ref, ans in zip(requests, refs, answers):
        direct = model.run(wire.from_wire(features, req))["score"]
        for key, got in (("triton", None if isinstance(ans, str) else ans["score"][0]), ("direct", direct)):
            if got is None:
                out["mismatches"] += 1
                out["errors"].append(ans[:200])
                continue
            err = float(np.abs(got - ref).max()) if got.size else 0.0
            ok = got.shape == ref.shape and np.isfinite(got).all() and err < TOLERANCE
            out["mismatches"] += not ok
            out[f"{key}_max_abs_err"] = max(out[f"{key}_max_abs_err"], err)
    return out


def bad_request(url: str, name: str, request: dict) -> dict:
    """A request without one of its tensors, then a good one: our error comes back, the server keeps serving."""
    from triton_http import TritonError, TritonHTTP

    client = TritonHTTP(url, name)
    try:
        broken = dict(request)
        broken.pop(next(iter(broken)))
        try:
            client.infer(broken)
            result = {"rejected": False, "message": ""}
        except TritonError as err:
            result = {"rejected": True, "status": err.status, "message": str(err)[:200]}
        result["served_after"] = "score" in client.infer(request)
        return result
    finally:
        client.close()


def direct(model, feeds: list, threads: int, seconds: float, max_requests: int) -> tuple[list, int, float]:
    """CompiledModel.run from `threads` threads, closed loop, bounded like triton_http.bench."""
    from recom_tvm.serving.client import ClosedLoop, run_threads

    model.run(feeds[0])
    load = ClosedLoop(seconds, max_requests)
    t0 = time.perf_counter()
    run_threads(lambda: load.drive(lambda i: model.run(feeds[i % len(feeds)])), threads)
    return load.latencies, 0, time.perf_counter() - t0


def run(directory: str, seconds: float = 3.0, max_requests: int = 20000, models: list[str] | None = None,
        batches: list[int] | None = None, server_dir: str = "/tmp/recom_tvm_tritonserver") -> dict:
    from recom_tvm.runtime import load
    from recom_tvm.serving import wire
    from recom_tvm.serving.client import load_requests, summarize
    from recom_tvm.serving.server import TritonServer
    from triton_http import bench

    with open(os.path.join(directory, "meta.json")) as f:
        meta = json.load(f)
    version = "%d.%d" % sys.version_info[:2]
    t_start = time.perf_counter()
    dist = unpack_server(directory, server_dir)
    python, extra = stub_env(directory, server_dir + "_stubenv")
    env = {"LD_LIBRARY_PATH": ":".join(extra + [p for p in [os.environ.get("LD_LIBRARY_PATH")] if p])}
    link_runtime(os.path.join(directory, "repo"))
    models = [m for m in meta["models"] if not models or m in models]
    batches = batches or meta["batches"]
    checks, rows = {}, []
    with TritonServer(os.path.join(directory, "repo"), python=python, dist=dist, env=env,
                      startup_timeout=240) as server:
        t_ready = time.perf_counter() - t_start
        print(f"tritonserver ready in {t_ready:.1f}s (python {version}, libpython "
              f"{'carried' if extra else 'of this machine'})", flush=True)
        for name in models:
            model = load(os.path.join(directory, "repo", name, "1", "recom_model.so"))
            features = wire.features_json(model.spec)
            for b in batches:
                requests = load_requests(os.path.join(directory, f"{name}_b{b}.npz"))
                with np.load(os.path.join(directory, f"{name}_b{b}.ref.npz")) as data:
                    refs = [data[str(i)] for i in range(len(requests))]
                checks[f"{name}/b{b}"] = c = check(server.http_url, name, model, requests, refs, features)
                print(f"check {name} b{b}: {c['requests']} requests, {c['mismatches']} mismatches, max |err| "
                      f"triton {c['triton_max_abs_err']:.2e} direct {c['direct_max_abs_err']:.2e}", flush=True)
            checks[f"{name}/bad_request"] = bad_request(server.http_url, name, requests[0])
            print(f"bad request {name}: {checks[f'{name}/bad_request']}", flush=True)
            for b in batches:
                requests = load_requests(os.path.join(directory, f"{name}_b{b}.npz"))
                feeds = [wire.from_wire(features, r) for r in requests]
                for clients in (1, 8):
                    for path in ("direct run", "Triton http"):
                        before = _stats(server.http_url, name)
                        lat, errors, wall = (direct(model, feeds, clients, seconds, max_requests)
                                             if path == "direct run" else
                                             bench(server.http_url, name, requests, clients, seconds, max_requests))
                        row = {"model": name, "batch": b, "clients": clients, "path": path,
                               **summarize(lat, wall, errors)}
                        if path != "direct run":
                            after = _stats(server.http_url, name)
                            runs = after["execution_count"] - before["execution_count"]
                            row["requests_per_execution"] = round(
                                (after["inference_count"] - before["inference_count"]) / max(runs, 1), 2)
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    mismatches = sum(c.get("mismatches", 0) for c in checks.values())
    bad_ok = all(c["rejected"] and c["served_after"] for k, c in checks.items() if k.endswith("bad_request"))
    from device_info import gpu_name, machine

    return {"date": datetime.date.today().isoformat(), "device": gpu_name(), "machine": machine(),
            "server": "tritonserver 2.51 (nvidia-pytriton 0.7.0's, repacked), Python backend on Python "
                      f"{version}, {meta['instances']} {'KIND_GPU' if meta['target'] == 'cuda' else 'KIND_CPU'} instances per model, dynamic batching (preferred "
                      "4 / 8 requests, 1 ms queue delay), requests merged by model.py",
            "load": "benchmarks/triton_http.py (stdlib HTTP + binary tensors, one connection per client thread, "
                    "closed loop, same process as the direct runs)",
            "seconds_per_point": seconds, "max_requests_per_point": max_requests, "prepared": meta,
            "server_ready_s": round(t_ready, 1), "libpython_carried": bool(extra), "checks": checks, "mismatches": mismatches,
            "bad_requests_ok": bad_ok, "rows": rows, "total_s": round(time.perf_counter() - t_start, 1)}


def _stats(url: str, name: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://{url}/v2/models/{name}/stats", timeout=10) as r:
        stats = json.load(r)["model_stats"][0]
    return {k: int(stats[k]) for k in ("inference_count", "execution_count")}


def table(result: dict) -> str:
    lines = ["| model | batch | clients | path | requests/s | p50 ms | p99 ms | requests per execution |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['batch']} | {r['clients']} | {r['path']} | {r['rps']:.0f} | "
                     f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r.get('requests_per_execution', '')} |")
    lines.append(f"\n{result['device']}; answers: {result['mismatches']} mismatches vs TF; bad requests "
                 f"{'rejected, server kept serving' if result['bad_requests_ok'] else 'NOT handled as expected'}; "
                 f"total {result['total_s']}s")
    return "\n".join(lines)
