"""The Python-backend model of an exported Triton repository (model.py delegates here).

Loads the exported library with the runtime only, turns each Triton request into feeds (wire.py), runs the batch
through the Executor (merging where batching.py allows) and answers every request with its outputs or with a
Triton error carrying recom_tvm's message; the instance keeps serving after an error. Imports numpy, the TVM
runtime and recom_tvm.runtime only (the test proves it under an import blocker in the real server).
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from ..errors import RecomError
from ..runtime.compiled_model import load
from . import wire
from .executor import Executor, error_message

LIBRARY = "recom_model.so"


def _triton_error(pb, err: BaseException):
    """Our request errors as INVALID_ARG (HTTP 400), anything else as INTERNAL (500)."""
    codes = getattr(pb.TritonError, "INVALID_ARG", None), getattr(pb.TritonError, "INTERNAL", None)
    code = codes[0] if isinstance(err, (RecomError, ValueError, KeyError)) else codes[1]
    try:
        return pb.TritonError(error_message(err), code) if code is not None else pb.TritonError(error_message(err))
    except TypeError:  # a backend without error codes
        return pb.TritonError(error_message(err))


def parameter(config: dict, key: str, default: str) -> str:
    return config.get("parameters", {}).get(key, {}).get("string_value", default)


class Backend:
    """TritonPythonModel's work, with Triton's `pb_utils` module passed in."""

    def __init__(self, pb_utils, args: dict) -> None:
        self.pb = pb_utils
        config = json.loads(args["model_config"])
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        device = None
        if args.get("model_instance_kind") == "GPU":
            import tvm

            device = tvm.cuda(int(args.get("model_instance_device_id", 0)))
        self.model = load(os.path.join(version_dir, parameter(config, "recom_tvm_library", LIBRARY)), device=device)
        self.features = wire.features_json(self.model.spec)
        self.outputs = [o["name"] for o in self.model.spec.outputs]
        self.input_names = [t.name for t in wire.inputs(self.model.spec)]
        self.executor = Executor(self.model, merge=parameter(config, "recom_tvm_merge_requests", "true") == "true",
                                 max_merged_rows=int(parameter(config, "recom_tvm_max_merged_rows", "16384")))
        self.metrics = _Metrics(pb_utils, args.get("model_name", ""))

    def execute(self, requests: list) -> list:
        pb = self.pb
        feeds_list, decode_errors = [], {}
        for i, request in enumerate(requests):
            try:
                arrays = {name: t.as_numpy() for name in self.input_names
                          if (t := pb.get_input_tensor_by_name(request, name)) is not None}  # (None: optional)
                feeds_list.append(wire.from_wire(self.features, arrays))
            except Exception as err:  # noqa: BLE001 - a malformed request gets its own error
                decode_errors[i] = err
                feeds_list.append(None)
        good = [i for i, f in enumerate(feeds_list) if f is not None]
        before = dataclasses.replace(self.executor.counters)
        results = dict(zip(good, self.executor.run([feeds_list[i] for i in good])))
        results.update(decode_errors)
        self.metrics.update(before, self.executor.counters, len(decode_errors))
        responses = []
        for i in range(len(requests)):
            out = results[i]
            if isinstance(out, BaseException):
                responses.append(pb.InferenceResponse(output_tensors=[], error=self._error(out)))
            else:
                responses.append(pb.InferenceResponse(output_tensors=[
                    pb.Tensor(name, np.ascontiguousarray(out[name])[None]) for name in self.outputs]))
        return responses

    def _error(self, err: BaseException):
        return _triton_error(self.pb, err)


class _Metrics:
    """Triton custom metrics (served on the metrics port): requests answered from merged runs, merged runs, runs
    that fell back to request by request, errors. Absent if the Python backend has no metrics API."""

    def __init__(self, pb_utils, model_name: str) -> None:
        self.families, self.metrics = [], {}  # a MetricFamily must outlive its metrics
        try:
            for key, what in (("merged_requests", "requests answered from a merged run"),
                              ("merged_runs", "merged runs of several requests"),
                              ("fallbacks", "merged runs that failed and re-ran request by request"),
                              ("errors", "requests answered with an error")):
                family = pb_utils.MetricFamily(name=f"recom_tvm_{key}_total", description=what,
                                               kind=pb_utils.MetricFamily.COUNTER)
                self.families.append(family)
                self.metrics[key] = family.Metric(labels={"model": model_name})
        except Exception:  # noqa: BLE001 - older backends: no custom metrics
            self.families, self.metrics = [], {}

    def update(self, before, after, decode_errors: int) -> None:
        for key, metric in self.metrics.items():
            delta = getattr(after, key) - getattr(before, key) + (decode_errors if key == "errors" else 0)
            if delta:
                try:
                    metric.increment(delta)
                except Exception:  # noqa: BLE001 - metrics never fail a request
                    pass
