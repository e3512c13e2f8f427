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


def gpu_default_schedule() -> tvm.transform.Pass:
    """TVM's CUDA pipeline's ApplyDefaultSchedule (same rules, same order), each rule guarded."""
    rules = (dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(), dl.gpu.Fallback())
    return dl.ApplyDefaultSchedule(*[Guarded(r) for r in rules])
