"""Host calls stay out of CUDA graphs (recom_tvm.backend.host_calls): each check (a packed function run on the
host: a device->host read, a fresh output) is called through a private Relax function, which TVM's
RewriteCUDAGraph never lifts into a captured region. Structural checks of the pass and of the graph rewrite of a
small model with the corpus' failing pattern (a checked gather between graph-able kernels), and the checks still
raise TF's error when run (llvm)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I, relax as R, tirx as T

import recom_tvm.backend.pipeline as pipeline
import recom_tvm.runtime.builtins  # noqa: F401 - registers the checks the compiled module calls
from recom_tvm.backend.cuda_graph import GRAPH_FUNC
from recom_tvm.backend.host_calls import WRAPPER_ATTR, fence_host_calls, is_host_call
from recom_tvm.build_module import make_target
from recom_tvm.ops import LegalizeRecomOps, defs

ROWS, CAP = 10, 64


def test_host_call_goes_through_a_private_function():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("n",), "float32"), c: R.Tensor(("n",), "bool")) -> R.Tensor(("n",), "float32"):
            R.func_attr({"relax.force_pure": True})
            n = T.int64()
            y = R.call_packed("recom_tvm.check_assert", x, c, R.str("boom"), ty_args=R.Tensor((n,), "float32"))
            _s = R.call_packed("vm.builtin.tensor_to_shape", y, ty_args=R.Shape(ndim=1))  # TVM's: left alone
            return y

    @I.ir_module
    class Expected:
        @R.function(private=True)
        def host_recom_tvm_check_assert(a0: R.Tensor(("n",), "float32"),
                                        a1: R.Tensor(("n",), "bool")) -> R.Tensor(("n",), "float32"):
            R.func_attr({WRAPPER_ATTR: "recom_tvm.check_assert", "relax.force_pure": True})
            n = T.int64()
            out = R.call_packed("recom_tvm.check_assert", a0, a1, R.str("boom"), ty_args=R.Tensor((n,), "float32"))
            return out

        @R.function
        def main(x: R.Tensor(("n",), "float32"), c: R.Tensor(("n",), "bool")) -> R.Tensor(("n",), "float32"):
            R.func_attr({"relax.force_pure": True})
            cls = Expected
            y = cls.host_recom_tvm_check_assert(x, c)
            _s = R.call_packed("vm.builtin.tensor_to_shape", y, ty_args=R.Shape(ndim=1))
            return y

    after = fence_host_calls(Before)
    tvm.ir.assert_structural_equal(after, Expected)
    assert relax.analysis.check_well_formed(after)
    assert fence_host_calls(after).same_as(after)  # nothing left to fence


def test_result_of_symbols_bound_elsewhere_is_match_cast_back():
    """A check whose result names a symbol the enclosing function bound elsewhere (a lookup table's unique count):
    the wrapper returns what its parameters define, the caller match_casts it to the call's type."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("a",), "int64"), s: R.Tensor((3,), "int64"),
                 shape: R.Shape(["m"])) -> R.Tensor(("m",), "int64"):
            R.func_attr({"relax.force_pure": True})
            m = T.int64()
            y = R.call_packed("recom_tvm.check_gather", x, s, R.str("col"), R.prim_value(T.int64(7)),
                              ty_args=R.Tensor((m,), "int64"))
            return y

    @I.ir_module
    class Expected:
        @R.function(private=True)
        def host_recom_tvm_check_gather(a0: R.Tensor(("a",), "int64"),
                                        a1: R.Tensor((3,), "int64")) -> R.Tensor(ndim=1, dtype="int64"):
            R.func_attr({WRAPPER_ATTR: "recom_tvm.check_gather", "relax.force_pure": True})
            out = R.call_packed("recom_tvm.check_gather", a0, a1, R.str("col"), R.prim_value(T.int64(7)),
                                ty_args=R.Tensor(ndim=1, dtype="int64"))
            return out

        @R.function
        def main(x: R.Tensor(("a",), "int64"), s: R.Tensor((3,), "int64"),
                 shape: R.Shape(["m"])) -> R.Tensor(("m",), "int64"):
            R.func_attr({"relax.force_pure": True})
            m = T.int64()
            cls = Expected
            y = R.match_cast(cls.host_recom_tvm_check_gather(x, s), R.Tensor((m,), "int64"))
            return y

    after = fence_host_calls(Before)
    tvm.ir.assert_structural_equal(after, Expected)
    assert relax.analysis.check_well_formed(after)


def _checked_gather_mlp() -> tvm.IRModule:
    """ids -> +1 -> checked gather (recom's, as the importer emits it) -> matmul -> relu: the corpus' failing
    pattern (a check between kernels whose storage the graph variant plans statically)."""
    b = tvm.tirx.Var("B", "int64")
    ids = relax.Var("ids", relax.TensorType([b, 1], "int64"))
    table = relax.Var("table", relax.TensorType([ROWS, 4], "float32"))
    w = relax.Var("w", relax.TensorType([4, 2], "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [ids, table, w], attrs={"num_input": 1}):
        with bb.dataflow():
            idx = bb.emit(relax.op.add(ids, relax.const(1, "int64")))
            emb = bb.emit(defs.gather(table, idx, 0, True, "column 'c'"))
            flat = bb.emit(relax.op.reshape(emb, [b, 4]))
            out = bb.emit_output(relax.op.nn.relu(relax.op.matmul(flat, w)))
        bb.emit_func_output(out)
    return bb.get()


def _calls(func: relax.Function) -> list:
    found = []
    relax.analysis.post_order_visit(func.body, lambda e: found.append(e) if isinstance(e, relax.Call) else None)
    return found


def _rewritten(mod: tvm.IRModule, target) -> tvm.IRModule:
    """`mod` through recom_tvm's pipeline with CUDA graphs, as it leaves RewriteCUDAGraph."""
    grabbed = {}

    @tvm.instrument.pass_instrument
    class Grab:
        def run_after_pass(self, m, info):
            if info.name == "RewriteCUDAGraph":
                grabbed["mod"] = m

    with target:
        low = LegalizeRecomOps(None)(mod)
    with target, tvm.transform.PassContext(config={pipeline.USE_CUDA_GRAPH: True}, instruments=[Grab()]):
        pipeline.relax_pipeline(target, graph_max_batch=CAP)(low)
    return grabbed["mod"]


def _captures(mod: tvm.IRModule) -> dict[str, relax.Function]:
    return {gv.name_hint: f for gv, f in mod.functions_items()
            if isinstance(f, relax.Function) and "cuda_graph_capture" in gv.name_hint}


def test_cuda_graph_captures_no_host_call(monkeypatch):
    """After RewriteCUDAGraph (CUDA target, no GPU needed): every captured region holds kernel launches and memory
    views only; the check runs from the graph variant through its wrapper, between captured regions. Without the
    fence TVM lifts the check into a region: what failed with cudaErrorStreamCaptureImplicit on the H200."""
    target = make_target("cuda")
    mod = _rewritten(_checked_gather_mlp(), target)
    captures = _captures(mod)
    assert captures, "the kernels after the check are no longer captured"
    for name, func in captures.items():
        for call in _calls(func):
            op = call.op
            if isinstance(op, tvm.ir.GlobalVar):
                assert isinstance(mod[op], tvm.tirx.PrimFunc), f"{name} calls the Relax function {op.name_hint}"
            else:
                assert isinstance(op, tvm.ir.Op) and op.name in ("relax.memory.alloc_tensor", "relax.reshape"), \
                    f"{name} runs {op} inside the graph"
    wrappers = {gv for gv, f in mod.functions_items() if isinstance(f, relax.Function) and f.attrs is not None
                and WRAPPER_ATTR in f.attrs}
    assert len(wrappers) == 1
    assert any(isinstance(c.op, tvm.ir.GlobalVar) and c.op in wrappers for c in _calls(mod[GRAPH_FUNC]))
    assert not any(isinstance(c.op, relax.ExternFunc) and is_host_call(c) for c in _calls(mod[GRAPH_FUNC]))

    monkeypatch.setattr(pipeline, "_fence_before_graph_rewrite", lambda passes: passes)
    unfenced = _captures(_rewritten(_checked_gather_mlp(), target))
    assert any(isinstance(c.op, relax.ExternFunc) and str(c.op.global_symbol) == "recom_tvm.check_gather"
               for f in unfenced.values() for c in _calls(f))


def test_fenced_check_still_raises_tf_error():
    """The graph build's module on llvm (the fence applied; no graphs on CPUs): same results, and the check raises
    TF's GatherV2 error through its wrapper."""
    from recom_tvm.runtime.builtins import ERROR_MARK

    target = tvm.target.Target({"kind": "llvm"})
    with target:
        low = LegalizeRecomOps(None)(_checked_gather_mlp())
        exe = tvm.compile(low, target=target, relax_pipeline=pipeline.relax_pipeline(target, graph_max_batch=8))
    assert "host_recom_tvm_check_gather" in exe.as_text()
    vm = tvm.runtime.vm.VirtualMachine(exe, tvm.cpu())
    rng = np.random.default_rng(0)
    table = rng.standard_normal((ROWS, 4)).astype("float32")
    w = rng.standard_normal((4, 2)).astype("float32")
    for batch in (3, 8, 20):  # the graph variant's path and main's own
        ids = rng.integers(0, ROWS - 1, (batch, 1)).astype("int64")
        got = vm["main"](tvm.runtime.tensor(ids), tvm.runtime.tensor(table), tvm.runtime.tensor(w)).numpy()
        np.testing.assert_allclose(got, np.maximum(table[ids[:, 0] + 1] @ w, 0), rtol=1e-6, atol=1e-6)
        bad = ids.copy()
        bad[batch // 2, 0] = ROWS - 1  # + 1 = ROWS: out of range
        want = re.escape(f"{ERROR_MARK}column 'c': indices[{batch // 2}] = {ROWS} is not in [0, {ROWS})")
        with pytest.raises(Exception, match=want):
            vm["main"](tvm.runtime.tensor(bad), tvm.runtime.tensor(table), tvm.runtime.tensor(w))
