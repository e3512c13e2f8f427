"""InlineBoolIntermediates: a fused layer's bool intermediates (TF's Relu is `where(x < 0, 0, x)`) become
expressions in their consumer, so the dense tail and dlight's Matmul schedule the layer; a bool the function
cannot inline (a parameter: a tf.cond predicate) stays, and so do the guards against it. The TF-imported demo's
MLP, legalized and fused as the CUDA pipeline does it, has every layer under the dense tail (none was, while TF's
Relu left a bool buffer in each layer: E's second layer took 1.8 ms at B = 32 on an H200)."""

from __future__ import annotations

import tvm
from tvm.script import ir as I
from tvm.script import tirx as T

from recom_tvm.backend.inline_predicates import InlineBoolIntermediates, loads_bool
from recom_tvm.backend.pipeline import cuda_legalize_passes
from recom_tvm.build_module import make_target
from recom_tvm.models import zoo
from recom_tvm.ops import LegalizeRecomOps
from recom_tvm.schedules.dense_tail import DENSE_ATTR, match_dense

from dense_helpers import select_layer


@I.ir_module
class Before:
    @T.prim_func(private=True, s_tir=True)
    def layer(x: T.handle, w: T.Buffer((T.int64(8), T.int64(4)), "float32"),
              bias: T.Buffer((T.int64(4),), "float32"), zero: T.Buffer((), "float32"), out: T.handle):
        T.func_attr({"tirx.noalias": True})
        B = T.int64()
        X = T.match_buffer(x, (B, T.int64(8)))
        O = T.match_buffer(out, (B, T.int64(4)))
        mm = T.sblock_alloc_buffer((B, T.int64(4)))
        add = T.sblock_alloc_buffer((B, T.int64(4)))
        less = T.sblock_alloc_buffer((B, T.int64(4)), "bool")
        for i, j, k in T.grid(B, T.int64(4), T.int64(8)):
            with T.sblock("matmul"):
                vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                with T.init():
                    mm[vi, vj] = T.float32(0.0)
                mm[vi, vj] = mm[vi, vj] + X[vi, vk] * w[vk, vj]
        for i, j in T.grid(B, T.int64(4)):
            with T.sblock("T_add"):
                vi, vj = T.axis.remap("SS", [i, j])
                add[vi, vj] = mm[vi, vj] + bias[vj]
        for i, j in T.grid(B, T.int64(4)):
            with T.sblock("T_less"):
                vi, vj = T.axis.remap("SS", [i, j])
                less[vi, vj] = add[vi, vj] < T.float32(0.0)
        for i, j in T.grid(B, T.int64(4)):
            with T.sblock("T_where"):
                vi, vj = T.axis.remap("SS", [i, j])
                O[vi, vj] = T.Select(T.int64(0) < T.Cast("int64", less[vi, vj]), zero[()], add[vi, vj])


@I.ir_module
class Expected:
    @T.prim_func(private=True, s_tir=True)
    def layer(x: T.handle, w: T.Buffer((T.int64(8), T.int64(4)), "float32"),
              bias: T.Buffer((T.int64(4),), "float32"), zero: T.Buffer((), "float32"), out: T.handle):
        T.func_attr({"tirx.noalias": True})
        B = T.int64()
        X = T.match_buffer(x, (B, T.int64(8)))
        O = T.match_buffer(out, (B, T.int64(4)))
        mm = T.sblock_alloc_buffer((B, T.int64(4)))
        add = T.sblock_alloc_buffer((B, T.int64(4)))
        for i, j, k in T.grid(B, T.int64(4), T.int64(8)):
            with T.sblock("matmul"):
                vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                with T.init():
                    mm[vi, vj] = T.float32(0.0)
                mm[vi, vj] = mm[vi, vj] + X[vi, vk] * w[vk, vj]
        for i, j in T.grid(B, T.int64(4)):
            with T.sblock("T_add"):
                vi, vj = T.axis.remap("SS", [i, j])
                add[vi, vj] = mm[vi, vj] + bias[vj]
        for i, j in T.grid(B, T.int64(4)):
            with T.sblock("T_where"):
                vi, vj = T.axis.remap("SS", [i, j])
                O[vi, vj] = T.Select(T.int64(0) < T.Cast("int64", add[vi, vj] < T.float32(0.0)), zero[()],
                                     add[vi, vj])


def test_relu_bool_is_inlined():
    after = InlineBoolIntermediates()(Before)
    tvm.ir.assert_structural_equal(after, Expected)
    assert match_dense(Before["layer"]) is None  # the bool load kept the layer from the dense tail
    assert match_dense(after["layer"]) is not None and not loads_bool(after["layer"])


def test_a_bool_parameter_stays():
    """A tf.cond predicate is a parameter of the layer: nothing to inline, the function is returned as it is
    (and the dense tail and dlight's Matmul keep away from it)."""
    mod = tvm.IRModule({"select": select_layer(16, 8)})
    after = InlineBoolIntermediates()(mod)
    assert after["select"].same_as(mod["select"])
    assert loads_bool(after["select"]) and match_dense(after["select"]) is None


def test_imported_mlp_is_scheduled_by_the_dense_tail_on_cuda(compiled):
    """The TF-imported demo (Keras Dense layers with Relu), legalized and fused by the CUDA pipeline: every dense
    layer carries the dense tail's schedules; without the inlining none does."""
    c = compiled(zoo.demo(), optimized=True)
    target = make_target("cuda")
    mod = LegalizeRecomOps(None)(c.mod)

    def scheduled(passes):
        with target:
            out = tvm.transform.Sequential(passes)(mod)
        return sorted(gv.name_hint for gv, f in out.functions_items()
                      if isinstance(f, tvm.tirx.PrimFunc) and f.attrs is not None and DENSE_ATTR in f.attrs)

    passes = cuda_legalize_passes(target, default_schedule=False)
    names = scheduled(passes)
    assert len(names) == 4, names  # the bottom layer and the three top ones
    assert sum("where" in n for n in names) == 3  # the Relu layers (the last one ends in a sigmoid)
    without = [p for p in passes if p.info.name != "recom_tvm.InlineBoolIntermediates"]
    assert len(without) == len(passes) - 1
    assert len(scheduled(without)) == 1  # only the sigmoid layer: the regression this pass fixes


def test_tuning_finds_the_imported_layers_on_cuda(compiled):
    """The tuner's view of the layers (dense_space.dense_layers: what `recom_tvm.tune` and offline rounds make
    tasks of) is the build pipeline's: all four of the imported demo's layers, under the keys the build looks up.
    Its own copy of the passes once lacked the inlining, and an imported MLP had no dense task at all."""
    from recom_tvm.schedules.dense_space import dense_layers

    c = compiled(zoo.demo(), optimized=True)
    target = make_target("cuda")
    layers = dense_layers(c.mod, target, 32)
    assert len(layers) == 4, [k for k, _ in layers]
