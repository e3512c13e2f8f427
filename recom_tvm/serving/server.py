"""Start `tritonserver --model-repository REPO` from the nvidia-pytriton wheel (no container needed), on loopback.

The wheel ships the server, its libraries, the Python backend and one backend stub per Python version. The stub
embeds libpython; it must be the library of the Python whose standard library it then loads (a pyenv Python's
stdlib on Debian's libpython3.11 fails with "'_thread.RLock' object has no attribute '_recursion_count'"), so the
serving Python's LIBDIR goes first on LD_LIBRARY_PATH, and its bin directory first on PATH (the stub finds its
environment, numpy and the TVM runtime, from there). In a Triton container none of this is needed.

`dist=` starts a server unpacked from benchmarks/triton_pack.py's tarball instead (bin/, lib/, backends/python/,
python_backend_stubs/X.Y/): for a machine where nvidia-pytriton is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

_PROBE = ("import json, os, sys, sysconfig, pytriton; print(json.dumps({"
          "'pytriton': os.path.dirname(pytriton.__file__), 'libdir': sysconfig.get_config_var('LIBDIR'), "
          "'version': '%d.%d' % sys.version_info[:2]}))")
_PROBE_DIST = ("import json, sys, sysconfig; print(json.dumps({'libdir': sysconfig.get_config_var('LIBDIR'), "
               "'version': '%d.%d' % sys.version_info[:2]}))")


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """n distinct free ports: every socket stays bound until all n are chosen (one at a time, the kernel may hand
    the same ephemeral port out twice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def server_python() -> str:
    """The Python the server side runs with: $RECOM_TVM_TRITON_PYTHON, else this interpreter."""
    return os.environ.get("RECOM_TVM_TRITON_PYTHON") or sys.executable


class TritonServer:
    """A tritonserver process serving `repository` on 127.0.0.1 (context manager: stops it, and every process it
    started, on exit).

        with TritonServer("repo") as server:
            client = RecomClient(server.http_url, "demo")"""

    def __init__(self, repository: str, python: str | None = None, http_port: int | None = None,
                 grpc_port: int | None = None, metrics_port: int | None = None, env: dict | None = None,
                 startup_timeout: float = 120.0, log_verbose: int = 0, dist: str | None = None) -> None:
        self.repository = os.path.abspath(repository)
        self.dist = os.path.abspath(dist) if dist else None
        self.python = python or server_python()
        spare = iter(free_ports(3))
        self.http_port = http_port or next(spare)
        self.grpc_port = grpc_port or next(spare)
        self.metrics_port = metrics_port or next(spare)
        self.extra_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.log_verbose = log_verbose
        self.process: subprocess.Popen | None = None
        self._workdir: str | None = None
        self.last_log = ""  # the server's log, kept after stop()

    http_url = property(lambda self: f"127.0.0.1:{self.http_port}")
    grpc_url = property(lambda self: f"127.0.0.1:{self.grpc_port}")
    metrics_url = property(lambda self: f"http://127.0.0.1:{self.metrics_port}/metrics")

    def start(self) -> TritonServer:
        probe = subprocess.run([self.python, "-c", _PROBE_DIST if self.dist else _PROBE], capture_output=True,
                               text=True, timeout=120)
        if probe.returncode != 0:
            need = "run" if self.dist else "import pytriton (pip install nvidia-pytriton; ci/install.sh makes .venv-triton)"
            raise RuntimeError(f"{self.python} cannot {need}: {probe.stderr.strip()[-500:]}")
        info = json.loads(probe.stdout.strip().splitlines()[-1])
        if self.dist:
            dist, libs_dir = self.dist, os.path.join(self.dist, "lib")
        else:
            dist = os.path.join(info["pytriton"], "tritonserver")
            libs_dir = os.path.join(os.path.dirname(info["pytriton"]), "nvidia_pytriton.libs")
        stub = os.path.join(dist, "python_backend_stubs", info["version"], "triton_python_backend_stub")
        if not os.path.exists(stub):
            raise RuntimeError(f"{dist} has no Python backend stub for Python {info['version']} ({self.python})")
        self._workdir = tempfile.mkdtemp(prefix="recom_tvm_triton_")
        backends = os.path.join(self._workdir, "backends")
        shutil.copytree(os.path.join(dist, "backends"), backends)
        shutil.copy(stub, os.path.join(backends, "python", "triton_python_backend_stub"))
        env = dict(os.environ, **self.extra_env)
        libs = [info["libdir"], libs_dir]
        env["LD_LIBRARY_PATH"] = ":".join(libs + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
        env["PATH"] = os.path.dirname(self.python) + os.pathsep + env.get("PATH", "")
        cmd = [os.path.join(dist, "bin", "tritonserver"), "--model-repository", self.repository,
               "--backend-directory", backends,
               "--http-address", "127.0.0.1", "--http-port", str(self.http_port),
               "--grpc-address", "127.0.0.1", "--grpc-port", str(self.grpc_port),
               "--metrics-address", "127.0.0.1", "--metrics-port", str(self.metrics_port),
               "--allow-metrics", "true", "--allow-gpu-metrics", "false", "--exit-on-error", "true",
               "--strict-readiness", "true", "--log-verbose", str(self.log_verbose)]
        if os.path.isdir(os.path.join(dist, "caches")):
            cmd += ["--cache-directory", os.path.join(dist, "caches")]
        self._log = open(os.path.join(self._workdir, "server.log"), "w+")
        # its own process group: stop() ends the server and the backend stubs it started, nothing else
        self.process = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {self.process.returncode}:\n{self.errors()}")
            try:
                with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"tritonserver not ready after {self.startup_timeout}s:\n{self.errors()}")

    def errors(self) -> str:
        """The log's error lines (Triton prefixes them with E) and its last lines."""
        lines = self.log().splitlines()
        return "\n".join([line for line in lines if line.startswith("E")][-20:] + ["..."] + lines[-15:])

    def log(self) -> str:
        if not getattr(self, "_log", None) or self._log.closed:
            return ""
        self._log.flush()
        with open(self._log.name) as f:
            return f.read()

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)  # the group we created: server + its stubs
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
            except ProcessLookupError:
                pass
        if self.process is not None:
            try:  # stubs that outlived the server (same group)
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._workdir:
            self.last_log = self.log()
            if getattr(self, "_log", None):
                self._log.close()
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> TritonServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
