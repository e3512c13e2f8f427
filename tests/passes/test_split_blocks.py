"""SplitDataflowAtSizes: a dataflow block is cut after each match_cast that learns a size at run time, so TVM's
FuseOps (which re-sorts a block by variable dependencies only) cannot move a kernel sized by that symbol above it."""

import numpy as np
import tvm
from tvm import relax, tirx
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

from recom_tvm.ops.split_blocks import SplitDataflowAtSizes


@I.ir_module
class Before:
    @R.function
    def main(x: R.Tensor(("n",), "float32")):
        n = T.int64()
        k = T.int64()
        with R.dataflow():
            pos = R.greater(x, R.const(0.0, "float32"))
            count = R.reshape(R.sum(R.astype(pos, "int64")), R.shape([1]))
            size = R.tensor_to_shape(count)
            known = R.match_cast(size, R.Shape([k]))
            ones = R.ones(R.shape([k]), "float32")
            out = R.add(R.sum(ones), R.sum(R.astype(pos, "float32")))
            R.output(out)
        return out


def _expected() -> tvm.IRModule:
    """Before cut after `known`, `pos` (read after the cut) a Var. Neither TVMScript nor the BlockBuilder keeps two
    adjacent dataflow blocks apart (both merge them), so the function is written with the BlockBuilder and its one
    block is cut by hand at the match_cast."""
    op = relax.op
    n, k = tirx.Var("n", "int64"), tirx.Var("k", "int64")
    x = relax.Var("x", relax.TensorType((n,), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            pos = bb.emit_output(op.greater(x, relax.const(0.0, "float32")))
            count = bb.emit(op.reshape(bb.emit(op.sum(bb.emit(op.astype(pos, "int64")))), [1]))
            bb.match_cast(bb.emit(op.tensor_to_shape(count)), relax.ShapeType([k]))  # binding 5: the cut
            total = bb.emit(op.sum(bb.emit(op.ones(relax.ShapeExpr([k]), "float32"))))
            out = bb.emit_output(op.add(total, bb.emit(op.sum(bb.emit(op.astype(pos, "float32"))))))
        bb.emit_func_output(out)
    func = bb.get()["main"]
    (block,) = func.body.blocks
    cut = [relax.DataflowBlock(block.bindings[:6]), relax.DataflowBlock(block.bindings[6:])]
    body = relax.SeqExpr(cut, func.body.body)
    return tvm.IRModule({"main": relax.Function(func.params, body, func.ret_ty, func.is_pure, func.attrs)})


def test_block_is_cut_after_a_run_time_size():
    tvm.ir.assert_structural_equal(SplitDataflowAtSizes()(Before), _expected())


def test_module_without_run_time_sizes_is_unchanged():
    @I.ir_module
    class Static:
        @R.function
        def main(x: R.Tensor(("n",), "float32")):
            n = T.int64()
            with R.dataflow():
                y = R.match_cast(R.add(x, x), R.Tensor((n,), "float32"))
                R.output(y)
            return y

    assert SplitDataflowAtSizes()(Static).same_as(Static)


def test_split_module_computes_the_same():
    x = np.array([1.0, -2.0, 3.0, 0.5], np.float32)
    for mod in (Before, SplitDataflowAtSizes()(Before)):
        vm = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())
        assert float(vm["main"](tvm.runtime.tensor(x)).numpy()) == 6.0
