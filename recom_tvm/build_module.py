"""`recom_tvm.build`: Relax module (+ params) -> CompiledModel for llvm or CUDA."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import tvm

from . import config
from .backend.pipeline import compile_module
from .ops import LegalizeRecomOps
from .ops.split_blocks import SplitDataflowAtSizes
from .runtime.compiled_model import CompiledModel
from .module_spec import spec_of
from .runtime.spec import InputSpec

def make_target(target) -> tvm.target.Target:
    """"llvm", "cuda" (arch from config.cuda_arch), a dict, or a Target -> Target (CUDA with an llvm host)."""
    if isinstance(target, tvm.target.Target):
        return target
    if isinstance(target, dict):
        if target.get("kind") == "cuda":
            return tvm.target.Target(target, host={"kind": "llvm"})
        return tvm.target.Target(target)
    if target == "llvm":
        from .backend.cpu import llvm_target

        return llvm_target()
    if target == "cuda":
        return tvm.target.Target({"kind": "cuda", "arch": config.cuda_arch, "max_threads_per_block": 1024,
                                  "max_shared_memory_per_block": 49152, "thread_warp_size": 32},
                                 host={"kind": "llvm"})
    raise ValueError(f"unsupported target {target!r}: use 'llvm', 'cuda', a target dict or a tvm Target")


def build(mod: tvm.IRModule, target="llvm", params: Mapping[str, np.ndarray] | None = None,
          spec: InputSpec | None = None, device=None, database=None, kernel_schedules=None,
          table_dtype=None) -> CompiledModel:
    """Compile an imported (and optionally optimized) module.

    Args:
        mod: from `recom_tvm.from_tensorflow` (carries its serving spec) or a pass pipeline over it.
        target: "llvm", "cuda", a target dict or a `tvm.target.Target`.
        params: the params returned by the importer (tables and weights; uploaded once, not baked in).
        spec: the serving spec, when `mod` does not carry it.
        device: where to run (default: cpu(0) for llvm, cuda(0) for CUDA).
        database: a MetaSchedule database from `recom_tvm.tune` (or its work_dir): the fused kernel gets the best
            measured schedule of each batch bucket, dispatched by batch at run time.
        kernel_schedules: instead of a database, the fused kernel's schedules themselves:
            ((max batch or None, recom_tvm.schedules.KernelConfig), ...) ascending.
        table_dtype: how the fused kernel stores its tables: "float32" (default), "float16", "bfloat16" or "int8"
            (row-wise scale and bias), or {"default": dtype, <table or column name>: dtype, ...}. Quantized from
            the float32 tables here and again by `set_params`; accumulation and output stay float32; columns
            outside the fused kernel and the dense tail keep float32 (recom_tvm.passes.compact_tables).
    """
    fp32_mod = mod
    if table_dtype is not None:
        from .passes.compact_tables import CompactTables

        mod = CompactTables(table_dtype)(mod)
        spec = spec_of(mod)
    spec = spec or spec_of(mod)
    if spec is None:
        raise ValueError("the module carries no serving spec; pass spec= (from recom_tvm.from_tensorflow)")
    tgt = make_target(target)
    kind = tgt.kind.name
    if kind == "cuda":
        from .cuda_support import prepare_cuda_build

        prepare_cuda_build()
    if database is not None:
        if kernel_schedules is not None:
            raise ValueError("pass database= or kernel_schedules=, not both")
        kernel_schedules = _database_schedules(mod, fp32_mod, tgt, database)
    compacted = mod is not fp32_mod
    if spec.fused and "device_hash" not in spec.fused and spec_of(mod) is not None:
        from .passes.device_hash import DeviceHash  # where the hashed columns' strings are hashed (per target)

        mod = DeviceHash(kind)(mod)
        spec = spec_of(mod)
    t0 = time.perf_counter()
    with tgt:
        lowered = SplitDataflowAtSizes()(LegalizeRecomOps(kernel_schedules)(mod))
    sink: dict = {}
    executable = compile_module(lowered, tgt, database, sink)  # the dense tail's schedules, CUDA graphs
    spec.pool_symbols = sink.get("symbols")  # what the VM's memory pool is keyed by (CompiledModel._bound_pool)
    config.log(f"built for {kind} in {time.perf_counter() - t0:.2f}s")
    from .native_build import try_library_path
    from .workspace import workspace_entries

    spec.workspace = workspace_entries(mod)  # for CompiledModel.memory_usage
    # the native host stage (C, compiled here once per source version; export_library ships it with the model)
    model = CompiledModel(executable, spec, dict(params or {}), kind, device, host_library=try_library_path())
    if compacted and params:
        model.param_shapes()  # encode the compact tables now: a table that cannot be (fp16 overflow) fails here
    if spec.fused:
        from .ops.fused_kernel import default_config

        model.kernel_schedules = [[b, c.to_json()] for b, c in (
            kernel_schedules or ((None, default_config(spec.fused["meta"])),))]
    return model


def _database_schedules(mod, fp32_mod, tgt, database):
    """The database's schedules for this kernel; for compact tables without records of their own, those of the
    same model's float32 kernel (every schedule of one is valid for the other)."""
    import warnings

    from .schedules.apply import schedules_from_database

    if mod is fp32_mod:
        return schedules_from_database(mod, tgt, database)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        own = schedules_from_database(mod, tgt, database)
    return own if own is not None else schedules_from_database(fp32_mod, tgt, database)
