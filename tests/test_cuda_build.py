"""CUDA artifacts build on this GPU-less host: the exported library embeds real sm_90 / sm_80 binaries (not source).

Needs nvcc (the CUDA toolkit); running them needs a GPU: benchmarks/gpu_correctness.py does that on the GPU
machine (results in benchmarks/results/).
"""

from __future__ import annotations

import json

import pytest

import recom_tvm
from recom_tvm.runtime import InputSpec
from recom_tvm.cuda_support import fatbin_images, has_fatbin, nvcc_path
from recom_tvm.models import zoo

pytestmark = pytest.mark.skipif(nvcc_path() is None, reason="nvcc (CUDA toolkit) is not installed on this host")


def test_cuda_library_holds_sm90_binary(compiled, tmp_path):
    c = compiled(zoo.per_column_type()["hash_string"])
    model = recom_tvm.build(c.mod, "cuda", c.params)
    lib = str(tmp_path / "m_cuda.so")
    model.export_library(lib)
    assert has_fatbin(lib)
    assert fatbin_images(lib) == [("elf", 90)]
    data = open(lib, "rb").read()
    assert b"__global__" not in data  # no CUDA source left in the library
    with open(lib + ".spec.json") as f:
        meta = json.load(f)
    assert meta["target_kind"] == "cuda"
    assert InputSpec.from_json(json.dumps(meta["spec"])).outputs[0]["name"] == "score"


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_fused_model_builds_for_each_arch(compiled, tmp_path, monkeypatch, arch):
    """The optimized model (one fused embedding kernel + the MLP) as SASS for the requested GPU generation."""
    monkeypatch.setattr(recom_tvm.config, "cuda_arch", arch)
    c = compiled(zoo.demo(), optimized=True)
    lib = str(tmp_path / f"demo_{arch}.so")
    recom_tvm.build(c.mod, "cuda", c.params).export_library(lib)
    images = fatbin_images(lib)
    assert images and all(img == ("elf", int(arch[3:])) for img in images), images


def test_cuda_export_of_a_model_without_device_kernels(tmp_path):
    """A model that folds to no device kernel (a numeric column passed through) exports for CUDA: there is no
    fatbin to check (the export used to refuse it as 'source only')."""
    import numpy as np
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def serve(x):
        return {"out": tf.identity(x)}

    mod, params, _ = recom_tvm.from_tensorflow(serve.get_concrete_function())
    model = recom_tvm.build(mod, "cuda", params)
    lib = str(tmp_path / "nokernel.so")
    model.export_library(lib)
    assert not has_fatbin(lib)
    assert recom_tvm.load(lib).spec.outputs[0]["name"] == "out"
    _ = np


def _kernel_ptx(mod, cfg, tmp_path, name: str, packed_dtype: str = "int64") -> str:
    """PTX of the fused kernel of `mod` alone with schedule `cfg` (CUDA source from TVM, then nvcc -ptx)."""
    import subprocess

    import tvm

    from recom_tvm.build_module import make_target
    from recom_tvm.cuda_support import prepare_cuda_build
    from recom_tvm.ops.fused_kernel import fused_embedding
    from recom_tvm.schedules.tasks import find_fused_call

    prepare_cuda_build()
    call = find_fused_call(mod)
    func = fused_embedding(call.meta, call.width, True, ((None, cfg),), packed_dtype=packed_dtype).with_attr(
        "global_symbol", "k")
    with make_target("cuda"):
        built = tvm.compile(tvm.IRModule({"k": func}), target=make_target("cuda"))
    src = tmp_path / f"{name}.cu"
    src.write_text(getattr(built, "mod", built).imports[0].inspect_source())
    subprocess.run([nvcc_path(), "-arch=sm_90", "-ptx", "-O3", "-o", str(tmp_path / f"{name}.ptx"), str(src)],
                   check=True, capture_output=True)
    return (tmp_path / f"{name}.ptx").read_text()


def test_compact_tables_build_for_cuda_with_vector_loads(compiled, tmp_path):
    """Mixed table dtypes build into one sm_90 binary; the kernel reads each dtype's rows with the vector loads
    it was laid out for: 16 bytes of fp16 / bf16 at vec = 8, 8 bytes at vec = 4, int8 codes as one 32-bit word
    and the row's scale and bias as one 8-byte load (PTX)."""
    from recom_tvm.ops.fused_kernel import KernelConfig
    from recom_tvm.passes.compact_tables import CompactTables

    c = compiled(zoo.demo(), optimized=True)
    choice = {"default": "int8", "item_ids_embedding": "float16", "user_id_embedding": "bfloat16"}
    model = recom_tvm.build(c.mod, "cuda", c.params, table_dtype=choice)
    lib = str(tmp_path / "demo_compact.so")
    model.export_library(lib)
    assert fatbin_images(lib) == [("elf", 90)]
    assert set(recom_tvm.load(lib).table_dtypes("recom_tvm_fused_tables").values()) == {"int8", "float16",
                                                                                      "bfloat16"}
    ptx = {(d, v): _kernel_ptx(CompactTables(d)(c.mod), KernelConfig(vec=v), tmp_path, f"{d}_{v}")
           for d, v in (("float16", 8), ("bfloat16", 8), ("float16", 4), ("int8", 4))}
    assert "ld.global.nc.v4.u32" in ptx["float16", 8] and "ld.global.nc.v4.u32" in ptx["bfloat16", 8]  # 16 bytes
    assert "ld.global.nc.v4.f32" not in ptx["float16", 8]  # no float32 table path compiled in
    assert "ld.global.nc.v4.u16" in ptx["float16", 4]  # 4 halves: 8 bytes
    assert "ld.global.nc.u32" in ptx["int8", 4] and "ld.global.nc.v2.f32" in ptx["int8", 4]
    for name, text in ptx.items():
        assert "ld.local" not in text and "st.local" not in text, name


def test_int32_packed_input_builds_for_cuda(compiled, tmp_path):
    """The kernel over an int32 packed input (fused_embedding(..., packed_dtype="int32")) builds for sm_90 and
    reads the packed words with 32-bit loads (fewer 64-bit global loads than the int64 kernel, more 32-bit)."""
    import re

    from recom_tvm.ops.fused_kernel import KernelConfig

    c = compiled(zoo.demo(), optimized=True)
    ptx = {d: _kernel_ptx(c.mod, KernelConfig(), tmp_path, f"packed_{d}", packed_dtype=d) for d in ("int64", "int32")}
    loads64 = {d: len(re.findall(r"ld\.global(?:\.nc)?\.[usb]64", t)) for d, t in ptx.items()}
    loads32 = {d: len(re.findall(r"ld\.global(?:\.nc)?\.[us]32", t)) for d, t in ptx.items()}
    assert loads64["int32"] < loads64["int64"] and loads32["int32"] > loads32["int64"], (loads64, loads32)


def test_run_time_sizes_build_for_cuda(tmp_path):
    """A Keras 3 ragged model keeps data-dependent sizes (its longest row): TVM's FuseOps moved kernels sized by
    such a symbol above the match_cast learning it ('... has not been computed' at VMShapeLower) until the blocks
    were split there (ops/split_blocks.py)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(4)
    hashing, emb = keras.layers.Hashing(num_bins=50), keras.layers.Embedding(50, 4)

    @tf.function(input_signature=[tf.RaggedTensorSpec([None, None], tf.string)])
    def serve(text):
        return {"score": tf.reduce_mean(emb(hashing(text)), axis=1)}

    mod = tf.Module()
    mod.layers, mod.serve = [hashing, emb], serve
    path = str(tmp_path / "sm")
    tf.saved_model.save(mod, path, signatures={"serving_default": serve.get_concrete_function()})
    rmod, params, _ = recom_tvm.from_tensorflow(path)
    lib = str(tmp_path / "ragged.so")
    recom_tvm.build(rmod, "cuda", params).export_library(lib)
    assert has_fatbin(lib)


def test_misaligned_models_store_aligned_vectors_whole(compiled, tmp_path):
    """A model with a numeric column and an odd concat width (the demo: 65) cannot store every bag's vector whole;
    the kernel decides per bag: a 16-byte store (st.global.wb.v4) where the vector lies aligned inside its column,
    4-byte stores elsewhere (PTX)."""
    from recom_tvm.ops.fused_kernel import KernelConfig, _vec_stores
    from recom_tvm.schedules.tasks import find_fused_call

    c = compiled(zoo.demo(), optimized=True)
    call = find_fused_call(c.mod)
    assert not _vec_stores(call.meta, call.width, 4)
    ptx = _kernel_ptx(c.mod, KernelConfig(), tmp_path, "demo_stores")
    assert "st.global.wb.v4.f32" in ptx and "st.global.f32" in ptx
    assert "ld.local" not in ptx and "st.local" not in ptx


def test_search_once_on_a_model_without_bucketized_columns_builds(tmp_path):
    """KernelConfig.search_once (bucketize once per bag) is a no-op without bucketized columns; the kernel passed it
    on to every bag anyway and, with 128-float rows, TVM refused the kernel ("Buffer bag_in_pass is used before its
    definition"): compact_kernels.py's export of model L128 stopped there, and such a tuning candidate failed."""
    from recom_tvm.models.spec import ColumnSpec, ModelSpec
    from recom_tvm.ops.fused_kernel import KernelConfig

    spec = ModelSpec("hash128_search_once", tuple(
        ColumnSpec(f"l{i}", "hash_string", 128, "sum", buckets=4096, ids_per_row=(1, 10), vocab=1 << 20)
        for i in range(2)), dense_width=4, bottom_mlp=(4,), top_mlp=(8,), seed=3)
    from recom_tvm.models import tf_export

    mod, _, _ = recom_tvm.from_tensorflow(tf_export.export(spec)["saved_model"])
    opt = recom_tvm.optimize(mod)
    for name, cfg in (("once", KernelConfig(threads=256, search_once=True)),
                      ("once_group4", KernelConfig(threads=256, search_once=True, stage_meta=True, group=4)),
                      ("once_vec8", KernelConfig(threads=128, vec=8, rows=2, search_once=True, stage_meta=True,
                                                 smem_bounds=True))):
        assert ".entry" in _kernel_ptx(opt, cfg, tmp_path, name), name
