"""The kills TVM's KillAfterLastUse emits for a match_cast of a constant (no VM register: codegen's
"Expected the object to be killed to be stored in a register ... kConstIdx") are removed right after it
(recom_tvm.backend.const_kills): the pass on small functions (Before / Expected), on what TVM's KillAfterLastUse
emits, its place in the finalize passes, and a user graph that failed to build (tf.concat of a fed [None, None]
tensor and a constant: ConcatV2's ctx.unify casts the constant to the fed dim) checked against TF."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I, relax as R, tirx as T

import recom_tvm
from recom_tvm.backend.const_kills import DropConstantKills
from recom_tvm.cuda_support import nvcc_path

from conftest import FunctionModel

_A = np.arange(4, dtype="float32")
_B = np.ones(4, dtype="float32")


def _kills_of(func: relax.Function) -> list[str]:
    """The names of the variables `func` kills, in order."""
    names = []

    def visit(e):
        if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) and "kill" in e.op.name:
            names.append(e.args[0].name)

    relax.analysis.post_order_visit(func.body, visit)
    return names


def test_kills_of_constants_removed_others_kept():
    """A match_cast of a constant (as KillAfterLastUse leaves it: the constant inline) and one through a chain of
    bindings: their kills (kill_tensor, kill_object) go; the kills of a storage and of a tensor stay."""

    @I.ir_module
    class Before:
        @T.prim_func(private=True)
        def add(x: T.handle, y: T.handle, z: T.handle):
            T.evaluate(0)

        @R.function
        def main(x: R.Tensor(("n",), "float32")) -> R.Tensor(("n",), "float32"):
            R.func_attr({"relax.force_pure": True})
            n = T.int64()
            cls = Before
            c1 = R.match_cast(R.const(_A), R.Tensor((n,), "float32"))
            c = R.const(_B)
            c2 = c
            c3 = R.match_cast(c2, R.Tensor((n,), "float32"))
            c4 = c3
            s0 = R.memory.alloc_storage(R.shape([4 * n]), 0, "global", "float32")
            a0 = R.memory.alloc_tensor(s0, 0, R.shape([n]), "float32")
            R.memory.kill_storage(s0)
            cls.add(x, c1, a0)
            R.memory.kill_tensor(c1)
            s1 = R.memory.alloc_storage(R.shape([4 * n]), 0, "global", "float32")
            a1 = R.memory.alloc_tensor(s1, 0, R.shape([n]), "float32")
            R.memory.kill_storage(s1)
            cls.add(a0, c4, a1)
            R.memory.kill_tensor(a0)
            R.vm.kill_object(c4)
            return a1

    @I.ir_module
    class Expected:
        @T.prim_func(private=True)
        def add(x: T.handle, y: T.handle, z: T.handle):
            T.evaluate(0)

        @R.function
        def main(x: R.Tensor(("n",), "float32")) -> R.Tensor(("n",), "float32"):
            R.func_attr({"relax.force_pure": True})
            n = T.int64()
            cls = Expected
            c1 = R.match_cast(R.const(_A), R.Tensor((n,), "float32"))
            c = R.const(_B)
            c2 = c
            c3 = R.match_cast(c2, R.Tensor((n,), "float32"))
            c4 = c3
            s0 = R.memory.alloc_storage(R.shape([4 * n]), 0, "global", "float32")
            a0 = R.memory.alloc_tensor(s0, 0, R.shape([n]), "float32")
            R.memory.kill_storage(s0)
            cls.add(x, c1, a0)
            s1 = R.memory.alloc_storage(R.shape([4 * n]), 0, "global", "float32")
            a1 = R.memory.alloc_tensor(s1, 0, R.shape([n]), "float32")
            R.memory.kill_storage(s1)
            cls.add(a0, c4, a1)
            R.memory.kill_tensor(a0)
            return a1

    after = DropConstantKills(Before)
    tvm.ir.assert_structural_equal(after, Expected)
    assert DropConstantKills(after).same_as(after)  # nothing left to remove: the module itself


def test_kill_of_a_constant_inside_a_branch_removed():
    @I.ir_module
    class Before:
        @T.prim_func(private=True)
        def add(x: T.handle, y: T.handle, z: T.handle):
            T.evaluate(0)

        @R.function
        def main(x: R.Tensor(("n",), "float32"), flag: R.Prim("bool")) -> R.Tensor(("n",), "float32"):
            R.func_attr({"relax.force_pure": True})
            n = T.int64()
            cls = Before
            c1 = R.match_cast(R.const(_A), R.Tensor((n,), "float32"))
            if flag:
                s0 = R.memory.alloc_storage(R.shape([4 * n]), 0, "global", "float32")
                a0 = R.memory.alloc_tensor(s0, 0, R.shape([n]), "float32")
                R.memory.kill_storage(s0)
                cls.add(x, c1, a0)
                R.memory.kill_tensor(c1)
                r = a0
            else:
                r = x
            return r

    @I.ir_module
    class Expected:
        @T.prim_func(private=True)
        def add(x: T.handle, y: T.handle, z: T.handle):
            T.evaluate(0)

        @R.function
        def main(x: R.Tensor(("n",), "float32"), flag: R.Prim("bool")) -> R.Tensor(("n",), "float32"):
            R.func_attr({"relax.force_pure": True})
            n = T.int64()
            cls = Expected
            c1 = R.match_cast(R.const(_A), R.Tensor((n,), "float32"))
            if flag:
                s0 = R.memory.alloc_storage(R.shape([4 * n]), 0, "global", "float32")
                a0 = R.memory.alloc_tensor(s0, 0, R.shape([n]), "float32")
                R.memory.kill_storage(s0)
                cls.add(x, c1, a0)
                r = a0
            else:
                r = x
            return r

    tvm.ir.assert_structural_equal(DropConstantKills(Before), Expected)


def test_module_without_such_kills_is_unchanged():
    @I.ir_module
    class Mod:
        @T.prim_func(private=True)
        def add(x: T.handle, y: T.handle, z: T.handle):
            T.evaluate(0)

        @R.function
        def main(x: R.Tensor(("n",), "float32")) -> R.Tensor(("n",), "float32"):
            R.func_attr({"relax.force_pure": True})
            n = T.int64()
            cls = Mod
            c = R.const(_A)
            s0 = R.memory.alloc_storage(R.shape([4 * n]), 0, "global", "float32")
            a0 = R.memory.alloc_tensor(s0, 0, R.shape([n]), "float32")
            R.memory.kill_storage(s0)
            cls.add(x, c, a0)
            R.memory.kill_tensor(x)
            return a0

    assert DropConstantKills(Mod).same_as(Mod)


def test_after_tvm_kill_after_last_use_the_module_builds():
    """What TVM's KillAfterLastUse makes of a match_cast of a constant whose symbol is used elsewhere (so the cast
    survives its CanonicalizeBindings, as in an imported graph): a kill_tensor of the cast, which VM codegen
    rejects; with the pass, only that kill is gone and the module builds."""

    @I.ir_module
    class Lowered:
        @T.prim_func(private=True)
        def add(x: T.handle, y: T.handle, z: T.handle):
            T.evaluate(0)

        @T.prim_func(private=True)
        def fill(n: T.int64, z: T.handle):
            T.evaluate(0)

        @R.function
        def main(x: R.Tensor(("n",), "float32")) -> R.Tensor(("n",), "float32"):
            R.func_attr({"relax.force_pure": True})
            n = T.int64()
            cls = Lowered
            c = R.const(_A)
            c1 = R.match_cast(c, R.Tensor((n,), "float32"))
            s0 = R.memory.alloc_storage(R.shape([4 * n]), 0, "global", "float32")
            a0 = R.memory.alloc_tensor(s0, 0, R.shape([n]), "float32")
            cls.add(x, c1, a0)
            s1 = R.memory.alloc_storage(R.shape([8]), 0, "global", "int64")
            a1 = R.memory.alloc_tensor(s1, 0, R.shape([1]), "int64")
            cls.fill(n, a1)
            s2 = R.memory.alloc_storage(R.shape([4 * n]), 0, "global", "float32")
            a2 = R.memory.alloc_tensor(s2, 0, R.shape([n]), "float32")
            cls.add(a0, a0, a2)
            return a2

    # the rest of TVM's finalize passes (after KillAfterLastUse) and codegen
    rest = tvm.transform.Sequential([relax.transform.LowerRuntimeBuiltin(), relax.transform.ComputePrimValue(),
                                     relax.transform.VMShapeLower(), relax.transform.AttachGlobalSymbol()])
    killed = relax.transform.KillAfterLastUse()(Lowered)
    assert "c1" in _kills_of(killed["main"])  # what TVM emits (if it stops, this pass may go)
    with pytest.raises(Exception, match="kConstIdx"):
        tvm.compile(killed, "llvm", relax_pipeline=rest)
    after = DropConstantKills(killed)
    kept = _kills_of(killed["main"])
    kept.remove("c1")
    assert _kills_of(after["main"]) == kept
    vm = relax.VirtualMachine(tvm.compile(after, "llvm", relax_pipeline=rest), tvm.cpu())
    vm["main"](tvm.runtime.tensor(np.zeros(4, "float32")))  # (the kernels do nothing: it runs, the cast checks)


@pytest.mark.parametrize("kind", ["llvm", "cuda"])
def test_pass_runs_right_after_kill_after_last_use(kind):
    """In the finalize passes of both targets: right after KillAfterLastUse, before KeepStorageUntilSync (which
    would otherwise see the kills of constants too) where that runs."""
    from recom_tvm import config
    from recom_tvm.backend import pipeline

    target = tvm.target.Target(kind)
    if kind == "cuda":
        from tvm.relax.backend.cuda import pipeline as backend

        finalize = list(backend.finalize_passes(target))
    else:
        finalize = [relax.transform.StaticPlanBlockMemory(), relax.transform.KillAfterLastUse(),
                    relax.transform.VMShapeLower()]
    old = config.keep_storage
    try:
        config.keep_storage = "on"
        names = [p.info.name for p in pipeline._recom_finalize(finalize, target, False, None)]
    finally:
        config.keep_storage = old
    i = names.index("KillAfterLastUse")
    assert names[i + 1:i + 3] == ["recom_tvm.DropConstantKills", "recom_tvm.KeepStorageUntilSync"], names


# --------------------------------------------------------------------------------- a user graph (tf.concat)
# tf.concat([x, C], 0) * tf.cast(tf.shape(x)[1], tf.float32), x: [None, None], C a constant: ConcatV2's ctx.unify
# match_casts C to (2, x_dim1); x_dim1 is used again (the shape read), so the cast survives to the VM build and
# KillAfterLastUse killed it: "Expected the object to be killed to be stored in a register, but argument lv1
# produced VM instruction of type kConstIdx".

_C = np.arange(8, dtype=np.float32).reshape(2, 4)


def _concat_function():
    import tensorflow as tf

    c = tf.constant(_C)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def serve(x):
        return {"o": tf.concat([x, c], axis=0) * tf.cast(tf.shape(x)[1], tf.float32)}

    return serve.get_concrete_function()


@pytest.fixture(scope="module")
def concat_model():
    return FunctionModel(_concat_function())


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_concat_with_a_constant_matches_tf(concat_model, batch):
    x = (np.arange(batch * 4, dtype=np.float32).reshape(batch, 4) - 5.0) / 3.0
    results = concat_model.check({concat_model.names[0]: x}, (x,), f"B={batch}")
    assert not any(isinstance(r, Exception) for r in results.values()), results


def test_concat_with_a_constant_of_other_width_raises_like_tf(concat_model):
    """x's width is not C's: TF's ConcatOp error; ours from the constant's match_cast (the cast kept, its kill
    gone)."""
    x = np.ones((2, 3), np.float32)
    results = concat_model.check({concat_model.names[0]: x}, (x,), "width 3")
    assert all(isinstance(r, Exception) for r in results.values()), results


@pytest.mark.skipif(nvcc_path() is None, reason="nvcc (CUDA toolkit) is not installed on this host")
def test_concat_with_a_constant_builds_for_cuda():
    """The same graph through the CUDA pipeline (the pass runs there too). On CUDA its cast does not survive to
    KillAfterLastUse (fusion leaves it unused), so this is a build check only; the pass's place in CUDA's
    finalize is test_pass_runs_right_after_kill_after_last_use."""
    mod, params, _ = recom_tvm.from_tensorflow(_concat_function())
    recom_tvm.build(mod, "cuda", params)
    recom_tvm.build(recom_tvm.optimize(mod), "cuda", params)
