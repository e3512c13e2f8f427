"""Device memory a model needs: its tables (per dtype), the other weights, and one request's workspace; the check
that refuses a model whose parameters do not fit in the device's free memory, before any allocation.

Sizes come from the spec (parameter shapes and dtypes, the fused tables' layout) without building the arrays. The
workspace is an upper bound: every intermediate tensor of one request at once (the build records their shapes as
expressions of the request's sizes; the VM's pool reuses freed buffers, so the real peak is at or below it).
"""

from __future__ import annotations

import numpy as np

from ..errors import DeviceMemoryError
from . import compact
from .assertions import evaluate


def _bytes(shape, dtype: str) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n * np.dtype(dtype).itemsize


def param_nbytes(inp: dict) -> int:
    """Bytes of one module input of the spec (a parameter: its shape is fixed)."""
    return _bytes(inp["shape"], inp["dtype"])


def parameter_bytes(spec) -> dict:
    """{"tables": bytes, "tables_by_dtype": {dtype: bytes}, "weights": bytes} of the module's parameters."""
    tables, by_dtype, weights = 0, {}, 0
    for inp in spec.module_inputs:
        if inp["source"] != "param":
            continue
        size = _bytes(inp["shape"], inp["dtype"])
        recipe = spec.param_recipes.get(inp["ref"], {})
        if "concat_flat" in recipe:
            tables += size
            dts = compact.table_dtypes(recipe)
            for t, _, rows, stride in compact.layout(recipe, {}) if recipe.get("shapes") else []:
                by_dtype[dts[t]] = by_dtype.get(dts[t], 0) + 4 * rows * stride
        else:
            weights += size
    return {"tables": tables, "tables_by_dtype": by_dtype, "weights": weights}


def workspace_bytes(spec, symbols: dict[str, int]) -> int | None:
    """Bytes of every intermediate tensor of one request whose sizes are `symbols` (None if the build recorded no
    shapes, or a size is unknown)."""
    entries = getattr(spec, "workspace", None)
    if not entries:
        return None
    total = 0
    for e in entries:
        try:
            dims = [evaluate(d, symbols) for d in e["shape"]]
        except KeyError:
            return None
        if any(d is None for d in dims):
            return None
        total += _bytes(dims, e["dtype"])
    return total


def free_memory(device) -> int | None:
    """Free bytes on `device` (CUDA: cudaMemGetInfo), None where unknown (CPU, or no such device here).
    Tests replace this function to fake a small GPU."""
    try:
        if device.dlpack_device_type() == 1 or not device.exist:  # kDLCPU: the host's memory is not checked
            return None
        free = device.available_global_memory
    except Exception:  # noqa: BLE001 - no driver, no device: nothing to check against
        return None
    return int(free) if free is not None else None


def check_fits(need: int, what: str, device) -> None:
    """Raise DeviceMemoryError naming `need` and the free memory when `need` bytes do not fit on `device`."""
    free = free_memory(device)
    if free is not None and need > free:
        raise DeviceMemoryError(
            f"{what} needs {_fmt(need)} of device memory but {device} has {_fmt(free)} free: use compact tables "
            f"(recom_tvm.build(..., table_dtype='float16' | 'bfloat16' | 'int8') halves or quarters the tables), "
            f"a larger device, or free memory held by other processes")


def _fmt(n: int) -> str:
    return f"{n / 2**30:.2f} GiB ({n:,} bytes)" if n >= 2**30 else f"{n / 2**20:.1f} MiB ({n:,} bytes)"


def usage(model, feeds=None) -> dict:
    """CompiledModel.memory_usage."""
    from .compiled_model import host_env

    out = parameter_bytes(model.spec)
    if feeds is not None:
        env = host_env(model.spec, feeds)
        _, bound = model.arguments(env)
        symbols = {k: v for k, (v, _) in bound.items()}
        for inp in model.spec.module_inputs:  # the packed request's length
            if inp["source"] == "packed" and inp["kind"] == "tensor":
                symbols[inp["shape"][0]] = int(env[inp["ref"]].size)
        out["workspace"] = workspace_bytes(model.spec, symbols)
        batch = model.spec.fused.get("batch_symbol") if model.spec.fused else None
        out["batch"] = symbols.get(batch) if batch else None
    out["total"] = out["tables"] + out["weights"] + (out.get("workspace") or 0)
    return out


def check_model(model, on_device) -> None:
    """CompiledModel.check_device_memory: the parameters not yet on the device (`on_device(name)`) must fit."""
    need = sum(param_nbytes(i) for i in model.spec.module_inputs
               if i["source"] == "param" and not on_device(i["ref"]))
    check_fits(need, f"{model!r}: its parameters", model.device)
