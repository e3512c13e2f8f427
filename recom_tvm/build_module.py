"""`recom_tvm.build`: Relax module (+ params) -> CompiledModel for llvm or CUDA."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import tvm

from . import config
from .ops import LegalizeRecomOps
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
        return tvm.target.Target({"kind": "llvm"})
    if target == "cuda":
        return tvm.target.Target({"kind": "cuda", "arch": config.cuda_arch, "max_threads_per_block": 1024,
                                  "max_shared_memory_per_block": 49152, "thread_warp_size": 32},
                                 host={"kind": "llvm"})
    raise ValueError(f"unsupported target {target!r}: use 'llvm', 'cuda', a target dict or a tvm Target")


def build(mod: tvm.IRModule, target="llvm", params: Mapping[str, np.ndarray] | None = None,
          spec: InputSpec | None = None, device=None, database=None, kernel_schedules=None) -> CompiledModel:
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
    """
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
        from .schedules.apply import schedules_from_database

        kernel_schedules = schedules_from_database(mod, tgt, database)
    t0 = time.perf_counter()
    with tgt:
        lowered = LegalizeRecomOps(kernel_schedules)(mod)
        executable = tvm.compile(lowered, target=tgt)
    config.log(f"built for {kind} in {time.perf_counter() - t0:.2f}s")
    from .native_build import try_library_path

    # the native host stage (C, compiled here once per source version; export_library ships it with the model)
    model = CompiledModel(executable, spec, dict(params or {}), kind, device, host_library=try_library_path())
    if spec.fused:
        from .ops.fused_kernel import default_config

        model.kernel_schedules = [[b, c.to_json()] for b, c in (
            kernel_schedules or ((None, default_config(spec.fused["meta"])),))]
    return model
