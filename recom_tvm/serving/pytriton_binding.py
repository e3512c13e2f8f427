"""The PyTriton binding: a CompiledModel behind Triton's HTTP / gRPC endpoints from one Python process.

    triton = recom_tvm.serving.pytriton(model, "demo", http_port=8000, grpc_port=8001)
    triton.serve()                     # blocks; or triton.run() to serve in the background, triton.stop()

Same request format as the exported repository (wire.py: one recom_tvm request per Triton request, leading
request dim 1), so the same clients work against both. PyTriton answers a whole batch with one error when its
inference function raises, so requests are not batched together here: `instances` inference threads share the
model (CompiledModel.run is thread-safe; host stages overlap), and each request gets its own answer or error.
For dynamic batching with per-request errors, export a repository (repository.py) and run tritonserver.
Needs nvidia-pytriton (numpy < 2: ci/install.sh installs it into .venv-triton).
"""

from __future__ import annotations

import numpy as np

from . import wire
from .executor import error_message

MAX_REQUESTS = 64  # Triton's max_batch_size: bounds a request's leading dim (always 1 here)


class RequestError(RuntimeError):
    """A request the model rejected (its message is recom_tvm's)."""


def pytriton(model, name: str = "recom_tvm", *, http_port: int = 8000, grpc_port: int = 8001,
             metrics_port: int = 8002, address: str = "127.0.0.1", instances: int = 2, log_verbose: int = 0):
    """Bind `model` (a CompiledModel, or the path of an exported library) to a PyTriton Triton -> the
    `pytriton.triton.Triton`, not yet started (`.run()` / `.serve()` / `.stop()`, or a `with` block). `address`
    is where HTTP, gRPC and metrics listen: loopback unless you mean to expose the server."""
    from pytriton.model_config import ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    if isinstance(model, str):
        from ..runtime.compiled_model import load

        model = load(model)
    features = wire.features_json(model.spec)
    outputs = [o["name"] for o in model.spec.outputs]

    def infer(requests):
        answers = []
        for request in requests:
            try:
                out = model.run(wire.from_wire(features, {k: _strings(v) for k, v in request.items()}))
            except Exception as err:  # noqa: BLE001 - PyTriton sends the message (in a traceback) to the client
                raise RequestError(error_message(err)) from None
            answers.append({k: np.ascontiguousarray(out[k])[None] for k in outputs})
        return answers

    config = TritonConfig(http_address=address, http_port=http_port, grpc_address=address, grpc_port=grpc_port,
                          metrics_address=address, metrics_port=metrics_port, log_verbose=log_verbose)
    triton = Triton(config=config)
    triton.bind(model_name=name, infer_func=[infer] * max(1, instances),
                inputs=[Tensor(name=t.name, dtype=_np_type(t.dtype), shape=t.dims, optional=t.optional)
                        for t in wire.inputs(model.spec)],
                outputs=[Tensor(name=t.name, dtype=_np_type(t.dtype), shape=t.dims) for t in wire.outputs(model.spec)],
                config=ModelConfig(batching=True, max_batch_size=MAX_REQUESTS, batcher=None), strict=False)
    return triton


def _np_type(dtype: str):
    return bytes if dtype == "string" else np.dtype(dtype)


def _strings(arr: np.ndarray) -> np.ndarray:
    """PyTriton hands BYTES over as fixed-width np.bytes_ (which drops trailing NUL bytes); give the runtime
    objects like Triton's own backend does."""
    return arr.astype(object) if arr.dtype.kind == "S" else arr
