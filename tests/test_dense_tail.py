"""The dense tail: every schedule of a layer computes what the unscheduled layer computes (llvm runs them; the CUDA
schedules run serially emulated on the CPU and compile with nvcc), batch buckets dispatch at their edges, build
schedules the MLP, CUDA graphs are built in (and the library loads runtime-only), tuning of the dense layers
(local and offline rounds) reaches build."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re

import numpy as np
import pytest
import tvm
from tvm import relax

import recom_tvm
from recom_tvm.backend.cuda_graph import GRAPH_FUNC, add_graph_variant, capture_builtins
from recom_tvm.backend.partial_sums import lift_workspace
from recom_tvm.backend.pipeline import compile_module, cuda_legalize_passes, dense_tail_pass, relax_pipeline
from recom_tvm.build_module import make_target
from recom_tvm.cuda_support import nvcc_path
from recom_tvm.models import zoo
from recom_tvm.runtime.capture_gate import uses_cuda_graphs
from recom_tvm.ops import LegalizeRecomOps
from recom_tvm.schedules import dense_space
from recom_tvm.schedules.dense_tail import (CPU_DEFAULT, CUDA_DEFAULT, CUDA_ONE_KERNEL, DENSE_ATTR, TILED_MIN_N,
                                            DenseConfig, check_config, fit, match_dense, schedule, schedule_buckets)

from conftest import run_runtime_only
from dense_helpers import build_layer, emulate, fused_layers, mlp_module, run_layer
from test_runtime_only import BLOCK_IMPORTS

BATCHES = (1, 3, 8, 33, 70)  # inside and across every default bucket edge, and rows that pad
MLP = mlp_module(300, (64, 16, 1))  # K not a multiple of the splits, N = 1 last
CPU = tvm.target.Target({"kind": "llvm"})
needs_nvcc = pytest.mark.skipif(nvcc_path() is None, reason="nvcc (CUDA toolkit) is not installed on this host")


def _llvm_layers(mod):
    """{name: layer} as the llvm pipeline makes them (no fusion: the matmul alone)."""
    low = relax.transform.LegalizeOps()(mod)
    return {gv.name_hint: f for gv, f in low.functions_items() if match_dense(f) is not None}


def _scheduled_layers(mod) -> dict:
    """{name: layer} of the module's layers the dense tail scheduled (they carry DENSE_ATTR, their buckets)."""
    return {gv.name_hint: f for gv, f in mod.functions_items()
            if isinstance(f, tvm.tirx.PrimFunc) and f.attrs is not None and DENSE_ATTR in f.attrs}


def _reference(func):
    return build_layer(func, CPU)


def _assert_same(func, candidate_lib, what, lifted=None):
    ref = _reference(func)
    for b in BATCHES:
        want = run_layer(ref, func, b, seed=b)
        got = run_layer(candidate_lib, func, b, seed=b, lifted=lifted)
        assert np.isfinite(got).all(), f"{what}: B={b}: output not written everywhere"
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5, err_msg=f"{what}: B={b}")


def _valid_random(rng, kind, layer, rule=None):
    while True:
        c = dense_space.random_config(rng, kind)
        if (rule is None or c.rule == rule) and check_config(fit(c, layer), layer) is None:
            return c


def _random_buckets(rng, kind, layer):
    cfgs = [_valid_random(rng, kind, layer) for _ in range(rng.randint(1, 3))]
    limits = sorted(rng.sample([2, 5, 16, 40], len(cfgs) - 1))
    return tuple(zip(limits + [None], cfgs))


def test_matching_finds_the_layers_and_nothing_else(compiled):
    fused = fused_layers(MLP)
    assert sorted((m.k, m.n) for m in map(match_dense, fused.values())) == [(16, 1), (64, 16), (300, 64)]
    assert sorted((m.k, m.n) for m in map(match_dense, _llvm_layers(MLP).values())) == [(16, 1), (64, 16),
                                                                                        (300, 64)]
    layer = match_dense(next(iter(fused.values())))
    assert isinstance(layer.batch, tvm.tirx.Var) and not layer.transposed
    c = compiled(zoo.demo(), optimized=True)
    with CPU:
        low = relax.transform.LegalizeOps()(LegalizeRecomOps(None)(c.mod))
    names = {gv.name_hint for gv, f in low.functions_items() if match_dense(f) is not None}
    assert names and all(n.startswith("matmul") for n in names)  # not the fused kernel, not relu / sigmoid


def test_cpu_schedules_compute_the_same():
    rng = random.Random(3)
    for name, func in {**_llvm_layers(MLP), **{f"fused_{k}": v for k, v in fused_layers(MLP).items()}}.items():
        variants = [CPU_DEFAULT, ((None, DenseConfig("cpu", rows=1, cols=8, k_block=64, unroll=1)),),
                    ((None, DenseConfig("cpu", rows=6, cols=8, k_block=64, unroll=2, k_outer=1, pack=1)),),
                    _random_buckets(rng, "cpu", match_dense(func))]
        for buckets in variants:
            lib = build_layer(schedule_buckets(func, buckets, CPU), CPU)
            _assert_same(func, lib, f"{name} {buckets}")


def test_cuda_schedules_compute_the_same_emulated():
    """The gemv schedules (defaults and random points of the space, alone and dispatched by batch) run serially on
    the CPU and match the unscheduled layer; dlight's matmul rule is TVM's (its shared-memory tiles do not emulate
    serially): GPU runs check it (benchmarks/gpu_request_path.py)."""
    rng = random.Random(5)
    cuda = make_target("cuda")
    for name, func in fused_layers(MLP).items():
        layer = match_dense(func)
        gemv = [c for _, c in CUDA_DEFAULT if c.rule == "gemv"]
        gemv += [_valid_random(rng, "cuda", layer, "gemv") for _ in range(2)]
        for cfg in gemv[:3]:
            _assert_same(func, build_layer(emulate(schedule(func, cfg, cuda)), CPU), f"{name} {cfg.knobs()}")
        buckets = ((2, gemv[1]), (40, gemv[3]), (None, gemv[0]))
        _assert_same(func, build_layer(emulate(schedule_buckets(func, buckets, cuda)), CPU), f"{name} buckets")


def test_gemv_on_layers_narrower_than_a_block_emulated():
    """N = 24, 20, 3 under configs of more columns per block (8 threads x 4): TVM's final sum covered the N columns
    but the epilogue at it ran once per thread, and the spare threads wrote the next row block's outputs from sums
    never made (wrong from two row blocks on; blocks run last first in the emulation). fit caps a block's columns
    at N."""
    cuda = make_target("cuda")
    for n in (24, 20, 3):
        func = next(iter(fused_layers(mlp_module(64, (n,))).values()))
        for cfg in [c for _, c in CUDA_DEFAULT if c.rule == "gemv"] + [
                DenseConfig("gemv", rows=8, threads_n=8, vec=4, threads_k=32, unroll=2, kvec=4)]:
            assert fit(cfg, match_dense(func)).threads_n * fit(cfg, match_dense(func)).vec <= n
            _assert_same(func, build_layer(emulate(schedule(func, cfg, cuda)), CPU), f"N={n} {cfg.knobs()}")


def test_narrow_layers_keep_their_gemv_buckets_emulated():
    """N = 3, 20, 24 under CUDA_DEFAULT: more final-sum threads than a block has outputs (64 K threads x 16 columns
    for 4 x 16 outputs). TVM sized the shared partial sums by the rows the spare threads would reach, a run-time
    size, so schedule_buckets refused the layer and it kept TVM's default schedule (bound_final_sum_rows). Now every
    bucket is scheduled, its shared memory is [K threads, rows, <= N columns], and the layer computes the same at batches
    across every bucket."""
    from recom_tvm.schedules.dense_tail import kernel_allocations

    cuda = make_target("cuda")
    for n in (3, 20, 24):
        func = next(iter(fused_layers(mlp_module(64, (n,))).values()))
        layer = match_dense(func)
        built = schedule_buckets(func, CUDA_DEFAULT, cuda)  # raises on a run-time allocation
        shared = sorted(tuple(int(d) for d in b.shape) for b in kernel_allocations(built) if b.scope() == "shared")
        want = sorted((c.threads_k, c.rows) for c in (fit(cfg, layer) for _, cfg in CUDA_DEFAULT))
        assert [s[:2] for s in shared] == want and all(s[2] <= n for s in shared), (n, shared, want)
        lib = build_layer(emulate(built), CPU)
        for b in (1, 8, 9, 33, 64, 65, 129, 131):
            np.testing.assert_allclose(run_layer(lib, func, b, seed=b), run_layer(_reference(func), func, b, seed=b),
                                       rtol=2e-5, atol=2e-5, err_msg=f"N={n} B={b}")


def test_gemv_epilogue_runs_only_on_the_blocks_outputs_emulated():
    """More final-sum threads (threads_k x threads_n) than a block has outputs (rows x columns): the spare threads'
    epilogue is guarded like their sum (guard_epilogue). Without it rows = 1 wrote the next column block's outputs
    from sums never made (an H100 at B = 1, 2026-12-05: 27 of 111 grid candidates wrong) and rows > 1 the next row
    block's (found on an H100 at B = 32 earlier, then avoided by fewer K threads)."""
    cuda = make_target("cuda")
    for cfg in (DenseConfig("gemv", rows=1, threads_n=8, vec=2, threads_k=32, unroll=8),
                DenseConfig("gemv", rows=1, threads_n=4, vec=4, threads_k=64, unroll=4, kvec=4),
                DenseConfig("gemv", rows=2, threads_n=4, vec=1, threads_k=32, unroll=1)):
        for name, func in fused_layers(MLP).items():
            _assert_same(func, build_layer(emulate(schedule(func, cfg, cuda)), CPU), f"{name} {cfg.knobs()}")


EDGE_BATCHES = (1, 2, 7, 8, 9, 64, 65, 128, 129, 513)  # both sides of every default bucket edge (CUDA: 8, 64, 128)


def _numpy_mlp(x: np.ndarray, ws: list[np.ndarray], layers: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """recom_tvm.models.mlp.relax_mlp in float64 (its biases drawn in the same order)."""
    rng = np.random.default_rng(seed)
    h = x.astype(np.float64)
    for i, (w, n) in enumerate(zip(ws, layers)):
        h = h @ w.astype(np.float64) + rng.standard_normal(n).astype(np.float32)
        h = np.maximum(h, 0) if i + 1 < len(layers) else 1 / (1 + np.exp(-h))
    return h


def test_llvm_mlp_matches_numpy_at_every_bucket_edge():
    """The MLP as build compiles it for llvm (the default buckets), against numpy at batches on both sides of
    every bucket edge, CPU and CUDA defaults alike, and at a large batch (512 rows: many row tiles)."""
    layers = (64, 16, 1)
    exe = compile_module(MLP, CPU)
    vm = tvm.runtime.vm.VirtualMachine(exe, tvm.cpu())
    rng = np.random.default_rng(11)
    ws = [(rng.standard_normal(s) / np.sqrt(s[0])).astype("float32") for s in ((300, 64), (64, 16), (16, 1))]
    for b in EDGE_BATCHES:
        x = rng.standard_normal((b, 300)).astype("float32")
        got = vm["main"](tvm.runtime.tensor(x), *[tvm.runtime.tensor(w) for w in ws]).numpy()
        np.testing.assert_allclose(got, _numpy_mlp(x, ws, layers), rtol=1e-5, atol=1e-6, err_msg=f"B={b}")


def test_cuda_default_buckets_at_their_edges_emulated():
    """CUDA_DEFAULT's gemv buckets (B <= 8, 64, 128, above) dispatched by batch inside one function, run serially at
    each edge and beyond (several row blocks of every bucket, partial ones), against the unscheduled layer and
    numpy."""
    cuda = make_target("cuda")
    func = fused_layers(MLP)["fused_matmul_add_less_where"]  # the first layer: K = 300 (no split divides it), N = 64
    buckets = CUDA_DEFAULT
    # x, w, bias, the Relu's 0 (TF's Relu: where(h < 0, 0, h); run_layer draws it at random too), out
    assert [p.name for p in func.params] == ["x", "w0", "param_0", "param_1", "T_where_intermediate"]
    lib = build_layer(emulate(schedule_buckets(func, buckets, cuda)), CPU)
    ref = _reference(func)
    for b in (1, 7, 8, 9, 33, 64, 65, 128, 129, 513):
        got = run_layer(lib, func, b, seed=b)
        np.testing.assert_allclose(got, run_layer(ref, func, b, seed=b), rtol=2e-5, atol=2e-5, err_msg=f"B={b}")
        rng = np.random.default_rng(b)  # run_layer's inputs, drawn in the same order
        x, w, bias, zero = (rng.standard_normal(s).astype("float32") for s in ((b, 300), (300, 64), (64,), ()))
        h = x.astype(np.float64) @ w + bias
        want = np.where(h < 0, zero, h)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"B={b} vs numpy")


@needs_nvcc
def test_cuda_default_schedules_compile_with_one_kernel_per_bucket_two_for_split_k():
    from recom_tvm.cuda_support import prepare_cuda_build

    prepare_cuda_build()
    cuda = make_target("cuda")
    layers = fused_layers(MLP)  # K 300 -> 64 -> 16 -> 1: N = 1 last, K a multiple of no split first
    funcs = {name: schedule_buckets(f, CUDA_DEFAULT, cuda).with_attr("global_symbol", name)
             for name, f in layers.items()}
    with cuda:  # one nvcc run for all of them
        lib = tvm.compile(tvm.IRModule(funcs), target=cuda)
    src = lib.mod.imports[0].inspect_source() if hasattr(lib, "mod") else lib.imports[0].inspect_source()
    kernels = re.findall(r"__global__[^;{]*\{", src)  # definitions (each is declared first, too)
    want = {name: sum(2 if fit(c, match_dense(f)).split_k > 1 else 1 for _, c in CUDA_DEFAULT)
            for name, f in layers.items()}
    assert want["fused_matmul_add_less_where"] > len(CUDA_DEFAULT)  # K = 300 splits over blocks at small batches
    for name in layers:  # every bucket of every layer is a kernel of its own (split-K's: two); the host picks
        assert len([k for k in kernels if re.search(rf"\b{name}(_kernel)?(_\d+)?\b", k)]) == want[name], \
            (name, kernels)
    assert len(kernels) == sum(want.values())
    assert "__shared__" in src  # the gemv buckets' partial sums


@needs_nvcc
def test_gemv_reads_a_threads_columns_of_w_as_one_vector():
    """vec columns per thread are one LDG.64 / LDG.128 of w when N is a multiple of a block's columns (the H100's
    grid: 3.8x on model E's 8,152 x 1,024 layer at B = 32 with vec = 4); other widths keep scalar loads."""
    from recom_tvm.cuda_support import prepare_cuda_build

    prepare_cuda_build()
    cuda = make_target("cuda")
    layers = fused_layers(MLP)  # N = 64, 16, 1
    cfg = DenseConfig("gemv", rows=8, threads_n=8, vec=4, threads_k=32, unroll=8)

    def source(name):
        func = schedule(layers[name], cfg, cuda).with_attr("global_symbol", "main")
        with cuda:
            return build_layer(func, cuda).imports[0].inspect_source()

    assert re.search(r"\*\(float4\*\)\(w0_ptr", source("fused_matmul_add_less_where"))  # N = 64: 32 columns per block
    assert re.search(r"\*\(float2\*\)\(w1_ptr", source("fused_matmul1_add1_less1_where1"))  # N = 16: fit -> vec 2
    assert "float2" not in source("fused_matmul2_add2_tir_sigmoid") and "float4" not in \
        source("fused_matmul2_add2_tir_sigmoid")  # N = 1


WIDE = mlp_module(300, (256, 16, 1))  # K = 300 (no K tile above 4 divides it), N = 256 wide enough for the tiled rule
TILED = (DenseConfig("tiled", rows=4, vec=4, threads_m=8, threads_n=8, k_block=16, unroll=4),
         DenseConfig("tiled", rows=2, vec=8, threads_m=4, threads_n=4, k_block=8, unroll=8),
         DenseConfig("tiled", rows=8, vec=2, threads_m=2, threads_n=16, k_block=64, unroll=1),
         DenseConfig("tiled", rows=2, vec=4, threads_m=4, threads_n=8, k_block=16, unroll=4, pipeline=2))


def test_tiled_schedules_compute_the_same_emulated():
    """The register-tiled GEMM (shared-memory tiles of x and w per K tile, rows x vec sums per thread) run serially:
    the layer's values at batches below, at and across a block's rows, alone and dispatched by batch with a bucket
    whose batches all fill a row block (the last block shifted back). K = 300 is a multiple of no K tile above 4
    (K padded with zeros in x and w), N = 16 and 1 are narrower than TILED_MIN_N (the large-batch gemv instead).
    (Caught: with K padded, the shifted last block kept the `i < B` guard of its unshifted rows: zeros.)"""
    cuda = make_target("cuda")
    layers = fused_layers(WIDE)
    for name, func in layers.items():
        for cfg in TILED:
            _assert_same(func, build_layer(emulate(schedule(func, cfg, cuda)), CPU), f"{name} {cfg.knobs()}")
        buckets = ((8, CUDA_DEFAULT[0][1]), (None, TILED[1]))  # batches >= 9 >= 8 rows: shifted last block
        _assert_same(func, build_layer(emulate(schedule_buckets(func, buckets, cuda)), CPU), f"{name} buckets")
    narrow = match_dense(layers["fused_matmul1_add1_less1_where1"])
    assert narrow.n < TILED_MIN_N and fit(TILED[0], narrow) == fit(CUDA_DEFAULT[-2][1], narrow)
    assert fit(TILED[0], match_dense(layers["fused_matmul_add_less_where"])).rule == "tiled"


def test_layers_the_tiled_rule_does_not_take_keep_the_gemv_emulated():
    """Under the default buckets (tiled from B = 1,024) a wide layer whose w is [N, K] (TF's transpose_b) and one
    whose N is not a multiple of a block's columns are scheduled, not refused (a refused layer would keep TVM's
    default schedule at every batch): their large-batch bucket runs the gemv, and they compute the same."""
    cuda = make_target("cuda")
    odd = next(iter(fused_layers(mlp_module(40, (300,))).values()))
    for name, func in {"transposed": _transposed_layer(256), "N = 300": odd}.items():
        layer = match_dense(func)
        assert layer.n >= TILED_MIN_N and fit(CUDA_DEFAULT[-1][1], layer).rule == "gemv", name
        built = schedule_buckets(func, CUDA_DEFAULT, cuda)
        lib = build_layer(emulate(built), CPU)
        ref = _reference(func)
        for b in (3, 1030):  # a gemv bucket and the large-batch one
            np.testing.assert_allclose(run_layer(lib, func, b, seed=b), run_layer(ref, func, b, seed=b),
                                       rtol=2e-5, atol=2e-5, err_msg=f"{name}: B={b}")


def test_tiled_configs_are_checked():
    layer = match_dense(fused_layers(WIDE)["fused_matmul_add_less_where"])  # K = 300, N = 256
    assert "threads" in check_config(DenseConfig("tiled", threads_m=64, threads_n=32), layer)
    assert "accumulators" in check_config(DenseConfig("tiled", rows=16, vec=16), layer)
    assert "shared memory" in check_config(DenseConfig("tiled", rows=8, vec=8, threads_m=32, threads_n=32,
                                                       k_block=64), layer)
    assert "[N, K]" in check_config(DenseConfig("tiled", k_block=8), match_dense(_transposed_layer()))
    assert fit(DenseConfig("tiled", k_block=64), layer).k_block == 64  # K = 300: padded to 320
    short = next(iter(fused_layers(mlp_module(24, (256,))).values()))
    assert fit(DenseConfig("tiled", k_block=64), match_dense(short)).k_block == 16  # no K tile beyond K


@needs_nvcc
def test_tiled_schedule_compiles_with_constant_tiles_and_vector_loads():
    """On model E's first layer (K = 8,152, N = 1,024): the x and w tiles in shared memory have the tile's constant
    size whatever the batch (the padded copy of x is the x tile), w is loaded as float4 from global memory and from
    shared memory into registers, and the bucket of large batches compiles too."""
    from recom_tvm.cuda_support import prepare_cuda_build
    from recom_tvm.schedules.dense_tail import kernel_allocations

    prepare_cuda_build()
    cuda = make_target("cuda")
    func = next(iter(fused_layers(mlp_module(8152, (1024,))).values()))
    cfg = DenseConfig("tiled", rows=8, vec=8, threads_m=16, threads_n=16, k_block=8, unroll=8)
    built = schedule_buckets(func, ((64, CUDA_DEFAULT[1][1]), (None, cfg)), cuda)
    shared = sorted(tuple(int(d) for d in b.shape) for b in kernel_allocations(schedule(func, cfg, cuda))
                    if b.scope() == "shared")
    assert shared == [(8, 128), (128, 8)], shared
    with cuda:
        src = build_layer(built.with_attr("global_symbol", "main"), cuda).imports[0].inspect_source()
    assert re.search(r"\*\(float4\*\)\(w0_shared_ptr[^;]*= \*\(float4\*\)\(w0_ptr", src)  # global -> shared
    assert re.search(r"= \*\(float4\*\)\(w0_shared_ptr", src)  # shared -> registers
    assert src.count("__syncthreads") >= 2
    piped = schedule(func, dataclasses.replace(cfg, k_block=16, pipeline=2), cuda).with_attr("global_symbol", "main")
    with cuda:
        assert "cp.async" in build_layer(piped, cuda).imports[0].inspect_source()  # the next tiles' copies


def _transposed_layer(width: int = 24):
    """x [B, 40] @ w [width, 40]^T + b, then relu: a TF MatMul with transpose_b kept as such (w read as [N, K])."""
    from tvm.script import tirx as T

    N = T.int64(width)  # noqa: N806 - TVMScript reads it as a constant

    @T.prim_func(private=True, s_tir=True)
    def layer(var_x: T.handle, w: T.Buffer((N, T.int64(40)), "float32"),
              b: T.Buffer((N,), "float32"), var_out: T.handle):
        T.func_attr({"tirx.noalias": True})
        n = T.int64()
        x = T.match_buffer(var_x, (n, T.int64(40)))
        out = T.match_buffer(var_out, (n, N))
        mm = T.sblock_alloc_buffer((n, N))
        for i, j, k in T.grid(n, N, T.int64(40)):
            with T.sblock("matmul"):
                vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                with T.init():
                    mm[vi, vj] = T.float32(0.0)
                mm[vi, vj] = mm[vi, vj] + x[vi, vk] * w[vj, vk]
        for i, j in T.grid(n, N):
            with T.sblock("relu"):
                vi, vj = T.axis.remap("SS", [i, j])
                out[vi, vj] = T.max(mm[vi, vj] + b[vj], T.float32(0.0))

    return layer


def test_gemv_with_k_vectors_computes_the_same_emulated():
    """kvec: each K thread owns kvec consecutive K, w staged in registers per K step. Every layer of the MLP
    (K = 300, 64, 16; N = 64, 16, 1), a K that only 2 divides and one that nothing divides (fit: kvec 2, 1), a
    transposed w, row blocks that pad, one and several row blocks, dispatched beside the kvec = 1 schedule."""
    cuda = make_target("cuda")
    cfgs = [DenseConfig("gemv", rows=8, threads_n=8, vec=4, threads_k=32, unroll=2, kvec=4),
            DenseConfig("gemv", rows=1, threads_n=16, vec=2, threads_k=16, unroll=1, kvec=4),
            DenseConfig("gemv", rows=4, threads_n=4, vec=1, threads_k=8, unroll=4, kvec=2)]
    layers = {**fused_layers(MLP), **{f"K{k}": f for k in (302, 301)
                                     for f in fused_layers(mlp_module(k, (24,))).values()},
              "transposed": _transposed_layer()}
    assert match_dense(layers["transposed"]).transposed
    assert fit(cfgs[0], match_dense(layers["K302"])).kvec == 2 and fit(cfgs[0], match_dense(layers["K301"])).kvec == 1
    for name, func in layers.items():
        for cfg in cfgs:
            _assert_same(func, build_layer(emulate(schedule(func, cfg, cuda)), CPU), f"{name} {cfg.knobs()}")
        buckets = ((4, cfgs[1]), (None, cfgs[0]))
        _assert_same(func, build_layer(emulate(schedule_buckets(func, buckets, cuda)), CPU), f"{name} buckets")


def test_gemv_split_k_over_blocks_computes_the_same_emulated():
    """split_k: K cut into chunks, one per blockIdx.z, each block's sum of its chunk stored to a global buffer of
    partial sums, a second kernel adding them and applying the epilogue. Every layer of the MLP, K with a short
    last chunk (301: kvec 1, 302: kvec 2), a transposed w, row blocks that pad (rows 2 and 4, clamped: the last
    block cannot shift, its partial sums' rows are its own), spare final-sum threads, dispatched beside one-kernel
    buckets; fit keeps every chunk at least threads_k groups long."""
    cuda = make_target("cuda")
    cfgs = [DenseConfig("gemv", rows=1, threads_n=8, vec=2, threads_k=16, unroll=2, kvec=4, split_k=4),
            DenseConfig("gemv", rows=2, threads_n=4, vec=1, threads_k=8, unroll=1, kvec=2, split_k=3),
            DenseConfig("gemv", rows=4, threads_n=16, vec=2, threads_k=4, unroll=4, kvec=1, split_k=8)]
    layers = {"K300": fused_layers(MLP)["fused_matmul_add_less_where"],
              **{f"K{k}": f for k in (302, 301) for f in fused_layers(mlp_module(k, (24,))).values()},
              "transposed": _transposed_layer()}
    for name, func in layers.items():
        layer = match_dense(func)
        for cfg in cfgs:
            got = fit(cfg, layer)
            groups = layer.k // got.kvec
            chunk = -(-groups // got.split_k)
            assert groups - (got.split_k - 1) * chunk >= got.threads_k, (name, got)
            _assert_same(func, build_layer(emulate(schedule(func, cfg, cuda)), CPU), f"{name} {cfg.knobs()}")
        buckets = ((2, cfgs[0]), (8, cfgs[1]), (None, dataclasses.replace(cfgs[2], split_k=1)))
        both = schedule_buckets(func, buckets, cuda)
        _assert_same(func, build_layer(emulate(both), CPU), f"{name} buckets")
        lifted, elements, _ = lift_workspace(both)  # the two split buckets' views of one output (NaN-filled)
        assert elements == max(fit(c, match_dense(func)).split_k * lim * match_dense(func).n
                               for lim, c in buckets[:2])
        _assert_same(func, build_layer(emulate(lifted), CPU), f"{name} buckets, partial sums lifted", lifted)
    assert fit(cfgs[0], match_dense(layers["K302"])).split_k == 4  # 151 groups of 2: chunks of 38, the last 37
    assert fit(cfgs[0], match_dense(fused_layers(MLP)["fused_matmul2_add2_tir_sigmoid"])).split_k == 1  # K = 16:
    # 4 groups of 4 under 4 K threads, one chunk


@needs_nvcc
def test_split_k_partial_sums_are_an_output_and_graph_builds_keep_the_split(monkeypatch):
    """A split-K bucket is two kernels (the chunks' partial sums, then their sum and the epilogue). On its own the
    layer's host side allocates the partial sums per call; in a build, LiftPartialSums makes them a second output of
    the layer's call_tir, of the split buckets' largest size (Relax plans it: no allocation inside the kernel's host
    side, which a CUDA-graph capture must not make), so graph builds keep the split. A database's split in the last,
    unbounded bucket cannot be bounded: a graph build schedules that layer without the split, others keep it."""
    from recom_tvm.backend.partial_sums import PARAM, LiftPartialSums
    from recom_tvm.cuda_support import prepare_cuda_build

    prepare_cuda_build()
    cuda = make_target("cuda")
    func = fused_layers(MLP)["fused_matmul_add_less_where"]  # K = 300, N = 64
    split = DenseConfig("gemv", rows=1, threads_n=16, vec=2, threads_k=16, unroll=2, kvec=4, split_k=4)
    buckets = ((8, split), (None, CUDA_DEFAULT[-2][1]))
    lib = build_layer(schedule_buckets(func, buckets, cuda), cuda)
    kernels = re.findall(r"__global__[^;{]*\{", lib.imports[0].inspect_source())
    assert len(kernels) == 3, kernels
    assert "TVMBackendAllocWorkspace" in lib.inspect_source()
    with cuda:
        low = tvm.transform.Sequential(cuda_legalize_passes(cuda, dense=False, default_schedule=False))(
            LegalizeRecomOps(None)(MLP))

    name = "fused_matmul_add_less_where"
    for graphs in (False, True):
        with cuda:
            done = LiftPartialSums(dense_tail_pass(cuda, resolve=lambda f, layer: buckets, graphs=graphs)(low))
        layer = _scheduled_layers(done)[name]
        assert json.loads(str(layer.attrs[DENSE_ATTR]))[0][1]["split_k"] == 4, graphs
        assert layer.params[-1].name == PARAM and [int(d) for d in layer.params[-1].ty.shape] == [4 * 8 * 64]
        lifted = build_layer(layer, cuda)
        assert len(re.findall(r"__global__[^;{]*\{", lifted.imports[0].inspect_source())) == 3
        assert "TVMBackendAllocWorkspace" not in lifted.inspect_source()
        calls = []
        relax.analysis.post_order_visit(done["main"], lambda e: calls.append(e) if isinstance(e, relax.Call)
                                        and isinstance(e.args[0], tvm.ir.GlobalVar) and e.args[0].name_hint == name
                                        else None)
        assert len(calls) == 1 and len(calls[0].ty_args[0].fields) == 2, calls  # (the output, the partial sums)
    unbounded = ((8, dataclasses.replace(split, split_k=1)),
                 (None, dataclasses.replace(CUDA_DEFAULT[-2][1], split_k=2)))
    for graphs, want in ((False, 2), (True, 1)):
        with cuda:
            done = LiftPartialSums(dense_tail_pass(cuda, resolve=lambda f, layer: unbounded, graphs=graphs)(low))
        layer = _scheduled_layers(done)[name]
        assert json.loads(str(layer.attrs[DENSE_ATTR]))[-1][1]["split_k"] == want, graphs
        assert layer.params[-1].name != PARAM  # (unbounded: the workspace stays the kernel's host side's)
    for split_k, graphs, table in ((True, False, CUDA_DEFAULT), (True, True, CUDA_DEFAULT),
                                   (False, True, CUDA_ONE_KERNEL)):  # the defaults split in graph builds too
        monkeypatch.setattr(recom_tvm.config, "dense_split_k", split_k)
        with cuda:
            done = dense_tail_pass(cuda, graphs=graphs)(low)
        recorded = [json.loads(str(f.attrs[DENSE_ATTR])) for f in _scheduled_layers(done).values()]
        assert recorded and all(r == [[b, c.to_json()] for b, c in table] for r in recorded), (split_k, graphs)
    assert any(c.split_k > 1 for _, c in CUDA_DEFAULT) and all(c.split_k == 1 for _, c in CUDA_ONE_KERNEL)


@needs_nvcc
def test_gemv_with_k_vectors_loads_a_register_tile_of_w():
    """With kvec = 4 a thread's weights of a K step are loaded first, as vectors along N (float4 of w [K, N]) or
    along K for a transposed w."""
    from recom_tvm.cuda_support import prepare_cuda_build

    prepare_cuda_build()
    cuda = make_target("cuda")
    cfg = DenseConfig("gemv", rows=8, threads_n=8, vec=4, threads_k=32, unroll=2, kvec=4)

    def source(func):
        func = schedule(func, cfg, cuda).with_attr("global_symbol", "main")
        with cuda:
            return build_layer(func, cuda).imports[0].inspect_source()

    assert re.search(r"\*\(float4\*\)\(w0_ptr", source(fused_layers(MLP)["fused_matmul_add_less_where"]))  # N = 64
    assert re.search(r"\*\(float4\*\)\(w_ptr", source(_transposed_layer()))


def test_buckets_of_whole_row_blocks_shift_the_last_one():
    """A bucket whose batches are all at least `rows` reads and writes row base + r % rows, base = min(r // rows *
    rows, B - rows): no clamp or guard per row (as built for B >= 9 by CUDA_DEFAULT); a bucket that may hold fewer
    rows than a block clamps them. The emulated edge-batch tests check both compute the same."""
    func = fused_layers(MLP)["fused_matmul_add_less_where"]
    cfg = DenseConfig("gemv", rows=4, threads_n=8, vec=4, threads_k=32, unroll=2, kvec=4)
    shifted = schedule(func, cfg, make_target("cuda"), min_batch=4).script()
    assert "if_then_else" not in shifted and "T.min(x" not in shifted
    assert re.search(r"x\[T\.min\(.*// T\.int64\(4\) \* T\.int64\(4\), B - T\.int64\(4\)\)", shifted), shifted
    clamped = schedule(func, cfg, make_target("cuda"), min_batch=3).script()
    assert re.search(r"x\[T\.min\(v_i0, B - T\.int64\(1\)\)", clamped)
    for b in (4, 5, 7, 9, 33, 70):
        lib = build_layer(emulate(schedule(func, cfg, make_target("cuda"), min_batch=4)), CPU)
        np.testing.assert_allclose(run_layer(lib, func, b, seed=b), run_layer(_reference(func), func, b, seed=b),
                                   rtol=2e-5, atol=2e-5, err_msg=f"B={b}")


def test_gemv_reads_padded_rows_clamped_not_guarded():
    """The padded batch is read as x[min(i, B - 1), k], no if_then_else per load (with B symbolic, those guards made
    E's big layer 2.5x slower on an H100); the emulated edge-batch tests check the results stay the same."""
    func = fused_layers(MLP)["fused_matmul_add_less_where"]
    cfg = DenseConfig("gemv", rows=8, threads_n=8, vec=4, threads_k=32, unroll=8)
    guarded = schedule(func, cfg, make_target("cuda")).script()
    assert "if_then_else" not in guarded
    assert re.search(r"x\[T\.min\(v_i0, B - T\.int64\(1\)\)", guarded), guarded
    from recom_tvm.schedules.dense_tail import clamp_padded_rows

    tvm.ir.assert_structural_equal(clamp_padded_rows(func), func)  # a function without the pattern: unchanged


def test_gemv_max_batch_knob_moves_the_matmul_edge(monkeypatch):
    from recom_tvm.schedules.dense_tail import GEMV_EVERY_BATCH, default_buckets

    def rules(limit):
        monkeypatch.setattr(recom_tvm.config, "dense_gemv_max_batch", limit)
        return [(b, c.rule) for b, c in default_buckets("cuda")]

    assert default_buckets("cuda") == CUDA_DEFAULT  # the gemv, then the tiled GEMM from 1,024, as measured
    assert [c.rule for _, c in CUDA_DEFAULT] == ["gemv"] * 4 + ["tiled"]
    assert rules(0) == [(None, "matmul")]
    assert rules(16) == [(8, "gemv"), (16, "gemv"), (None, "matmul")]
    assert rules(64) == [(8, "gemv"), (64, "gemv"), (None, "matmul")]
    assert rules(512) == [(8, "gemv"), (64, "gemv"), (128, "gemv"), (512, "gemv"), (None, "matmul")]
    assert default_buckets("cuda")[3][1] == CUDA_DEFAULT[3][1]  # 129..512: the large-batch gemv
    assert rules(2048)[-2:] == [(2048, "tiled"), (None, "matmul")]  # (5 at most: neighbours merged)
    assert rules(GEMV_EVERY_BATCH) == [(8, "gemv"), (64, "gemv"), (128, "gemv"), (1023, "gemv"), (None, "tiled")]
    assert default_buckets("llvm") == CPU_DEFAULT


def test_tuned_buckets_fit_one_kernel():
    """A database tuned at 8 batches gives at most MAX_BUCKETS buckets (equal neighbours merged first, then the
    narrowest handed up), which schedule: before, the bucket check raised and the layer silently kept TVM's
    unscheduled default."""
    from recom_tvm.schedules.dense_apply import buckets_of
    from recom_tvm.schedules.dense_tail import MAX_BUCKETS
    from recom_tvm.schedules.tasks import fit_buckets

    a, b, c = (DenseConfig("gemv", rows=r, threads_n=8, vec=4, threads_k=32, unroll=8) for r in (4, 8, 16))
    per = {1: (a, 1.0), 8: (b, 1.0), 32: (a, 1.0), 64: (b, 1.0), 128: (b, 1.0), 256: (c, 1.0), 512: (b, 1.0),
           2048: (DenseConfig("matmul"), 1.0)}
    buckets = buckets_of(per)
    assert len(buckets) <= MAX_BUCKETS and buckets[-1] == (None, DenseConfig("matmul"))
    limits = [lim for lim, _ in buckets[:-1]]
    assert limits == sorted(limits) and all(x[1] != y[1] for x, y in zip(buckets, buckets[1:]))
    schedule_buckets(fused_layers(MLP)["fused_matmul_add_less_where"], buckets, make_target("cuda"))
    # equal neighbours merge without losing a range; fewer than the cap stay as they are
    assert fit_buckets([(2, "x"), (16, "x"), (90, "y"), (None, "z")], 4) == ((16, "x"), (90, "y"), (None, "z"))
    assert fit_buckets([(2, "x"), (16, "y"), (None, "z")], 4) == ((2, "x"), (16, "y"), (None, "z"))
    # the narrowest bucket (2 -> 3: ratio 1.5) goes to its upper neighbour's config, and equal neighbours it leaves
    # behind merge too
    assert fit_buckets([(2, "w"), (3, "x"), (64, "y"), (None, "z")], 3) == ((2, "w"), (64, "y"), (None, "z"))
    assert fit_buckets([(2, "w"), (3, "y"), (4, "x"), (64, "y"), (None, "z")], 3) == ((2, "w"), (64, "y"),
                                                                                      (None, "z"))


def test_tuned_records_replace_only_defaults_they_were_measured_against():
    """A record only shows it beat what its round measured. Where the round did not measure today's default of that
    batch (model E's rounds predate split-K and the tiled GEMM), the default stays; where it did, the best record
    wins; a layer all of whose records are stale keeps the defaults (None)."""
    from recom_tvm.schedules.dense_apply import against_defaults, buckets_of
    from recom_tvm.schedules.dense_space import default_for

    layer = match_dense(fused_layers(MLP)["fused_matmul_add_less_where"])
    old = DenseConfig("gemv", rows=1, threads_n=16, vec=2, threads_k=64, unroll=4, kvec=4)  # a pre-split record
    tuned = DenseConfig("gemv", rows=2, threads_n=8, vec=4, threads_k=16, unroll=4, kvec=4)
    now = {b: fit(default_for("cuda", b), layer) for b in (1, 256)}
    assert now[1].split_k > 1  # (the case at hand: the default changed after the round)
    per = {1: (old, 9e-6), 256: (tuned, 2e-5)}
    measured = {1: [old], 256: [tuned, default_for("cuda", 256)]}  # (as given: fit makes the layer's schedule)
    kept, stale = against_defaults(per, measured, layer, "cuda")
    assert stale == [1] and kept[1] == (now[1], None) and kept[256] == (tuned, 2e-5)
    buckets = buckets_of(kept)
    assert buckets[0][1] == now[1] and buckets[-1] == (None, tuned)
    _, stale = against_defaults(per, {1: [old], 256: [tuned]}, layer, "cuda")
    assert stale == [1, 256]


def test_invalid_configs_are_rejected():
    layer = match_dense(fused_layers(MLP)["fused_matmul_add_less_where"])
    assert "shared memory" in check_config(DenseConfig("gemv", rows=32, threads_n=32, vec=4, threads_k=8), layer)
    assert "threads" in check_config(DenseConfig("gemv", threads_n=32, threads_k=64), layer)
    assert check_config(DenseConfig("nope"), layer).startswith("unknown rule")
    with pytest.raises(ValueError, match="shared memory"):
        schedule(fused_layers(MLP)["fused_matmul_add_less_where"], DenseConfig("gemv", rows=32, threads_n=32, vec=4,
                                                                          threads_k=8), make_target("cuda"))
    with pytest.raises(ValueError, match="ascend"):
        schedule_buckets(fused_layers(MLP)["fused_matmul_add_less_where"], ((8, CPU_DEFAULT[0][1]),), CPU)


def test_build_schedules_the_mlp_and_matches_tf(compiled, monkeypatch):
    c = compiled(zoo.demo(), optimized=True)
    target = make_target("llvm")
    with target:
        low = relax.transform.LegalizeOps()(LegalizeRecomOps(None)(c.mod))
        done = dense_tail_pass(target)(low)
    scheduled = list(_scheduled_layers(done).values())
    assert len(scheduled) == 4  # the bottom layer and the three top ones
    monkeypatch.setattr(recom_tvm.config, "dense_tail", "off")
    plain = recom_tvm.build(c.mod, "llvm", c.params)
    for batch in (1, 5, 40):
        feeds = zoo.demo().sample(batch, rng=batch)
        got = c.model.run(feeds)["score"]
        np.testing.assert_allclose(got, plain.run(feeds)["score"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got, c.ref(feeds), rtol=1e-5, atol=2e-5)


def test_tuned_buckets_that_do_not_build_fall_back_to_the_defaults_with_a_warning():
    """A database whose buckets cannot be built (here: too many) must not leave the layer on TVM's unscheduled
    default without a word: the pass warns and schedules it with the default buckets."""
    target = make_target("llvm")
    bad = tuple((b, CPU_DEFAULT[-1][1]) for b in (1, 2, 3, 4, 5)) + ((None, CPU_DEFAULT[-1][1]),)
    with target:
        low = relax.transform.LegalizeOps()(LegalizeRecomOps(None)(MLP))
        with pytest.warns(UserWarning, match="tuned schedules do not build"):
            done = dense_tail_pass(target, resolve=lambda func, layer: bad)(low)
    scheduled = list(_scheduled_layers(done).values())
    assert scheduled and all(json.loads(str(f.attrs[DENSE_ATTR])) == [[b, c.to_json()] for b, c in CPU_DEFAULT]
                             for f in scheduled)


def test_graph_variant_dispatches_by_batch():
    """main -> `if B <= cap: main_cuda_graph(...) else: <main>`; the variant's storage is planned at the cap. On
    llvm (no graphs) both paths run and agree on each side of the cap."""
    target = CPU
    with target:
        low = relax.transform.ToNonDataflow()(relax.transform.LegalizeOps()(MLP))
        mod = add_graph_variant(low, 8)
    graph = mod[GRAPH_FUNC]
    assert int(graph.attrs["tir_var_upper_bound"]["B"]) == 8
    assert list(graph.attrs["relax.rewrite_cuda_graph.capture_symbolic_vars"]) == ["B"]
    assert isinstance(mod["main"].body.body if hasattr(mod["main"].body, "body") else mod["main"].body, relax.If)
    with target:
        both = tvm.compile(MLP, target=target, relax_pipeline=relax_pipeline(target, graph_max_batch=8))
        plain = tvm.compile(MLP, target=target, relax_pipeline=relax_pipeline(target))
    assert GRAPH_FUNC in both.as_text()
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal(s).astype("float32") for s in ((300, 64), (64, 16), (16, 1))]
    vms = [tvm.runtime.vm.VirtualMachine(e, tvm.cpu()) for e in (both, plain)]
    for b in (1, 8, 9, 20, 3):
        x = rng.standard_normal((b, 300)).astype("float32")
        a, p = (vm["main"](tvm.runtime.tensor(x), *[tvm.runtime.tensor(w) for w in ws]).numpy() for vm in vms)
        np.testing.assert_array_equal(a, p)


RUNTIME_ONLY_CUDA = BLOCK_IMPORTS + """
import ctypes, json
ctypes.CDLL(sys.argv[2], mode=ctypes.RTLD_GLOBAL)  # the build host's driver stub: no GPU here
import tvm_ffi
from recom_tvm.runtime import load
model = load(sys.argv[1])
assert tvm_ffi.get_global_func("vm.builtin.cuda_graph.run_or_capture", allow_missing=True) is not None
assert tvm_ffi.get_global_func("vm.builtin.cuda_graph.get_cached_alloc", allow_missing=True) is not None
text = model.executable.as_text() if hasattr(model.executable, "as_text") else ""
gate = model._capture_gate()  # a loaded graph build serialises captures (runtime/capture_gate.py)
assert gate is not None and model._gate_key is not None, (gate, model._gate_key)
loaded = [m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in blocked)]
assert not loaded, loaded
print("OK", json.dumps({"graph_func": "main_cuda_graph" in text}))
"""


@needs_nvcc
def test_cuda_build_replays_graphs_and_loads_runtime_only(compiled, tmp_path, monkeypatch):
    from recom_tvm.cuda_support import has_fatbin, stub_path

    monkeypatch.setattr(recom_tvm.config, "cuda_graph", True)  # opt-in (off by default: see config.py)
    c = compiled(zoo.demo(), optimized=True)
    logged = []
    monkeypatch.setattr(recom_tvm.config, "log", logged.append)
    model = recom_tvm.build(c.mod, "cuda", c.params)
    lifted = [n for m in logged if m.startswith("split-K partial sums") for n in m.split(": ", 1)[1].split(", ")]
    assert capture_builtins(model.executable) == ["vm.builtin.cuda_graph.get_cached_alloc",
                                                  "vm.builtin.cuda_graph.run_or_capture"]
    text = model.executable.as_text()
    assert f"@{GRAPH_FUNC}:" in text and "main_cuda_graph_cuda_graph_capture" in text
    # split-K layers inside the captured function, their partial sums an extra argument (LiftPartialSums)
    assert lifted, "no layer of the demo split K over blocks"
    capture = text[text.index("@main_cuda_graph_cuda_graph_capture:"):]
    capture = capture[:capture.index("\n@", 1)]
    assert any(re.search(rf"call  {name} in:", capture) for name in lifted), capture
    lib = str(tmp_path / "demo_cuda.so")
    model.export_library(lib)
    assert has_fatbin(lib)
    res = run_runtime_only("-c", RUNTIME_ONLY_CUDA, lib, stub_path())
    assert res.returncode == 0 and "OK" in res.stdout, res.stdout[-2000:] + res.stderr[-3000:]
    assert uses_cuda_graphs(model.executable) and model._capture_gate() is not None
    monkeypatch.setattr(recom_tvm.config, "cuda_graph", False)
    plain = recom_tvm.build(c.mod, "cuda", c.params)
    assert capture_builtins(plain.executable) == [] and not uses_cuda_graphs(plain.executable)
    assert plain._capture_gate() is None  # no graphs: requests take no lock


def test_dense_tuning_reaches_build(tmp_path):
    """recom_tvm.tune on a module with only a dense tail: its one large-enough layer is tuned (default first), the
    database's best config is what the build pipeline applies, and the tuned build computes the same."""
    work = str(tmp_path / "tune")
    recom_tvm.tune(MLP, "llvm", work, trials=2, batches=(16,), trials_per_iter=2, quiet=True)
    trials = [json.loads(x) for x in open(os.path.join(work, "trials.jsonl"))]
    assert len({t["task"] for t in trials}) == 1 and trials[0]["source"] == "default"  # 300 x 64 only
    assert len(trials) == 3 and all(t["ms"] > 0 for t in trials), trials
    from recom_tvm.schedules.dense_apply import best_dense_configs, resolver

    best = best_dense_configs(recom_tvm.schedules.tune.open_database(work))
    ((key, per_batch),) = best.items()
    want = min((t for t in trials), key=lambda t: t["ms"])["config"]
    assert per_batch[16][0].to_json() == want
    target = make_target("llvm")
    layer_func = _llvm_layers(MLP)["matmul"]  # the layer as the llvm build pipeline sees it
    assert resolver(work, target)(layer_func, match_dense(layer_func)) == ((None, per_batch[16][0]),)
    tuned = compile_module(MLP, target, database=work)
    plain = compile_module(MLP, target)
    rng = np.random.default_rng(1)
    ws = [tvm.runtime.tensor(rng.standard_normal(s).astype("float32")) for s in ((300, 64), (64, 16), (16, 1))]
    x = tvm.runtime.tensor(rng.standard_normal((7, 300)).astype("float32"))
    outs = [tvm.runtime.vm.VirtualMachine(e, tvm.cpu())["main"](x, *ws).numpy() for e in (tuned, plain)]
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)


RUNTIME_ONLY_MEASURE = BLOCK_IMPORTS + """
import recom_tvm.runtime.measure as m
sys.exit(m.main(sys.argv[1:]))
"""


def test_dense_offline_round_trip(tmp_path):
    """export (the layer's default + searched candidates) -> measure with the runtime only -> import."""
    from recom_tvm.schedules import offline

    work, out = str(tmp_path / "work"), str(tmp_path / "round1")
    offline.export_round(MLP, "llvm", work, out, per_task=2, batches=(16,))
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    ((name, task),) = manifest["tasks"].items()
    assert task["kind"] == "dense" and task["args"][0] == [[16, 300], "float32"]
    assert len(manifest["candidates"]) == 3 and manifest["candidates"][0]["default"]
    res = run_runtime_only("-c", RUNTIME_ONLY_MEASURE, out, "--number", "2", "--repeat", "2", timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    results = json.load(open(os.path.join(out, "results.json")))
    assert all(r["ok"] and r["ms"] > 0 for r in results["candidates"]), results
    best = offline.import_round(MLP, "llvm", work, os.path.join(out, "results.json"), batches=(16,))
    assert set(best) == {name}
    from recom_tvm.schedules.dense_apply import best_dense_configs

    assert len(best_dense_configs(recom_tvm.schedules.tune.open_database(work))) == 1


def test_dense_round_of_given_configs_round_trip(tmp_path):
    """export_dense_configs (the default first, configs the layer shrinks to the same schedule measured once) ->
    measure with the runtime only -> import as the next round."""
    from recom_tvm.schedules import offline

    work, out = str(tmp_path / "work"), str(tmp_path / "grid")
    given = [DenseConfig("cpu", rows=2, cols=16, k_block=64, unroll=2), CPU_DEFAULT[-1][1],
             DenseConfig("cpu", rows=2, cols=16, k_block=64, unroll=2)]
    offline.export_dense_configs(MLP, "llvm", work, out, lambda layer, b: given, (16,))
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    ((name, task),) = manifest["tasks"].items()
    assert manifest["round"] == 1 and task["batch"] == 16
    assert [c["config"] for c in manifest["candidates"]] == [CPU_DEFAULT[-1][1].to_json(), given[0].to_json()]
    assert [c["default"] for c in manifest["candidates"]] == [True, False]
    res = run_runtime_only("-c", RUNTIME_ONLY_MEASURE, out, "--number", "2", "--repeat", "2", timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    best = offline.import_round(MLP, "llvm", work, os.path.join(out, "results.json"), batches=(16,))
    assert set(best) == {name}
    assert offline.next_round(recom_tvm.schedules.tune.TrialLog(work)) == 2


def test_tuning_a_model_covers_its_fused_kernel_and_its_dense_tail(compiled, tmp_path, monkeypatch):
    """One recom_tvm.tune call on a whole optimized model measures the fused embedding kernel and the dense layers
    (each default first, then searched), and the build that reads the database computes what TF computes. The
    demo's layers are below the size tuned by default: the threshold is lowered to its largest layer only."""
    c = compiled(zoo.demo(), optimized=True)
    sizes = {t.key: t.layer.k * t.layer.n for t in dense_space.extract_dense_tasks(c.mod, "llvm", (16,), 0)}
    assert len(sizes) == 4
    monkeypatch.setattr(dense_space, "MIN_TUNED_WEIGHTS", max(sizes.values()))
    work = str(tmp_path / "tune")
    db = recom_tvm.tune(c.mod, "llvm", work, trials=1, batches=(16,), trials_per_iter=1, quiet=True)
    trials = [json.loads(x) for x in open(os.path.join(work, "trials.jsonl"))]
    by_task = {}
    for t in trials:
        by_task.setdefault(t["task"], []).append(t)
    assert len(by_task) == 2, sorted(by_task)  # the fused kernel and the largest dense layer
    assert sum(t.startswith("dense") or "matmul" in t for t in by_task) == 1, sorted(by_task)
    assert all(ts[0]["source"] == "default" and len(ts) == 2 and all(x["ms"] > 0 for x in ts)
               for ts in by_task.values()), trials
    from recom_tvm.schedules.dense_apply import best_dense_configs

    assert len(best_dense_configs(db)) == 1
    tuned = recom_tvm.build(c.mod, "llvm", c.params, database=db)
    for batch in (3, 16):
        feeds = zoo.demo().sample(batch, rng=100 + batch)
        np.testing.assert_allclose(tuned.run(feeds)["score"], c.ref(feeds), rtol=1e-5, atol=2e-5)


def test_dcn_cross_layer_gets_the_gemv_emulated():
    """DCN-v2's cross layer x * (x W + b) + x (the epilogue reads x again, K = N = 23): it kept TVM's default schedule
    because its shared partial sums had a run-time size, blamed on the [B, N] intermediates; the cause was the spare
    final-sum threads' rows (bound_final_sum_rows). Every default bucket now schedules it, with the same results
    at batches across the buckets, and nvcc compiles it."""
    from dense_helpers import cross_layer

    cross = cross_layer()
    cuda = make_target("cuda")
    built = schedule_buckets(cross, CUDA_DEFAULT, cuda)
    lib = build_layer(emulate(built), CPU)
    for b in (1, 8, 9, 33, 65, 131):
        np.testing.assert_allclose(run_layer(lib, cross, b, seed=b), run_layer(_reference(cross), cross, b, seed=b),
                                   rtol=2e-5, atol=2e-5, err_msg=f"B={b}")
    if nvcc_path() is not None:
        from recom_tvm.cuda_support import prepare_cuda_build

        prepare_cuda_build()
        with cuda:
            lib = tvm.compile(tvm.IRModule({"cross": built.with_attr("global_symbol", "cross")}), target=cuda)
        src = lib.mod.imports[0].inspect_source() if hasattr(lib, "mod") else lib.imports[0].inspect_source()
        assert len(re.findall(r"__global__[^;{]*\{", src)) == len(CUDA_DEFAULT)


def test_a_layer_that_cannot_be_scheduled_keeps_tvm_default_with_a_warning(monkeypatch):
    """A layer none of whose buckets build (e.g. intermediates of run-time size left in the kernel, which CUDA cannot
    allocate) keeps TVM's default schedule, and the build says so: a slower kernel should not pass unseen."""
    from dense_helpers import cross_layer

    import recom_tvm.schedules.dense_tail as dense_tail

    def refuse(*_args, **_kw):
        raise ValueError("intermediate buffers of run-time size [B, 23] left in the kernel")

    monkeypatch.setattr(dense_tail, "schedule_buckets", refuse)
    cross = cross_layer()
    with pytest.warns(UserWarning, match=r"dense layer cross \(K=23, N=23\) keeps TVM's default schedule .*run-time"):
        out = dense_tail_pass(make_target("cuda"))(tvm.IRModule({"cross": cross}))
    tvm.ir.assert_structural_equal(out["cross"], cross)


def test_a_layer_whose_epilogue_reads_a_bool_keeps_tvm_default():
    """A frozen TF1 tf.cond selecting between matmul results by a bool predicate: a vectorized epilogue reading a
    bool becomes `float2 v = make_ushort2(...)` in TVM 0.27's CUDA code, which nvcc rejects; the layer is left to
    the default rules (the imported tf1_cond_* corpus graphs failed to build for CUDA)."""
    from dense_helpers import select_layer

    assert match_dense(select_layer(16, 8)) is None
