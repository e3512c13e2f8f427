"""TVM's default GPU schedules (dlight), with a rule that fails on a function passing it to the next rule.

dlight's ApplyDefaultSchedule stops the whole build when one rule raises on one function (TVM 0.27's Reduction
rule hits an internal check in `rfactor` on some reductions of imported graphs: "block_realize ==
old_block_realize_"); the next rule (GeneralReduction, then Fallback) schedules such a function correctly.
"""

from __future__ import annotations

import tvm
from tvm.s_tir import dlight as dl

from .. import config


class Guarded(dl.ScheduleRule):
    """`rule`, except that an exception it raises means "not applicable" (logged)."""

    def __init__(self, rule: dl.ScheduleRule) -> None:
        self.rule = rule

    def apply(self, func, target, tunable):
        try:
            return self.rule.apply(func, target, tunable)
        except Exception as err:  # noqa: BLE001 - TVM's rule broke on this function: the next rule schedules it
            name = func.attrs["global_symbol"] if func.attrs and "global_symbol" in func.attrs else "a function"
            config.log(f"dlight {type(self.rule).__name__} failed on {name} ({type(err).__name__}: "
                       f"{str(err).splitlines()[0][:120]}); the next default rule schedules it")
            return None


class MatmulWithoutBool(Guarded):
    """dlight's Matmul, except on a function reading a bool buffer: its vectorized epilogue then writes a bool
    broadcast as `float2 v = make_ushort2(...)`, which nvcc rejects (TVM 0.27; a tf.cond predicate selecting
    between two matmul results in a frozen TF1 graph). The next rules schedule such a function."""

    def __init__(self) -> None:
        super().__init__(dl.gpu.Matmul())

    def apply(self, func, target, tunable):
        if '"bool"' in func.script():  # (TVM 0.27's PrimFunc has no buffer_map in Python: its text does)
            return None
        return super().apply(func, target, tunable)


def gpu_default_schedule() -> tvm.transform.Pass:
    """TVM's CUDA pipeline's ApplyDefaultSchedule (same rules, same order), each rule guarded."""
    rules = (MatmulWithoutBool(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(), dl.gpu.Fallback())
    return dl.ApplyDefaultSchedule(*[r if isinstance(r, Guarded) else Guarded(r) for r in rules])
