"""Dense-tail test helpers: a Relax MLP like a TF model's tail (recom_tvm.models.mlp), its layers as the build
pipeline makes them, and the serial emulation of CUDA schedules on the CPU."""

from __future__ import annotations

import re

import numpy as np
import tvm

from recom_tvm.build_module import make_target
from recom_tvm.models.mlp import relax_mlp
from recom_tvm.schedules.dense_space import lowered_layers


def mlp_module(k: int, layers: tuple[int, ...], seed: int = 0) -> tvm.IRModule:
    return relax_mlp(k, layers, seed)


def fused_layers(mod: tvm.IRModule) -> dict[str, tvm.tirx.PrimFunc]:
    """{name: layer} as the CUDA pipeline makes them (legalized, fused, bool intermediates inlined): what it
    schedules."""
    return lowered_layers(mod, make_target("cuda"))


def emulate(func: tvm.tirx.PrimFunc) -> tvm.IRModule:
    """A CUDA-scheduled function as a serial CPU program: thread-bound loops become serial loops and shared memory
    global (and a software pipeline synchronous). The gemv schedule's phases (partial sums, then their reduction and
    the epilogue) are separate loop nests
    over the threads, so running each thread in turn computes what the GPU computes: the schedule's
    transformations (splits, rfactor, padding, buckets, epilogue placement) are checked, TVM's CUDA lowering is not.
    Blocks run last first (_reversed_blocks): a write outside a block's own outputs is not hidden by order."""
    text = _reversed_blocks(func.with_attr("global_symbol", "main").script())
    text = re.sub(r'T\.thread_binding\(([^,]+), thread="[^"]+"\)', r"T.serial(\1)", text)
    text = text.replace('scope="shared"', 'scope="global"')
    # asynchronous copies (cp.async) have no CPU lowering; the software pipeline itself runs serially as well
    text = re.sub(r'"software_pipeline_async_stages": \[[0-9, ]*\],? ?', "", text)
    mod = tvm.script.from_source(text)
    return mod if isinstance(mod, tvm.IRModule) else tvm.IRModule({"main": mod})


_BLOCK_LOOP = re.compile(r'^(\s*)for (\w+) in T\.thread_binding\((.+), thread="blockIdx\.[xyz]"\):$')


def _reversed_blocks(text: str) -> str:
    """Loops over CUDA blocks run last block first: the GPU runs blocks in any order, so a block that writes
    another block's outputs (a missing guard) shows as a wrong result instead of being overwritten in order.
    `for v in <blocks>(ext):` becomes `for v_rev in T.serial(ext): for v in T.serial(ext - 1 - v_rev, ext - v_rev):`
    (v stays a loop variable, as the blocks' bindings need), its body indented one level more."""
    out, opened = [], []  # opened: indents of the rewritten loops whose bodies are being indented
    for line in text.split("\n"):
        indent = len(line) - len(line.lstrip())
        if line.strip():
            opened = [i for i in opened if indent > i]
        line = "    " * len(opened) + line if line.strip() else line
        m = _BLOCK_LOOP.match(line)
        if m:
            ind, var, ext = m.groups()
            out.append(f"{ind}for {var}_rev in T.serial({ext}):")
            line = f"{ind}    for {var} in T.serial({ext} - 1 - {var}_rev, {ext} - {var}_rev):"
            opened.append(indent)
        out.append(line)
    return "\n".join(out)


def run_layer(lib, func: tvm.tirx.PrimFunc, batch: int, seed: int,
              lifted: tvm.tirx.PrimFunc | None = None) -> np.ndarray:
    """Run a layer's library on random inputs (its parameters' shapes at this batch); the output, poisoned with NaN
    first, is returned. lifted: `lib` is built from func with its partial sums lifted to a last parameter
    (recom_tvm.backend.partial_sums), which gets NaN too; the inputs are func's, drawn the same way."""
    rng = np.random.default_rng(seed)
    arrays = []
    for p in func.params:
        shape = [int(d) if isinstance(d, tvm.tirx.IntImm) else batch for d in p.ty.shape]
        arrays.append(rng.standard_normal(shape).astype(str(p.ty.dtype)))
    arrays[-1][...] = np.nan
    if lifted is not None:
        ws = lifted.params[-1].ty
        arrays.append(np.full([int(d) for d in ws.shape], np.nan, str(ws.dtype)))
    args = [tvm.runtime.tensor(a) for a in arrays]
    lib["main"](*args)
    return args[len(func.params) - 1].numpy()


def build_layer(func: tvm.tirx.PrimFunc | tvm.IRModule, target) -> tvm.runtime.Module:
    mod = func if isinstance(func, tvm.IRModule) else tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    with target:
        return tvm.tirx.build(mod, target)


def select_layer(k: int, n: int, pred_dtype: str = "bool") -> tvm.tirx.PrimFunc:
    """A layer whose epilogue selects by a scalar predicate, as a frozen TF1 tf.cond between matmul results:
    x [B, k] @ w [k, n], then Select(pred, mm, 0) (pred read as a `pred_dtype` buffer, cast to bool)."""
    from tvm.script import tirx as T

    @T.prim_func(private=True, s_tir=True)
    def select(var_x: T.handle, w: T.Buffer((T.int64(k), T.int64(n)), "float32"),
               pred: T.Buffer((), pred_dtype), var_out: T.handle):
        T.func_attr({"tirx.noalias": True})
        b = T.int64()
        x = T.match_buffer(var_x, (b, T.int64(k)))
        out = T.match_buffer(var_out, (b, T.int64(n)))
        mm = T.sblock_alloc_buffer((b, T.int64(n)))
        for i, j, r in T.grid(b, T.int64(n), T.int64(k)):
            with T.sblock("matmul"):
                vi, vj, vr = T.axis.remap("SSR", [i, j, r])
                with T.init():
                    mm[vi, vj] = T.float32(0.0)
                mm[vi, vj] = mm[vi, vj] + x[vi, vr] * w[vr, vj]
        for i, j in T.grid(b, T.int64(n)):
            with T.sblock("where"):
                vi, vj = T.axis.remap("SS", [i, j])
                out[vi, vj] = T.Select(T.Cast("bool", pred[()]), mm[vi, vj], T.float32(0.0))

    return select


def cross_layer() -> tvm.tirx.PrimFunc:
    """DCN-v2's cross layer x * (x W + b) + x at N = 23: an epilogue that reads x again."""
    from tvm.script import tirx as T

    @T.prim_func(private=True, s_tir=True)
    def cross(var_x: T.handle, w: T.Buffer((T.int64(23), T.int64(23)), "float32"),
              b: T.Buffer((T.int64(23),), "float32"), var_out: T.handle):
        T.func_attr({"tirx.noalias": True})
        n = T.int64()
        x = T.match_buffer(var_x, (n, T.int64(23)))
        out = T.match_buffer(var_out, (n, T.int64(23)))
        mm = T.sblock_alloc_buffer((n, T.int64(23)))
        add = T.sblock_alloc_buffer((n, T.int64(23)))
        mul = T.sblock_alloc_buffer((n, T.int64(23)))
        for i, j, k in T.grid(n, T.int64(23), T.int64(23)):
            with T.sblock("matmul"):
                vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                with T.init():
                    mm[vi, vj] = T.float32(0.0)
                mm[vi, vj] = mm[vi, vj] + x[vi, vk] * w[vk, vj]
        for i, j in T.grid(n, T.int64(23)):
            with T.sblock("add"):
                vi, vj = T.axis.remap("SS", [i, j])
                add[vi, vj] = mm[vi, vj] + b[vj]
        for i, j in T.grid(n, T.int64(23)):
            with T.sblock("mul"):
                vi, vj = T.axis.remap("SS", [i, j])
                mul[vi, vj] = x[vi, vj] * add[vi, vj]
        for i, j in T.grid(n, T.int64(23)):
            with T.sblock("add1"):
                vi, vj = T.axis.remap("SS", [i, j])
                out[vi, vj] = mul[vi, vj] + x[vi, vj]

    return cross
