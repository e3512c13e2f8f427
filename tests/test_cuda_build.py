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
