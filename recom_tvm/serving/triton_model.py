"""Triton Python-backend model of a recom_tvm model (written as model.py by `recom-tvm export --triton`).

Needs numpy and the TVM runtime in the backend's Python; recom_tvm's runtime-only part travels next to this file
(python/recom_tvm, bundled by the exporter: it matches the library) unless the environment provides it.
"""

import os
import sys

_BUNDLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "python")
if os.path.isdir(os.path.join(_BUNDLE, "recom_tvm")):
    sys.path.insert(0, _BUNDLE)  # not this directory: model.so would shadow model.py
os.environ.setdefault("TVM_USE_RUNTIME_LIB", "1")  # load libtvm_runtime only, never the compiler
os.environ.setdefault("RECOM_TVM_RUNTIME_ONLY", "1")

import triton_python_backend_utils as pb_utils  # noqa: E402

from recom_tvm.serving.triton_backend import Backend  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        self.backend = Backend(pb_utils, args)

    def execute(self, requests):
        return self.backend.execute(requests)

    def finalize(self):
        self.backend = None
