"""Serving at scale: recom_tvm models behind NVIDIA Triton Inference Server.

    recom_tvm.serving.export_triton(model, "repo", "demo")     # a model repository (also `recom-tvm export --triton`)
    recom_tvm.serving.pytriton(model, "demo").serve()            # the same model behind Triton from this process
    recom_tvm.serving.RecomClient("127.0.0.1:8000", "demo").run(feeds)

Files, one job each: wire.py (feeds <-> Triton tensors), batching.py (merging the requests of a dynamic batch),
executor.py (runs a batch, an answer or an error per request), triton_backend.py + triton_model.py (the Python
backend's model.py), repository.py (config.pbtxt and the repository), pytriton_binding.py (the PyTriton binding),
server.py (tritonserver from the nvidia-pytriton wheel), client.py (client, replay and load tools).
Nothing is imported eagerly: the repository bundles this package's runtime-only modules.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "export_triton": ("recom_tvm.serving.repository", "export_triton"),
    "config_pbtxt": ("recom_tvm.serving.repository", "config_pbtxt"),
    "pytriton": ("recom_tvm.serving.pytriton_binding", "pytriton"),
    "TritonServer": ("recom_tvm.serving.server", "TritonServer"),
    "RecomClient": ("recom_tvm.serving.client", "RecomClient"),
    "Executor": ("recom_tvm.serving.executor", "Executor"),
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'recom_tvm.serving' has no attribute {name!r}")
