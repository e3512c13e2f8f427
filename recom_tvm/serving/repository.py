"""`recom-tvm export --triton REPO`: a Triton model repository for an exported model.

    REPO/NAME/config.pbtxt          inputs / outputs from the serving spec, dynamic batching, instance groups
    REPO/NAME/1/model.py            Python backend (triton_model.py): loads the library with the runtime only
    REPO/NAME/1/recom_model.so[.spec.json, .params.npz, .host.so]  export_library's files (not model.so: the
                                    backend imports "model" from this directory, an .so first)
    REPO/NAME/1/python/recom_tvm/   the runtime-only part of recom_tvm (numpy + TVM runtime), bundled

Batching: Triton's batch dimension counts requests (each carries B rows with a leading request dim of 1, see
wire.py); the dynamic batcher groups up to `max_batch_requests` requests, waiting at most `max_queue_delay_us`
for a preferred size, and model.py merges them into one run where that is exact (batching.py).
"""

from __future__ import annotations

import json
import os
import shutil

from ..runtime.spec import InputSpec
from . import wire

BUNDLE = ["__init__.py", "config.py", "errors.py", "tfproto.py", "runtime/*.py", "runtime/native/*.py",
          "serving/__init__.py", "serving/wire.py", "serving/batching.py", "serving/executor.py",
          "serving/triton_backend.py"]


def export_triton(model, repository: str, name: str = "recom_tvm", *, version: int = 1,
                  max_batch_requests: int = 16, preferred_batch_sizes: tuple[int, ...] = (4, 8),
                  max_queue_delay_us: int = 1000, instances: int | None = None, gpus: list[int] | None = None,
                  merge_requests: bool = True, max_merged_rows: int = 16384, bundle_runtime: bool = True,
                  execution_env: str | None = None) -> str:
    """Write a Triton model repository entry for `model` (a CompiledModel, or the path of a library written by
    `export_library`) -> the model's directory.

    instances: model instances per GPU (cuda; default 2, so one instance's host stage overlaps another's GPU
    work) or in all (llvm; default 1: TVM's CPU kernels already use every core). gpus: the GPUs to place them on
    (default: every GPU Triton sees). execution_env: an EXECUTION_ENV_PATH (a conda-pack archive) for the Python
    backend, when the server's own Python lacks numpy or the TVM runtime."""
    model_dir = os.path.join(repository, name)
    version_dir = os.path.join(model_dir, str(version))
    os.makedirs(version_dir, exist_ok=True)
    library = os.path.join(version_dir, "recom_model.so")
    if isinstance(model, (str, os.PathLike)):
        for suffix in ("", ".spec.json", ".params.npz", ".host.so"):  # .host.so: the native host stage, if any
            if suffix != ".host.so" or os.path.exists(os.fspath(model) + suffix):
                shutil.copyfile(os.fspath(model) + suffix, library + suffix)
    else:
        model.export_library(library)
    with open(library + ".spec.json") as f:
        meta = json.load(f)
    spec = InputSpec.from_json(json.dumps(meta["spec"]))
    text = config_pbtxt(spec, meta["target_kind"], name, max_batch_requests=max_batch_requests,
                        preferred_batch_sizes=preferred_batch_sizes, max_queue_delay_us=max_queue_delay_us,
                        instances=instances, gpus=gpus, merge_requests=merge_requests,
                        max_merged_rows=max_merged_rows, execution_env=execution_env)
    with open(os.path.join(model_dir, "config.pbtxt"), "w") as f:
        f.write(text)
    here = os.path.dirname(os.path.abspath(__file__))
    shutil.copyfile(os.path.join(here, "triton_model.py"), os.path.join(version_dir, "model.py"))
    if bundle_runtime:
        _bundle(os.path.dirname(here), os.path.join(version_dir, "python", "recom_tvm"))
    return model_dir


def config_pbtxt(spec, target_kind: str, name: str, *, max_batch_requests: int = 16,
                 preferred_batch_sizes: tuple[int, ...] = (4, 8), max_queue_delay_us: int = 1000,
                 instances: int | None = None, gpus: list[int] | None = None, merge_requests: bool = True,
                 max_merged_rows: int = 16384, execution_env: str | None = None) -> str:
    """The model's config.pbtxt (Triton's protobuf text format)."""
    if max_batch_requests < 1 or any(p < 1 or p > max_batch_requests for p in preferred_batch_sizes):
        raise ValueError(f"preferred batch sizes {preferred_batch_sizes} must lie in [1, {max_batch_requests}]")
    lines = [f"name: {_q(name)}", 'backend: "python"', f"max_batch_size: {max_batch_requests}", "input ["]
    ins = wire.inputs(spec)
    lines += [",\n".join(_tensor(t, is_input=True) for t in ins), "]", "output ["]
    lines += [",\n".join(_tensor(t) for t in wire.outputs(spec)), "]"]
    sizes = ", ".join(str(s) for s in sorted(set(preferred_batch_sizes)))
    lines += ["dynamic_batching {", f"  preferred_batch_size: [ {sizes} ]",
              f"  max_queue_delay_microseconds: {max_queue_delay_us}", "}"]
    if target_kind == "cuda":
        group = f"kind: KIND_GPU, count: {instances or 2}"
        if gpus:
            group += f", gpus: [ {', '.join(str(g) for g in gpus)} ]"
    else:
        group = f"kind: KIND_CPU, count: {instances or 1}"
    lines.append(f"instance_group [ {{ {group} }} ]")
    params = {"recom_tvm_library": "recom_model.so", "recom_tvm_request_format": wire.REQUEST_FORMATS[0],
              "recom_tvm_merge_requests": "true" if merge_requests else "false",
              "recom_tvm_max_merged_rows": str(max_merged_rows),
              "recom_tvm_features": json.dumps(wire.features_json(spec), separators=(",", ":")),
              "FORCE_CPU_ONLY_INPUT_TENSORS": "yes"}
    if execution_env:
        params["EXECUTION_ENV_PATH"] = execution_env
    for key, value in params.items():
        lines.append(f"parameters {{ key: {_q(key)} value: {{ string_value: {_q(value)} }} }}")
    return "\n".join(lines) + "\n"


def _tensor(t: wire.WireTensor, is_input: bool = False) -> str:
    dims = ", ".join(str(d) for d in t.dims)
    # allow_ragged_batch: without it the dynamic batcher groups only requests of equal shapes (equal nnz, equal
    # B); the Python backend gets each request's tensors apart, so differently shaped requests can share a batch
    ragged = ", allow_ragged_batch: true" if is_input and -1 in t.dims else ""
    optional = ", optional: true" if is_input and t.optional else ""  # a feature with a default
    return f"  {{ name: {_q(t.name)}, data_type: {t.config_type}, dims: [ {dims} ]{ragged}{optional} }}"


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string (UTF-8, no \u escapes) is a valid text-format one


def _bundle(package_root: str, dest: str) -> None:
    """Copy recom_tvm's runtime-only modules (what triton_backend imports) next to model.py."""
    import glob

    if os.path.isdir(dest):
        shutil.rmtree(dest)
    for pattern in BUNDLE:
        for src in glob.glob(os.path.join(package_root, pattern)):
            rel = os.path.relpath(src, package_root)
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            shutil.copyfile(src, os.path.join(dest, rel))
