"""Cold timing of dense layers in offline rounds (runtime.measure): TVM's time_evaluator calls the registered L2
flush before each timed run, so a layer's weights are not hot from the previous run (as inside a model)."""

from __future__ import annotations

import numpy as np
import tvm
import tvm_ffi
from tvm.script import tirx as T

from recom_tvm.runtime import measure


@T.prim_func
def _add_one(a: T.Buffer((4,), "float32"), b: T.Buffer((4,), "float32")):
    for i in range(4):
        b[i] = a[i] + T.float32(1.0)


def test_the_flush_runs_once_before_every_timed_run():
    dev = tvm.cpu()
    lib = tvm.tirx.build(tvm.IRModule({"main": _add_one.with_attr("global_symbol", "main")}), "llvm")
    a, b, flush = measure._l2_flusher(dev)
    assert a.shape[0] * 4 == measure.FLUSH_BYTES
    calls = []

    def counting(*args):
        calls.append(len(args))
        flush(*args)

    tvm_ffi.register_global_func(measure.FLUSH_FUNC, counting, override=True)
    try:
        x = tvm.runtime.tensor(np.arange(4, dtype="float32"), dev)
        y = tvm.runtime.empty((4,), "float32", dev)
        timer = lib.time_evaluator("main", dev, number=1, repeat=7, f_preproc=measure.FLUSH_FUNC)
        assert len(timer(x, y).results) == 7
        assert calls == [2] * 7  # once per timed run, given the kernel's arguments
        np.testing.assert_array_equal(y.numpy(), np.arange(4, dtype="float32") + 1)
    finally:
        tvm_ffi.register_global_func(measure.FLUSH_FUNC, flush, override=True)
