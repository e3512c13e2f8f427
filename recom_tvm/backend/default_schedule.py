"""TVM's default GPU schedules (dlight), with a rule that fails on a function passing it to the next rule, and
column reductions summed in TF-CPU's order.

dlight's ApplyDefaultSchedule stops the whole build when one rule raises on one function (TVM 0.27's Reduction
rule hits an internal check in `rfactor` on some reductions of imported graphs: "block_realize ==
old_block_realize_"); the next rule (GeneralReduction, then Fallback) schedules such a function correctly.
"""

from __future__ import annotations

import tvm
from tvm.s_tir import dlight as dl

from .. import config
from .inline_predicates import loads_bool


class Guarded(dl.ScheduleRule):
    """`rule`, except that an exception it raises means "not applicable" (logged)."""

    def __init__(self, rule: dl.ScheduleRule) -> None:
        self.rule = rule

    def apply(self, func, target, tunable):
        try:
            return self.rule.apply(func, target, tunable)
        except Exception as err:  # noqa: BLE001 - TVM's rule broke on this function: the next rule schedules it
            name = func.attrs["global_symbol"] if func.attrs and "global_symbol" in func.attrs else "a function"
            first = (str(err).splitlines() or [""])[0]  # (an exception without a message: an IndexError here)
            config.log(f"dlight {type(self.rule).__name__} failed on {name} ({type(err).__name__}: "
                       f"{first[:120]}); the next default rule schedules it")
            return None


class MatmulWithoutBool(Guarded):
    """dlight's Matmul, except on a function reading a bool buffer: its vectorized epilogue then writes a bool
    broadcast as `float2 v = make_ushort2(...)`, which nvcc rejects (TVM 0.27; a tf.cond predicate selecting
    between two matmul results in a frozen TF1 graph). The next rules schedule such a function."""

    def __init__(self) -> None:
        super().__init__(dl.gpu.Matmul())

    def apply(self, func, target, tunable):
        if loads_bool(func):
            return None
        return super().apply(func, target, tunable)


class SequentialColumnReduction(dl.gpu.Reduction):
    """A reduction over a non-innermost axis (`reduce_sum(x[B, T, D], axis=1)`: a sequence pooled by the model's
    own code) summed by one thread per output element, in index order.

    dlight's Reduction sums such an axis as a shared-memory tree across 16 threads: float addition is not
    associative, and where a partial sum overflows the order decides between a finite result and +-inf / NaN
    (three dwell times -3.4e38, 3.4e38, -3.4e38: TF-CPU sums them in order to a finite -8.5e37 mean, the tree to
    -inf; seen on the H200 in the corpus' tf2_sequence_features). TF-CPU (Eigen) reduces a non-innermost axis in
    order for each output, so this schedule gives TF's result bit for bit; adjacent threads read adjacent
    elements of the innermost axis, so the loads stay coalesced. Inner reductions keep dlight's schedules (Eigen
    sums those in vector packets and trees itself: no order to reproduce there)."""

    def _sch_inner_spatial(self, sch, target, block, s_factor, unroll_spatial_factor, epilogue_info,
                           loop_order, s_split_index):
        s, r, c = sch.get_loops(block)  # c: a unit loop, or the inner part of a split spatial iter
        sch.reorder(s, c, r)
        bx, tx = sch.split(sch.fuse(s, c), factors=[None, 256])
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")
        if epilogue_info is not None:
            try:  # elementwise on the reduced value: the same thread computes it from a register
                sch.reverse_compute_at(epilogue_info.block_rv, tx, preserve_unit_loops=True)
                sch.set_scope(block, 0, "local")
            except tvm.s_tir.ScheduleError:  # it reads other threads' sums (a broadcast): its own launch
                ebx, etx = sch.split(sch.fuse(*sch.get_loops(epilogue_info.block_rv)), factors=[None, 256])
                sch.bind(ebx, "blockIdx.x")
                sch.bind(etx, "threadIdx.x")
        else:  # accumulate in a register, one store
            sch.reverse_compute_at(sch.cache_write(block, 0, "local"), tx, preserve_unit_loops=True)
        sch.decompose_reduction(block, r)


def gpu_default_schedule() -> tvm.transform.Pass:
    """TVM's CUDA pipeline's ApplyDefaultSchedule (same rules, same order; Reduction with column reductions in
    order), each rule guarded."""
    rules = (MatmulWithoutBool(), dl.gpu.GEMV(), SequentialColumnReduction(), dl.gpu.GeneralReduction(),
             dl.gpu.Fallback())
    return dl.ApplyDefaultSchedule(*[r if isinstance(r, Guarded) else Guarded(r) for r in rules])
