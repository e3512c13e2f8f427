"""FoldProvenComparisons and the value ranges behind it."""

import tvm
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

from recom_tvm.ops import defs as Rc
from recom_tvm.passes import FoldProvenComparisons, ValueRanges

from .helpers import hashed, strip, with_spec


@I.ir_module
class Hashed:
    @R.function
    def main(ids: R.Tensor(("n",), "int64")):
        n = T.int64()
        with R.dataflow():
            m = R.greater_equal(ids, R.const(0, "int64"))
            R.output(m)
        return m


def test_hashed_ids_are_nonnegative():
    @I.ir_module
    class Expected:
        @R.function
        def main(ids: R.Tensor(("n",), "int64")):
            n = T.int64()
            with R.dataflow():
                m = R.full(R.shape([n]), R.const(True, "bool"), dtype="bool")
                R.output(m)
            return m

    mod = with_spec(Hashed, inputs={"ids": ("host", "h:0")}, host_plan=[hashed("h:0", 100)])
    tvm.ir.assert_structural_equal(strip(FoldProvenComparisons()(mod)), Expected)


def test_unknown_ids_keep_their_filter():
    mod = with_spec(Hashed)  # a plain feed: ids may be negative
    tvm.ir.assert_structural_equal(strip(FoldProvenComparisons()(mod)), Hashed)


def test_ranges_of_bucketize_identity_default_and_arithmetic():
    @I.ir_module
    class Mod:
        @R.function
        def main(x: R.Tensor(("n",), "float32"), v: R.Tensor(("n",), "int64")):
            n = T.int64()
            with R.dataflow():
                b = Rc.bucketize(x, R.const([0.0, 1.0, 2.0], "float32"))
                off = R.add(R.astype(b, "int64"), R.const(10, "int64"))
                bad = R.logical_or(R.less(v, R.const(0, "int64")), R.greater_equal(v, R.const(20, "int64")))
                ident = R.where(bad, R.const(3, "int64"), v)
                R.output(b, off, ident)
            return (b, off, ident)

    vr = ValueRanges(Mod["main"])
    b, off, ident = (blk for blk in Mod["main"].body.blocks[0].bindings if blk.var.name in ("b", "off", "ident"))
    assert vr.of(b.var) == (0, 3)
    assert vr.of(off.var) == (10, 13)
    assert vr.of(ident.var) == (0, 19)
