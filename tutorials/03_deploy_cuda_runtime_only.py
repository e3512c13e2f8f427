"""
Build for CUDA without a GPU, export, and serve with the TVM runtime only
========================================================================

Recommendation models are compiled on a build host and served on GPU machines that carry only the TVM
runtime. This tutorial:

1. builds the optimized demo model (its columns fused into one kernel) for CUDA on this host, which needs
   nvcc but no GPU (recom_tvm builds a small stand-in for the CUDA driver on demand);
2. exports it: a shared library holding real SASS (for sm_90 and sm_80 here), the serving spec, the weights;
3. loads it in a fresh process that cannot import TVM's compiler, TensorFlow or SymEngine, and runs it: on
   the GPU when there is one, else the llvm build of the same model (the CUDA artifact then waits for a GPU
   machine: ``benchmarks/gpu_correctness.py`` runs exactly this there);
4. ships a model without its weights, for tables generated or restored where the model runs.
"""

######################################################################
# Import and optimize
# -------------------

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

import recom_tvm
from recom_tvm.cuda_support import fatbin_images, nvcc_path
from recom_tvm.models import tf_export, zoo

spec = zoo.demo()
paths = tf_export.export(spec)
mod, params, _ = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"])
opt = recom_tvm.optimize(mod)
out_dir = tempfile.mkdtemp(prefix="recom_tvm_deploy_")

######################################################################
# Build for CUDA on a GPU-less host
# ---------------------------------
# ``target="cuda"`` compiles with nvcc for ``recom_tvm.config.cuda_arch`` (default ``sm_90``). The library
# embeds the compiled image, never CUDA source: ``fatbin_images`` reads which GPU generations it holds.

libs = {}
if nvcc_path() is None:
    print("nvcc not found: skipping the CUDA builds (install the CUDA toolkit to build them)")
else:
    for arch in ("sm_90", "sm_80"):
        recom_tvm.config.cuda_arch = arch
        lib = os.path.join(out_dir, f"demo_{arch}.so")
        recom_tvm.build(opt, target="cuda", params=params).export_library(lib)
        libs[arch] = lib
        print(f"{arch}: {os.path.getsize(lib) // 1024} KiB, images {fatbin_images(lib)}")
    recom_tvm.config.cuda_arch = "sm_90"

######################################################################
# Three files make an artifact: the library, ``.spec.json`` (feeds, host stage, packing plan, the checks
# the host runs before launch) and ``.params.npz`` (weights; plain arrays, never pickles).

llvm_lib = os.path.join(out_dir, "demo_llvm.so")
recom_tvm.build(opt, target="llvm", params=params).export_library(llvm_lib)
print(sorted(f for f in os.listdir(out_dir) if f.startswith("demo_llvm")))
with open(llvm_lib + ".spec.json") as f:
    print("spec keys:", sorted(json.load(f)["spec"]))

######################################################################
# Load and run with the runtime only
# ----------------------------------
# A fresh process with ``TVM_USE_RUNTIME_LIB=1`` (load ``libtvm_runtime`` only) and
# ``RECOM_TVM_RUNTIME_ONLY=1``; an import hook makes sure nothing from the compiler side loads.


def gpu_present() -> bool:
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


lib = libs["sm_90"] if gpu_present() and "sm_90" in libs else llvm_lib
feeds_seed, batch = 3, 64
np.save(os.path.join(out_dir, "expected.npy"), tf_export.TFReference(spec, paths)(spec.sample(batch, rng=feeds_seed)))
serve = textwrap.dedent(f"""
    import sys
    blocked = ("tensorflow", "tf_keras", "symengine", "tvm.relax", "recom_tvm.frontend",
               "recom_tvm.passes", "recom_tvm.shapes", "recom_tvm.ops", "recom_tvm.build_module")
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.startswith(blocked):
                raise ImportError(name + " is not available on the serving host")
    sys.meta_path.insert(0, Block())
    import numpy as np
    import recom_tvm
    from recom_tvm.models import zoo
    model = recom_tvm.load({lib!r})
    got = model.run(zoo.demo().sample({batch}, rng={feeds_seed}))["score"]
    err = np.abs(got - np.load({os.path.join(out_dir, "expected.npy")!r})).max()
    print(f"served by {{model.target_kind}} on {{model.device}}: max |ours - TF| = {{err:.1e}}")
    assert err < 2e-5
""")
env = dict(os.environ, TVM_USE_RUNTIME_LIB="1", RECOM_TVM_RUNTIME_ONLY="1")
res = subprocess.run([sys.executable, "-c", serve], capture_output=True, text=True, env=env)
print(res.stdout.strip() or res.stderr[-2000:])
assert res.returncode == 0

######################################################################
# On a GPU machine the same script serves the CUDA library: copy the three files and a TVM runtime
# (``../shared/device/stage_runtime.sh`` packs one), then ``recom_tvm.load(path)`` picks ``cuda(0)``.
#
# Ship without weights
# --------------------
# ``export_library(path, include_params=False)`` writes only the weights' shapes. Where the model runs,
# ``set_params`` takes numpy arrays or device tensors (anything with ``__dlpack__``, e.g. ``torch.cuda``),
# used in place. The fused kernel reads all tables from one flat buffer; ``table_layout`` says where each
# table goes, so it can be filled directly on the device (``benchmarks/gpu_models.py`` does that with
# 2^23-row tables generated on the GPU).

bare = os.path.join(out_dir, "bare.so")
recom_tvm.build(opt, target="llvm", params=params).export_library(bare, include_params=False)
model = recom_tvm.load(bare)
(merged,) = model.spec.param_recipes
layout = model.table_layout(merged)
print(f"{merged}: {model.param_shapes()[merged]} floats, {len(layout)} tables, e.g. {layout[0]}")
flat = np.zeros(model.param_shapes()[merged], np.float32)
for table, offset, rows, stride in layout:
    dim = params[table].shape[1]
    flat[offset:offset + rows * stride].reshape(rows, stride)[:, :dim] = params[table]
model.set_params({merged: flat, **{n: params[n] for n in model.param_names() if n != merged}})
feeds = spec.sample(16, rng=1)
assert np.allclose(model.run(feeds)["score"], tf_export.TFReference(spec, paths)(feeds), atol=2e-5)
print("weights supplied at load: matches TensorFlow")

######################################################################
# Compact tables
# --------------
# ``table_dtype="float16" | "bfloat16" | "int8"`` (or per table / column) stores the fused kernel's tables as
# fp16 / bf16 rows or int8 rows with a row-wise scale and bias: half the table memory (int8: less from dim 24
# up); the kernel accumulates in float32 and the outputs stay float32. ``memory_usage`` says what the model needs
# on the device; the export carries the compact table, and ``set_params`` given float32 tables encodes them again.

half = recom_tvm.build(opt, target="llvm", params=params, table_dtype="float16")
for m in (model, half):
    use = m.memory_usage(feeds)
    print(f"{m.table_dtypes(merged)[layout[0][0]]:8s} tables {use['tables']:7,d} B, weights {use['weights']:6,d} B, "
          f"workspace at B = {use['batch']}: {use['workspace']:7,d} B")
err = float(np.abs(half.run(feeds)["score"] - tf_export.TFReference(spec, paths)(feeds)).max())
print(f"float16 tables: max |ours - TF| = {err:.1e}")
assert err < 5e-4
