"""LiftPartialSums (recom_tvm/backend/partial_sums.py): split-K's partial sums as an output Relax plans, so a CUDA
graph can capture the split (no workspace allocated by the kernel's host side per call)."""

import tvm
from tvm import relax, tirx
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

from tvm.s_tir.stmt import SBlock, SBlockRealize

from recom_tvm.backend.partial_sums import LiftPartialSums, lift_workspace, workspace_buffers


@T.prim_func(private=True, s_tir=True)
def _split_first(var_x: T.handle, var_out: T.handle):
    """A dispatched layer like dense_tail.dispatch makes (buckets as `if tvm_thread_invariant(b <= limit)`): the
    split bucket (b <= 8) sums its chunks through a global [2, b, 2] buffer, the other bucket has none."""
    T.func_attr({"recom_tvm.dense": "[]", "tirx.noalias": True})
    b = T.int64()
    x = T.match_buffer(var_x, (b, T.int64(4)))
    out = T.match_buffer(var_out, (b, T.int64(2)))
    if T.tvm_thread_invariant(b <= T.int64(8)):
        with T.sblock("root"):
            part = T.sblock_alloc_buffer((T.int64(2), b, T.int64(2)))
            for s, i, j in T.grid(T.int64(2), b, T.int64(2)):
                with T.sblock("chunk"):
                    vs, vi, vj = T.axis.remap("SSS", [s, i, j])
                    part[vs, vi, vj] = x[vi, vs * T.int64(2) + vj]
            for i, j in T.grid(b, T.int64(2)):
                with T.sblock("sum"):
                    vi, vj = T.axis.remap("SS", [i, j])
                    out[vi, vj] = part[T.int64(0), vi, vj] + part[T.int64(1), vi, vj]
    else:
        with T.sblock("root"):
            for i, j in T.grid(b, T.int64(2)):
                with T.sblock("sum"):
                    vi, vj = T.axis.remap("SS", [i, j])
                    out[vi, vj] = x[vi, vj] + x[vi, vj + T.int64(2)]


def _layer(bounded: bool) -> tirx.PrimFunc:
    """_split_first; bounded=False: the same buckets in the other order, so the split is the last, unbounded one."""
    if bounded:
        return _split_first
    realize = _split_first.body
    branch = realize.block.body
    swapped = tirx.IfThenElse(branch.condition, branch.else_case, branch.then_case)
    b = realize.block
    block = SBlock(b.iter_vars, b.reads, b.writes, b.name_hint, swapped, b.init, b.alloc_buffers, b.match_buffers,
                   b.annotations)
    return _split_first.with_body(SBlockRealize(realize.iter_values, realize.predicate, block))


@T.prim_func(private=True, s_tir=True)
def _two_buffers(var_x: T.handle, var_out: T.handle):
    """One bucket with two global buffers (both views at one address would overlap)."""
    T.func_attr({"recom_tvm.dense": "[]", "tirx.noalias": True})
    b = T.int64()
    x = T.match_buffer(var_x, (b, T.int64(4)))
    out = T.match_buffer(var_out, (b, T.int64(2)))
    if T.tvm_thread_invariant(b <= T.int64(8)):
        with T.sblock("root"):
            part = T.sblock_alloc_buffer((b, T.int64(2)))
            more = T.sblock_alloc_buffer((b, T.int64(2)))
            for i, j in T.grid(b, T.int64(2)):
                with T.sblock("first"):
                    vi, vj = T.axis.remap("SS", [i, j])
                    part[vi, vj] = x[vi, vj]
            for i, j in T.grid(b, T.int64(2)):
                with T.sblock("second"):
                    vi, vj = T.axis.remap("SS", [i, j])
                    more[vi, vj] = x[vi, vj + T.int64(2)]
            for i, j in T.grid(b, T.int64(2)):
                with T.sblock("sum"):
                    vi, vj = T.axis.remap("SS", [i, j])
                    out[vi, vj] = part[vi, vj] + more[vi, vj]
    else:
        with T.sblock("root"):
            for i, j in T.grid(b, T.int64(2)):
                with T.sblock("sum"):
                    vi, vj = T.axis.remap("SS", [i, j])
                    out[vi, vj] = x[vi, vj] + x[vi, vj + T.int64(2)]


def _module(layer: tirx.PrimFunc, also_in_place: bool = False) -> tvm.IRModule:
    """main(x [B, 4]) = y + y, y = layer(x) through call_tir; also_in_place: a second function reaches the layer
    through call_tir_inplace (another signature contract)."""
    batch = tirx.Var("B", "int64")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType([batch, 4], "float32"))
    gv = bb.add_func(layer, "layer")
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.call_tir(gv, [x], relax.TensorType([batch, 2], "float32")))
            z = bb.emit_output(relax.op.add(y, y))
        bb.emit_func_output(z)
    if also_in_place:
        v = relax.Var("v", relax.TensorType([batch, 4], "float32"))
        out = relax.Var("out", relax.TensorType([batch, 2], "float32"))
        with bb.function("other", [v, out]):
            w = bb.emit(relax.call_tir_inplace(gv, [v, out], [1], relax.TensorType([batch, 2], "float32")))
            bb.emit_func_output(w)
    return bb.get()


def test_bounded_partial_sums_become_a_second_output():
    before = _module(_layer(bounded=True))

    @I.ir_module
    class Expected:
        @T.prim_func(private=True, s_tir=True)
        def layer(var_x: T.handle, var_out: T.handle, var_partial_sums: T.handle):
            T.func_attr({"recom_tvm.dense": "[]", "tirx.noalias": True})
            b = T.int64()
            x = T.match_buffer(var_x, (b, T.int64(4)))
            out = T.match_buffer(var_out, (b, T.int64(2)))
            partial_sums = T.match_buffer(var_partial_sums, (32,))  # 2 x 8 x 2: the split bucket's at B = 8
            if T.tvm_thread_invariant(b <= T.int64(8)):
                with T.sblock("root"):
                    T.reads(x[T.int64(0):b, T.int64(0):T.int64(4)])  # as the block was (part was its own)
                    T.writes(out[T.int64(0):b, T.int64(0):T.int64(2)])
                    part = T.decl_buffer((T.int64(2), b, T.int64(2)), data=partial_sums.data)
                    for s, i, j in T.grid(T.int64(2), b, T.int64(2)):
                        with T.sblock("chunk"):
                            vs, vi, vj = T.axis.remap("SSS", [s, i, j])
                            part[vs, vi, vj] = x[vi, vs * T.int64(2) + vj]
                    for i, j in T.grid(b, T.int64(2)):
                        with T.sblock("sum"):
                            vi, vj = T.axis.remap("SS", [i, j])
                            out[vi, vj] = part[T.int64(0), vi, vj] + part[T.int64(1), vi, vj]
            else:
                with T.sblock("root"):
                    for i, j in T.grid(b, T.int64(2)):
                        with T.sblock("sum"):
                            vi, vj = T.axis.remap("SS", [i, j])
                            out[vi, vj] = x[vi, vj] + x[vi, vj + T.int64(2)]

        @R.function
        def main(x: R.Tensor(("B", 4), "float32")) -> R.Tensor(("B", 2), "float32"):
            B = T.int64()
            with R.dataflow():
                with_partial_sums = R.call_tir(Expected.layer, (x,), out_ty=[R.Tensor((B, 2), "float32"),
                                                                              R.Tensor((32,), "float32")])
                y = with_partial_sums[0]
                z = R.add(y, y)
                R.output(z)
            return z

    tvm.ir.assert_structural_equal(LiftPartialSums(before), Expected)


def test_unbounded_partial_sums_and_other_callers_are_left_alone():
    """A split in the last bucket has no batch bound (its workspace stays; graph builds schedule such a layer
    without the split); two global buffers in one bucket would overlap as views of one parameter; a function
    without the dense tail's attribute is not a dispatched layer; a layer also reached other than as call_tir's
    callee keeps its signature."""
    unbounded = _layer(bounded=False)
    assert [(i, bound) for _, i, bound in workspace_buffers(unbounded)] == [(1, None)]
    assert lift_workspace(unbounded) is None
    bounded = _layer(bounded=True)
    assert [(i, bound[1]) for _, i, bound in workspace_buffers(bounded)] == [(0, 8)]

    assert len(workspace_buffers(_two_buffers)) == 2 and lift_workspace(_two_buffers) is None
    for mod in (_module(unbounded), _module(bounded.without_attr("recom_tvm.dense")), _module(_two_buffers),
                _module(bounded, also_in_place=True)):
        assert LiftPartialSums(mod).same_as(mod)
