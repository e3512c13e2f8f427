"""Repack the `tritonserver` of the nvidia-pytriton wheel into a small tar.xz for a machine without that wheel (the
GPU machine: no network, no pip index, 64 MiB per call).

Keeps what `tritonserver --model-repository` with the Python backend loads, nothing else:

    tritonserver/bin/tritonserver
    tritonserver/lib/                           the wheel's bundled libraries that these binaries NEED, transitively
                                                (readelf), e.g. not the wheel's libpython3.13 (only its 3.13 stub)
    tritonserver/backends/python/               libtriton_python.so, triton_python_backend_utils.py
    tritonserver/python_backend_stubs/X.Y/      the stub of the serving Python only (it links libpython X.Y)

and, apart (pack_stub_site, --stub-site), the Python backend stub's own site-packages: numpy 1.26 (the stubs break
with numpy 2) and typing_extensions (tvm_ffi), optionally with a libpythonX.Y.so.1.0 for a serving Python built
without one (Ubuntu's /usr/bin/python3.12 is static; its libpython3.12t64 package may be missing), used only if
the machine has none.

The binaries' RUNPATHs point at the wheel's layout; the starter (recom_tvm.serving.server.TritonServer with
`dist=`) puts tritonserver/lib on LD_LIBRARY_PATH instead. No response cache (the wheel's caches/ is left out).

    python benchmarks/triton_pack.py OUT.tar.xz [--python-version 3.12] [--pytriton DIR]
    python benchmarks/triton_pack.py OUT.tar.xz --stub-site WHEEL... [--libpython SO|DEB]

A fallback libpython for the GPU machine (Ubuntu 24.04's Python 3.12.3), fetched with apt from Ubuntu's archive:
    d=$(mktemp -d); mkdir -p $d/lists/partial $d/cache/archives/partial
    echo "deb [arch=amd64] http://archive.ubuntu.com/ubuntu noble-updates main" > $d/sources.list
    o="-o Dir::State::Lists=$d/lists -o Dir::Etc::SourceList=$d/sources.list -o Dir::Etc::SourceParts=/nonexistent
       -o Dir::Cache=$d/cache -o Dir::State::status=/dev/null -o APT::Architectures=amd64"
    apt-get $o update; (cd $d && apt-get $o download libpython3.12t64)     # -> --libpython $d/libpython3.12t64_*.deb
(without Ubuntu's archive key on a Debian host, apt needs `[trusted=yes arch=amd64]`: the .deb is then checked
against the index's hashes only.)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile


def pytriton_dir(python: str) -> str:
    """The installed `pytriton` package of `python` (e.g. .venv-triton's)."""
    out = subprocess.run([python, "-c", "import os, pytriton; print(os.path.dirname(pytriton.__file__))"],
                         capture_output=True, text=True, check=True, timeout=120)
    return out.stdout.strip().splitlines()[-1]


def needed(path: str) -> list[str]:
    """The DT_NEEDED sonames of an ELF file."""
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
    return [line.split("[", 1)[1].split("]", 1)[0] for line in out.splitlines() if "(NEEDED)" in line]


def closure(roots: list[str], libs_dir: str) -> list[str]:
    """The libraries of `libs_dir` that `roots` need, transitively (system libraries are left to the host)."""
    available = set(os.listdir(libs_dir))
    todo, seen = list(roots), set()
    while todo:
        for soname in needed(todo.pop()):
            if soname in available and soname not in seen:
                seen.add(soname)
                todo.append(os.path.join(libs_dir, soname))
    return sorted(seen)


def libpython_file(path: str, python_version: str, tmp: str) -> str:
    """A libpythonX.Y.so.1.0 given as the file or as a Debian / Ubuntu package holding it."""
    if not path.endswith(".deb"):
        return path
    subprocess.run(["dpkg-deb", "-x", path, tmp], check=True)
    found = [os.path.join(d, f) for d, _, files in os.walk(tmp) for f in files
             if f == f"libpython{python_version}.so.1.0"]
    if not found:
        raise FileNotFoundError(f"{path} holds no libpython{python_version}.so.1.0")
    return found[0]


def pack(out: str, pytriton: str, python_version: str) -> dict:
    """Write the tarball -> a manifest {files, bytes in, bytes out, system libraries needed}."""
    dist = os.path.join(pytriton, "tritonserver")
    libs_dir = os.path.join(os.path.dirname(pytriton), "nvidia_pytriton.libs")
    stub = os.path.join(dist, "python_backend_stubs", python_version, "triton_python_backend_stub")
    if not os.path.exists(stub):
        raise FileNotFoundError(f"no Python backend stub for Python {python_version} in {dist}")
    roots = [os.path.join(dist, "bin", "tritonserver"), os.path.join(dist, "backends", "python", "libtriton_python.so"),
             stub]
    libs = closure(roots, libs_dir)
    members = [(r, os.path.relpath(r, os.path.dirname(dist))) for r in roots]
    members.append((os.path.join(dist, "backends", "python", "triton_python_backend_utils.py"),
                    "tritonserver/backends/python/triton_python_backend_utils.py"))
    members += [(os.path.join(libs_dir, name), f"tritonserver/lib/{name}") for name in libs]
    system = sorted({s for path, _ in members if path.endswith((".so", "stub", "tritonserver")) or ".so." in path
                     for s in needed(path)} - set(libs))
    manifest = {"python_version": python_version, "libs": libs, "system_libs": system,
                "bytes_in": sum(os.path.getsize(p) for p, _ in members)}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with tarfile.open(out, "w:xz", preset=9) as tar:
        for path, arcname in members:
            tar.add(path, arcname)
        data = json.dumps(manifest, indent=1).encode()
        info = tarfile.TarInfo("tritonserver/manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    manifest["bytes_out"] = os.path.getsize(out)
    return manifest


STUB_WHEELS = ("numpy==1.26.4", "typing_extensions")


def download_stub_wheels(dest: str, python_version: str = "3.12") -> list[str]:
    """The stub's packages as wheels for CPython X.Y on manylinux x86-64 (pip download; needs the index)."""
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", python_version, "--implementation", "cp", "--platform",
                    "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "-d", dest, *STUB_WHEELS],
                   check=True, timeout=600)
    return sorted(os.path.join(dest, f) for f in os.listdir(dest) if f.endswith(".whl"))


def pack_stub_site(out: str, wheels: list[str], libpython: str | None = None, python_version: str = "3.12") -> int:
    """The Python backend stub's own site-packages as a tar.xz (wheels unpacked, test suites dropped) -> bytes.

    Why: the wheel's stubs break with numpy 2 (a BYTES input dies in triton_python_backend_utils'
    deserialize_bytes_tensor: "unpack_from requires a buffer of at least 67372040 bytes", then "Stub process is
    not healthy"), and the GPU machine's Python has numpy 2.5; numpy 1.26 works. The stub's interpreter runs
    isolated (PYTHONPATH ignored) and takes its site-packages from the `python3` first on PATH, so run-gpu makes
    a venv-like prefix holding these and puts it first."""
    import zipfile

    with tempfile.TemporaryDirectory() as tmp, tarfile.open(out, "w:xz", preset=9) as tar:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as z:
                for info in z.infolist():
                    if "/tests/" in info.filename or info.is_dir():
                        continue
                    path = z.extract(info, tmp)
                    mode = (info.external_attr >> 16) & 0o777
                    if mode:
                        os.chmod(path, mode)
        tar.add(tmp, "site-packages")
        if libpython:
            with tempfile.TemporaryDirectory() as deb:
                tar.add(libpython_file(libpython, python_version, deb), f"libpython/libpython{python_version}.so.1.0")
    return os.path.getsize(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--python-version", default="3.12", help="the serving Python's X.Y (its stub is kept)")
    p.add_argument("--pytriton", default=None, help="the pytriton package directory (default: .venv-triton's)")
    p.add_argument("--stub-site", nargs="*", default=None,
                   help="write the stub's site-packages tarball instead, from these wheels (none given: downloaded)")
    p.add_argument("--libpython", default=None,
                   help="with --stub-site: a libpythonX.Y.so.1.0 (or a .deb holding it) to carry")
    a = p.parse_args(argv)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    pytriton = None if a.stub_site is not None else a.pytriton or pytriton_dir(os.environ.get("RECOM_TVM_TRITON_PYTHON")
                                          or os.path.join(root, ".venv-triton", "bin", "python"))
    if a.stub_site is not None:
        with tempfile.TemporaryDirectory() as tmp:
            wheels = a.stub_site or download_stub_wheels(tmp, a.python_version)
            print(json.dumps({"bytes_out": pack_stub_site(a.out, wheels, a.libpython, a.python_version)}))
        return 0
    manifest = pack(a.out, pytriton, a.python_version)
    print(json.dumps({k: manifest[k] for k in ("bytes_in", "bytes_out", "system_libs")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
