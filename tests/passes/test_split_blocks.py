"""SplitDataflowAtSizes: a dataflow block is cut after each match_cast that learns a size at run time, so TVM's
FuseOps (which re-sorts a block by variable dependencies only) cannot move a kernel sized by that symbol above it."""

import numpy as np
import tvm
from tvm import relax
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


def test_block_is_cut_after_a_run_time_size():
    """(TVMScript merges adjacent dataflow blocks when parsing, so the expected form is checked by structure.)"""
    after = SplitDataflowAtSizes()(Before)["main"]
    blocks = after.body.blocks
    assert [type(b) for b in blocks] == [relax.DataflowBlock, relax.DataflowBlock]
    assert [b.var.name for b in blocks[0].bindings] == ["pos", "lv1", "lv2", "count", "size", "known"]
    assert isinstance(blocks[0].bindings[-1], relax.MatchCast)
    assert blocks[1].bindings[0].var.name == "ones"
    # `pos` is read after the cut: a Var (a block's output), the others stay DataflowVars
    kinds = {b.var.name: type(b.var) for b in blocks[0].bindings}
    assert kinds["pos"] is relax.Var and kinds["count"] is relax.DataflowVar


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
