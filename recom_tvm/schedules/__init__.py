"""Schedules of the fused embedding kernel and of the dense tail (dense_tail.py), and their tuning with MetaSchedule.

    recom_tvm.tune(mod, target, work_dir, trials, runner=...)    # tune.py (fused_space.py, dense_space.py)
    rpc_runner(work_dir, tracker="host:9190", key="h100")        # runners.py: GPU nodes behind a tracker
    offline.export_round / offline.import_round                  # GPU nodes the host cannot reach
    recom_tvm.build(mod, target, params, database=work_dir)      # apply.py, dense_apply.py: best per batch bucket
"""

from ..ops.fused_kernel import DEFAULT, KernelConfig
from .dense_tail import DenseConfig
from .fused_space import KNOBS
from .runners import local_runner, rpc_runner

__all__ = ["DEFAULT", "KNOBS", "DenseConfig", "KernelConfig", "local_runner", "rpc_runner"]
