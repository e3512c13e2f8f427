"""backend/empty_reductions.py: TVM leaves a reduction over zero elements unwritten (R.sum of an empty tensor read
back whatever the buffer held: -4096, 7, ...); guarded, it is TF's identity."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from recom_tvm.backend.empty_reductions import GuardEmptyReductions


def _module(op: str, dtype: str, axis, keepdims: bool, static: bool = False) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    n = tvm.tirx.Var("n", "int64")
    x = relax.Var("x", relax.TensorType([4, 3] if static else [n, 3], dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_output(getattr(relax.op, op)(x, axis=axis, keepdims=keepdims))
        bb.emit_func_output(y)
    return bb.get()


def _run(mod: tvm.IRModule, x: np.ndarray) -> np.ndarray:
    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    vm["main"](tvm.runtime.tensor(np.full((5, 3), 77, x.dtype)))  # leave numbers in the pool's buffers
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def _tf_reference(op: str, x: np.ndarray, axis, keepdims: bool) -> np.ndarray:
    import tensorflow as tf

    fn = {"sum": tf.reduce_sum, "prod": tf.reduce_prod, "max": tf.reduce_max, "min": tf.reduce_min,
          "mean": tf.reduce_mean, "variance": tf.math.reduce_variance}[op]
    return fn(tf.constant(x), axis=axis, keepdims=keepdims).numpy()


@pytest.mark.parametrize("op,dtype", [(op, dt) for op in ("sum", "prod", "max", "min", "mean")
                                      for dt in ("float32", "int32")] + [("variance", "float32")])
@pytest.mark.parametrize("axis,keepdims", [(None, False), ([0], False), ([0], True), ([-2], False)])
def test_reductions_over_nothing_give_tf_identity(op, dtype, axis, keepdims):
    """(an integer mean over nothing divided by zero: SIGFPE, the process gone)"""
    mod = GuardEmptyReductions(_module(op, dtype, axis, keepdims))
    for rows in (0, 2):
        x = (np.arange(rows * 3).reshape(rows, 3) + 1).astype(dtype)
        got = _run(mod, x)
        exp = _tf_reference(op, x, axis, keepdims)
        np.testing.assert_allclose(got, exp, rtol=1e-6, err_msg=f"{op} {dtype} axis={axis} rows={rows}")
        assert got.shape == exp.shape


def test_provably_non_empty_reductions_are_left_alone():
    """A reduction over a static extent (or a column of 3) needs no guard: the module is unchanged."""
    before = _module("sum", "float32", None, False, static=True)
    tvm.ir.assert_structural_equal(GuardEmptyReductions(before), before)
    over_columns = _module("max", "float32", [1], False)  # 3 per row, whatever n is
    tvm.ir.assert_structural_equal(GuardEmptyReductions(over_columns), over_columns)


def test_guarded_form():
    """Before / After: sum over [n, 3] becomes where(n * 3 > 0, sum, 0) (the extent written by a shape kernel)."""
    after = GuardEmptyReductions(_module("sum", "float32", None, False))
    main = after["main"]
    text = main.script()
    assert "R.where" in text and "recom_shape_tensor" in text, text
    kernels = [gv.name_hint for gv, f in after.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    assert kernels == ["recom_shape_tensor"], kernels
