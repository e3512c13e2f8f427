"""recom_tvm: compile TensorFlow recommendation models with many embedding columns into a few fused kernels.

    mod, params, spec = recom_tvm.from_tensorflow("model.pb", signature=...)
    model = recom_tvm.build(mod, target="cuda", params=params)
    out = model.run({"user_id": ..., "tags": (indices, values, dense_shape)})

The compiler parts (frontend, passes, build) load lazily so that `recom_tvm.runtime` works on serving hosts that
have only the TVM runtime.
"""

from __future__ import annotations

import importlib

from . import config
from .errors import (ConversionError, DeviceError, DeviceMemoryError, FeedError, InvalidArgumentError, ModelFormatError,
                     RecomError, RequestTooLargeError, UnsupportedOpError)

__version__ = "0.1.0"

_LAZY = {
    "from_tensorflow": ("recom_tvm.frontend.importer", "from_tensorflow"),
    "build": ("recom_tvm.build_module", "build"),
    "optimize": ("recom_tvm.passes.pipeline", "optimize"),
    "tune": ("recom_tvm.schedules.tune", "tune"),
    "identify_columns": ("recom_tvm.passes.identify_columns", "identify_columns"),
    "CompiledModel": ("recom_tvm.runtime.compiled_model", "CompiledModel"),
    "load": ("recom_tvm.runtime.compiled_model", "load"),
    "InputSpec": ("recom_tvm.runtime.spec", "InputSpec"),
    "KeyedJagged": ("recom_tvm.runtime.keyed_jagged", "KeyedJagged"),
    "supported_ops": ("recom_tvm.frontend.converters", "supported_ops"),
}

__all__ = ["config", "ConversionError", "DeviceError", "DeviceMemoryError", "FeedError", "InvalidArgumentError", "ModelFormatError", "RecomError",
           "RequestTooLargeError", "UnsupportedOpError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'recom_tvm' has no attribute {name!r}")
