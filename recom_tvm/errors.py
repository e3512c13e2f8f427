"""Errors recom_tvm raises. Each names what the user can act on: the op, node, column, or feed."""

from __future__ import annotations


class RecomError(Exception):
    """Base class of every error recom_tvm raises on purpose."""


class ModelFormatError(RecomError, ValueError):
    """The model file or object is not something recom_tvm can read (corrupt, truncated, wrong kind)."""


class UnsupportedOpError(RecomError, NotImplementedError):
    """A TF op (or an attribute of it) the importer does not translate."""

    def __init__(self, op: str, node: str, column: str | None, detail: str = "") -> None:
        self.op, self.node, self.column, self.detail = op, node, column, detail
        self.failures: list[RecomError] = [self]
        where = f" in column {column!r}" if column else ""
        msg = f"unsupported TensorFlow op {op!r} at node {node!r}{where}"
        super().__init__(msg + (f": {detail}" if detail else ""))


    @classmethod
    def many(cls, failures: list[RecomError], fallback_hint: bool = True) -> "UnsupportedOpError":
        """One error for every node the importer could not translate (TVM's frontends list them all), in graph
        order, grouped by op type; `failures` are UnsupportedOpError / ConversionError instances."""
        groups: dict[str, list[RecomError]] = {}
        for f in failures:
            groups.setdefault(f.op, []).append(f)
        lines = [] if len(failures) == 1 else [
            f"{len(failures)} TensorFlow nodes of {len(groups)} op types cannot be translated: {sorted(groups)}"]
        for op in sorted(groups):
            lines += [("  " if len(failures) > 1 else "") + str(f) for f in groups[op][:5]]
            if len(groups[op]) > 5:
                lines.append(f"  ... and {len(groups[op]) - 5} more {op} nodes")
        if fallback_hint:
            lines.append("Turn on recom_tvm.config.host_fallback (RECOM_TVM_HOST_FALLBACK=1) to run them on the host "
                         "through TensorFlow (RECom's CPU co-run); `python -m recom_tvm ops` lists what converts.")
        first = failures[0]
        err = cls(first.op, first.node, first.column, first.detail)
        err.args = ("\n".join(lines),)
        err.failures = list(failures)
        return err


class ConversionError(RecomError, ValueError):
    """A supported op whose inputs or attributes cannot be translated (e.g. a non-constant axis)."""

    def __init__(self, op: str, node: str, column: str | None, detail: str) -> None:
        self.op, self.node, self.column, self.detail = op, node, column, detail
        where = f" in column {column!r}" if column else ""
        super().__init__(f"cannot translate {op} node {node!r}{where}: {detail}")


class FeedError(RecomError, ValueError):
    """A feed passed to CompiledModel.run is missing, has the wrong dtype or shape, or is inconsistent."""


class InvalidArgumentError(RecomError, ValueError):
    """The inputs are well-formed but TensorFlow would reject them at run time (TF's InvalidArgumentError)."""


class RequestTooLargeError(FeedError):
    """A request above the serving limits (config.max_batch, config.max_request_elements): refused before any
    allocation, instead of running the host or the device out of memory."""


class DeviceMemoryError(RecomError, MemoryError):
    """The model's parameters (or one request) need more device memory than is free: raised before allocating,
    naming both sizes (CompiledModel.memory_usage reports what a model needs)."""


class DeviceError(RecomError, RuntimeError):
    """The device failed while running a request (a CUDA runtime or driver error): not a property of the inputs.
    The message carries the runtime's own (e.g. "CUDA Runtime Error: cudaErrorStreamCaptureImplicit (906)")."""
