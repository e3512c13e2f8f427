"""recom_tvm models behind the real Triton Inference Server (the nvidia-pytriton wheel's tritonserver, on loopback,
in .venv-triton: ci/install.sh): the exported repository loaded by `tritonserver --model-repository`, HTTP and
gRPC clients, ordinary and hostile requests, answers equal to CompiledModel.run and to TF, concurrent clients with
dynamic batching, bad requests followed by good ones, the runtime-only backend, and the PyTriton binding.
Request counts and times are bounded; every server runs in its own process group, ended at teardown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

import numpy as np
import pytest
from test_runtime_only import BLOCK_IMPORTS
from test_triton_repository import defaults_model, defaults_requests

from recom_tvm.models import zoo
from recom_tvm.serving import wire
from recom_tvm.serving.client import save_requests
from recom_tvm.serving.repository import export_triton
from recom_tvm.serving.server import TritonServer, free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {"demo": zoo.demo, "examples": zoo.example_mix, "vocab": zoo.vocab_mix, "crossed": zoo.crossed_mix}


@pytest.fixture(scope="module")
def triton_python():
    python = os.environ.get("RECOM_TVM_TRITON_PYTHON") or os.path.join(ROOT, ".venv-triton", "bin", "python")
    if not os.path.exists(python):
        pytest.fail(f"{python} is missing: `bash ci/install.sh` creates .venv-triton (tritonserver, PyTriton, "
                    "tritonclient); or set RECOM_TVM_TRITON_PYTHON")
    return python


@pytest.fixture(scope="module")
def models(compiled):
    return {name: compiled(factory(), optimized=True) for name, factory in MODELS.items()}


@pytest.fixture(scope="module")
def defaults(tmp_path_factory):
    """(model, TF reference) of a model with placeholder_with_default inputs (optional Triton inputs)."""
    return defaults_model(str(tmp_path_factory.mktemp("defaults") / "sm"))


@pytest.fixture(scope="module")
def served(models, defaults, triton_python, tmp_path_factory):
    """One tritonserver serving every model's exported repository. Each model.py gets the runtime-only import
    blocker put in front (the backend's Python runs isolated: no PYTHONPATH, so no sitecustomize of ours), so
    a model that imported the compiler, TF or SymEngine would fail to load."""
    tmp = tmp_path_factory.mktemp("triton")
    repo = str(tmp / "repo")
    for name, c in models.items():
        export_triton(c.model, repo, name)
    # the same model with a long queue delay: on 2 cores our clients, not the server, are the bottleneck, so the
    # batcher must wait for a preferred batch to see one
    export_triton(models["demo"].model, repo, "demo_batched", max_queue_delay_us=20_000)
    export_triton(defaults[0], repo, "defaults", max_queue_delay_us=20_000)
    marker = tmp / "blocker_ran"
    for name in os.listdir(repo):
        path = os.path.join(repo, name, "1", "model.py")
        with open(path) as f:
            source = f.read()
        with open(path, "w") as f:
            f.write(BLOCK_IMPORTS + f"open({str(marker)!r}, 'a').close()\n" + source)
    server = TritonServer(repo, python=triton_python, env={"RECOM_TVM_MAX_BATCH": "4096"})
    server.start()
    try:
        yield server, marker, tmp
    finally:
        pgid = server.process.pid
        server.stop()
        _assert_group_gone(pgid)


def _assert_group_gone(pgid: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # killed members may take a moment to be reaped
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise AssertionError(f"processes of the server's group {pgid} outlived it")


def _replay(python: str, url: str, model: str, protocol: str, requests: list, tmp, concurrency: int = 1) -> list:
    """Send wire requests from the server's venv (tritonclient) -> per request: {output: array} or error text."""
    stamp = f"{model}_{protocol}_{time.monotonic_ns()}"
    req, out = str(tmp / f"{stamp}_req.npz"), str(tmp / f"{stamp}_out.npz")
    save_requests(req, requests)
    res = subprocess.run([python, "-m", "recom_tvm.serving.client", "replay", "--url", url, "--model", model,
                          "--protocol", protocol, "--requests", req, "--out", out, "--concurrency", str(concurrency)],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
    assert res.returncode == 0, res.stderr[-3000:]
    results: list = [{} for _ in requests]
    with np.load(out, allow_pickle=False) as data:
        for key in data.files:
            if "|" in key:
                i, name = key.split("|")
                results[int(i)] = data[key].tobytes().decode() if name == "!error" else {**results[int(i)],
                                                                                          name: data[key]}
    return results


def _check(c, feeds: dict, got, what: str) -> None:
    """Triton's answer equals CompiledModel.run's and TF's; or all three refuse the request."""
    try:
        exp_tf = c.ref(feeds)
    except Exception as err:  # noqa: BLE001
        exp_tf = err
    try:
        exp_run = c.model.run(feeds)["score"]
    except Exception as err:  # noqa: BLE001
        exp_run = err
    if isinstance(got, str):
        assert isinstance(exp_tf, Exception) and isinstance(exp_run, Exception), f"{what}: Triton said {got}"
        assert str(exp_run) in got, f"{what}: {got!r} does not carry recom_tvm's message {str(exp_run)!r}"
        return
    assert not isinstance(exp_run, Exception), f"{what}: run raised {exp_run!r} but Triton answered"
    score = got["score"][0]
    np.testing.assert_array_equal(score, exp_run, err_msg=what)
    np.testing.assert_allclose(score, exp_tf, rtol=1e-5, atol=2e-5, err_msg=what)


def _wire(c, feeds: dict) -> dict:
    return wire.to_wire(wire.features_json(c.model.spec), feeds)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_every_model_answers_like_run_and_tf(served, models, triton_python, protocol):
    server, _, tmp = served
    url = server.http_url if protocol == "http" else server.grpc_url
    for name, c in models.items():
        spec = c.spec
        feeds = [spec.sample(b, rng=10 * b + h, hostile=bool(h)) for b, h in ((1, 0), (7, 1), (64, 0), (64, 1))]
        got = _replay(triton_python, url, name, protocol, [_wire(c, f) for f in feeds], tmp)
        for i, (f, g) in enumerate(zip(feeds, got)):
            _check(c, f, g, f"{name} request {i} over {protocol}")


def test_bad_requests_get_errors_and_the_server_keeps_serving(served, models, triton_python):
    server, _, tmp = served
    c = models["demo"]
    spec = c.spec
    good = [spec.sample(5, rng=i) for i in range(4)]
    out_of_range = dict(good[0])
    idx, vals, shape = out_of_range["category"]
    out_of_range["category"] = (idx, np.full_like(vals, 57), shape)  # the table has 50 rows: TF's GatherV2 error
    outside = dict(good[1])
    idx, vals, shape = outside["tags"]
    outside["tags"] = (idx + np.array([9, 0]), vals, shape)  # rows past dense_shape
    uneven = dict(good[2], age=np.zeros((3, 1), np.float32))
    too_big = spec.sample(4100, rng=5)  # the server runs with RECOM_TVM_MAX_BATCH=4096
    runtime_bad = [out_of_range, outside, uneven, too_big]
    w = [_wire(c, f) for f in good]
    wrong_dtype = dict(w[0], age=w[0]["age"].astype(np.float64))
    missing = {k: v for k, v in w[1].items() if k != "price"}
    wrong_rank = dict(w[2], **{"tags.dense_shape": np.array([[5, 2, 1]])})
    two_requests = {k: np.concatenate([v, v]) for k, v in w[3].items()}  # request dim 2: not our format
    requests = []
    for bad in [_wire(c, f) for f in runtime_bad] + [wrong_dtype, missing, wrong_rank, two_requests]:
        requests += [bad, w[len(requests) // 2 % 4]]  # each bad one followed by a good one
    for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
        got = _replay(triton_python, url, "demo", protocol, requests, tmp)
        for i in range(0, 6, 2):
            _check(c, runtime_bad[i // 2], got[i], f"bad request {i // 2} over {protocol}")
        assert "RequestTooLargeError" in got[6] and "above the serving limit 4096" in got[6]
        assert "data-type is 'FP64', but model 'demo' expects 'FP32'" in got[8]
        assert "price" in got[10] and "unexpected shape for input 'tags.dense_shape'" in got[12]
        assert "leading request dimension of 1" in got[14]
        for i in range(1, len(requests), 2):
            _check(c, good[i // 2 % 4], got[i], f"good request after bad one {i // 2} over {protocol}")
    ex = models["examples"]
    bad_example = {"examples": np.array([b"\x08\x96\x01garbage"], dtype=object)}
    fine = ex.spec.sample(3, rng=1)
    got = _replay(triton_python, server.http_url, "examples", "http", [_wire(ex, bad_example), _wire(ex, fine)], tmp)
    assert isinstance(got[0], str) and "Could not parse example input" in got[0]
    _check(ex, fine, got[1], "tf.Example request after a bad one")


def test_stdlib_http_client_agrees_with_tritonclient(served, models, triton_python):
    """benchmarks/triton_http.py (stdlib + numpy: the GPU machine's client) sends the same bytes' worth as
    tritonclient: equal answers, BYTES inputs included, and the server's message for a bad request."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from triton_http import replay

    server, _, tmp = served
    for name in ("demo", "examples"):
        c = models[name]
        requests = [_wire(c, c.spec.sample(b, rng=70 + b)) for b in (1, 9, 64)]
        requests.append({k: v for k, v in requests[0].items() if k != next(iter(requests[0]))})  # a tensor missing
        ours = replay(server.http_url, name, requests, concurrency=2)
        theirs = _replay(triton_python, server.http_url, name, "http", requests, tmp)
        for i, (a, b) in enumerate(zip(ours, theirs)):
            if isinstance(b, str):
                assert isinstance(a, str) and a in b, f"{name} request {i}: {a!r} vs tritonclient's {b!r}"
                continue
            assert not isinstance(a, str), f"{name} request {i}: {a}"
            assert a.keys() == b.keys()
            for k in b:
                assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name} request {i} output {k}")
        assert isinstance(ours[-1], str) and repr(next(iter(requests[0]))) in ours[-1], ours[-1]


def test_concurrent_clients_with_dynamic_batching(served, models, triton_python):
    server, _, tmp = served
    c = models["demo"]
    feeds = [c.spec.sample(int(b), rng=1000 + i) for i, b in enumerate(np.tile([16, 32, 24], 16))]
    feeds[5] = dict(feeds[5], age=np.zeros((2, 1), np.float32))  # bad requests inside the batches
    idx, vals, shape = feeds[17]["category"]
    feeds[17] = dict(feeds[17], category=(idx, np.full_like(vals, 99), shape))
    before = _stats(server, "demo_batched")
    got = _replay(triton_python, server.grpc_url, "demo_batched", "grpc", [_wire(c, f) for f in feeds], tmp,
                  concurrency=8)
    for i, (f, g) in enumerate(zip(feeds, got)):
        _check(c, f, g, f"concurrent request {i}")
    assert isinstance(got[5], str) and isinstance(got[17], str)
    after = _stats(server, "demo_batched")
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert inferences == len(feeds) and executions < inferences, (inferences, executions)  # batches of > 1
    with urllib.request.urlopen(server.metrics_url, timeout=10) as r:
        metrics = r.read().decode()
    merged = [float(line.split()[-1]) for line in metrics.splitlines()
              if line.startswith('recom_tvm_merged_requests_total{model="demo_batched"}')]
    assert merged and merged[0] > 0, metrics[-2000:]


def test_inputs_with_defaults_may_be_left_out(served, defaults, triton_python):
    """A model with placeholder_with_default inputs behind tritonserver: requests leaving them out (optional
    inputs in config.pbtxt) get the defaults' answer, fed ones theirs, from concurrent clients (the batcher may
    group them); every answer equals TF's and run()'s."""
    server, _, tmp = served
    model, reference = defaults
    features = wire.features_json(model.spec)
    reqs = defaults_requests(np.random.default_rng(5)) * 3
    got = _replay(triton_python, server.grpc_url, "defaults", "grpc", [wire.to_wire(features, r) for r in reqs],
                  tmp, concurrency=4)
    for i, (feeds, out) in enumerate(zip(reqs, got)):
        assert not isinstance(out, str), f"request {i}: {out}"
        exp, run = reference(feeds), model.run(feeds)
        for name in ("emb", "score"):
            np.testing.assert_array_equal(out[name][0], run[name], err_msg=f"request {i} {name}")
            np.testing.assert_allclose(out[name][0], exp[name], rtol=1e-5, atol=2e-5, err_msg=f"request {i}")


def _stats(server, model: str) -> dict:
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{model}/stats", timeout=10) as r:
        stats = json.load(r)["model_stats"][0]
    return {k: int(stats[k]) for k in ("inference_count", "execution_count")}


def test_the_backend_runs_on_the_tvm_runtime_only(served):
    server, marker, _ = served
    assert marker.exists(), "the import blocker did not run in the Python backend"
    stubs = [p for p in os.listdir("/proc") if p.isdigit() and _in_group(int(p), server.process.pid)
             and "triton_python_backend_stub" in _read(f"/proc/{p}/cmdline")]
    assert len(stubs) >= len(MODELS) + 1, stubs
    for pid in stubs:
        maps = _read(f"/proc/{pid}/maps")
        assert "libtvm_runtime.so" in maps, "the stub did not load the TVM runtime"
        assert "/libtvm.so" not in maps and "libtensorflow" not in maps and "symengine" not in maps


def _in_group(pid: int, pgid: int) -> bool:
    try:
        return os.getpgid(pid) == pgid
    except OSError:
        return False


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def test_pytriton_binding(models, triton_python, tmp_path):
    c = models["demo"]
    lib = str(tmp_path / "demo.so")
    c.model.export_library(lib)
    http, grpc, metrics = free_ports(3)
    script = textwrap.dedent(f"""
        from recom_tvm.serving import pytriton
        triton = pytriton({lib!r}, "demo", http_port={http}, grpc_port={grpc}, metrics_port={metrics})
        try:
            triton.serve()
        except KeyboardInterrupt:
            pass
        finally:
            triton.stop()  # graceful: PyTriton frees its shared memory and workspace
    """)
    log = tmp_path / "pytriton.log"  # the child's output: a failure to start says why
    with open(log, "wb") as out:
        proc = subprocess.Popen([triton_python, "-c", script], env=dict(os.environ, PYTHONPATH=ROOT),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(f"http://127.0.0.1:{http}/v2/models/demo/ready", proc, 120, log)
        good = [c.spec.sample(b, rng=b) for b in (1, 9, 33)]
        bad = dict(good[0], price=np.zeros((4, 1), np.float32))
        requests = [_wire(c, f) for f in (good[0], bad, good[1], good[2])]
        for protocol, port in (("http", http), ("grpc", grpc)):
            got = _replay(triton_python, f"127.0.0.1:{port}", "demo", protocol, requests, tmp_path, concurrency=2)
            for f, g, what in zip((good[0], bad, good[1], good[2]), got, ("good", "bad", "good", "good")):
                _check(c, f, g, f"PyTriton {what} request over {protocol}")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # any tritonserver / stub left in the group
        except ProcessLookupError:
            pass
    _assert_group_gone(proc.pid)


def _wait_ready(url: str, proc, timeout: float, log) -> None:
    def tail() -> str:
        return log.read_bytes()[-4000:].decode(errors="replace")

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the PyTriton process exited with {proc.returncode}; its output ends:\n{tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} not ready after {timeout}s; the PyTriton output ends:\n{tail()}")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
