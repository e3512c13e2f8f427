"""Building tuning candidates: a scheduled task module -> the kernel template instantiated with its knobs (the fused
kernel's KernelConfig, or a dense layer's DenseConfig).

MetaSchedule's stock builder imports TVM's tensor intrinsics in every worker (~24 s) and lowers the module as it
is; ours instantiates the template with the candidate's KernelConfig first, and never imports them.
"""

from __future__ import annotations

import tvm

from ..ops.fused_kernel import fused_embedding
from .fused_space import config_of, task_info


def instantiate(mod: tvm.IRModule, target: tvm.target.Target, name: str = "main") -> tvm.tirx.PrimFunc:
    """The concrete kernel a scheduled task module stands for (same buffer sizes, the candidate's knobs)."""
    import numpy as np

    info = task_info(mod)
    func = mod["main"]
    shapes = _static_shapes(func)
    gpu = target.kind.name == "cuda"
    kernel = fused_embedding(np.asarray(info["meta"], dtype=np.int64), int(info["width"]), gpu,
                             ((None, config_of(mod)),), shapes=shapes,
                             packed_dtype=info.get("packed_dtype", "int64"))
    return kernel.with_attr("global_symbol", name)


def _static_shapes(func) -> tuple[int, int, int, int]:
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    shapes = [tuple(int(d) for d in a.as_json()[2]) for a in ArgInfo.from_prim_func(func)]
    packed, _, bounds, tables, out = shapes
    return (packed[0], bounds[0], tables[0], out[0])


def compile_kernels(funcs: dict[str, tvm.tirx.PrimFunc], target: tvm.target.Target) -> tvm.runtime.Module:
    """One library holding every given kernel (callable by name)."""
    if target.kind.name == "cuda":
        from ..cuda_support import prepare_cuda_build

        prepare_cuda_build()
    with target:
        built = tvm.compile(tvm.IRModule(funcs), target=target)
    return getattr(built, "mod", built)  # the runtime module inside tvm.compile's Executable


def build_candidate(mod: tvm.IRModule, target: tvm.target.Target, _params=None) -> tvm.runtime.Module:
    """f_build for MetaSchedule's LocalBuilder (runs in its worker processes): a fused-kernel or dense-tail
    candidate."""
    return compile_kernels({"main": instantiate_any(mod, target)}, target)


def instantiate_any(mod: tvm.IRModule, target: tvm.target.Target, name: str = "main") -> tvm.tirx.PrimFunc:
    """The kernel a candidate of either kind of task stands for."""
    from . import dense_space

    if dense_space.is_dense_task(mod):
        return dense_space.instantiate(mod, target, name)
    return instantiate(mod, target, name)


def local_builder(max_workers: int | None = None, timeout_sec: float = 120.0):
    from tvm.s_tir.meta_schedule.builder import LocalBuilder

    return LocalBuilder(max_workers=max_workers, timeout_sec=timeout_sec, f_build=build_candidate)
