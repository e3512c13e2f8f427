"""RemoveDeadCode (dead match_casts) and CommonSubexprAcrossColumns."""

import tvm
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

from recom_tvm.ops import defs as Rc
from recom_tvm.passes import CommonSubexprAcrossColumns, RemoveDeadCode


def test_dead_match_cast_chain_is_removed_but_live_checks_stay():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("n",), "int64"), y: R.Tensor(("n",), "int64")):
            n = T.int64()
            k = T.int64()
            m = T.int64()
            with R.dataflow():
                w0 = Rc.where(R.greater_equal(x, R.const(0, "int64")))
                w = R.match_cast(w0, R.Tensor((k, 1), "int64"))  # dead: nothing reads w or k
                y2 = R.match_cast(y, R.Tensor((m,), "int64"))  # live: z's type uses m
                z = R.add(y2, R.const(1, "int64"))
                R.output(z)
            return z

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("n",), "int64"), y: R.Tensor(("n",), "int64")):
            n = T.int64()
            m = T.int64()
            with R.dataflow():
                y2 = R.match_cast(y, R.Tensor((m,), "int64"))
                z = R.add(y2, R.const(1, "int64"))
                R.output(z)
            return z

    tvm.ir.assert_structural_equal(RemoveDeadCode()(Before), Expected)


def test_identical_preprocessing_in_two_columns_is_computed_once():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("B", 1), "float32"), t1: R.Tensor((4, 8), "float32"), t2: R.Tensor((4, 2), "float32")):
            B = T.int64()
            with R.dataflow():
                a = Rc.bucketize(x, R.const([0.0, 1.0, 2.0], "float32"))
                b = Rc.bucketize(x, R.const([0.0, 1.0, 2.0], "float32"))
                e1 = Rc.gather(t1, R.reshape(a, R.shape([B])), 0, False, "c1")
                e2 = Rc.gather(t2, R.reshape(b, R.shape([B])), 0, False, "c2")
                out = R.concat((e1, e2), axis=1)
                R.output(out)
            return out

    after = CommonSubexprAcrossColumns()(Before)
    assert after["main"].script().count("bucketize") == 1
