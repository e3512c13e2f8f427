"""
Import a TensorFlow embedding-column model, build it, run it
=============================================================

This tutorial walks through recom_tvm's first steps on a small recommendation model:

1. generate a TensorFlow model with feature columns (``tf_keras`` ``DenseFeatures``),
2. import it into a Relax ``IRModule`` with **symbolic** batch and id-count dims,
3. build it with ``recom_tvm.build`` for ``llvm`` (or ``cuda``),
4. feed it TF-style inputs (dense arrays and SparseTensor triples) and compare with TensorFlow.

It runs on a CPU in about a minute (most of it generating the TF model once; it is cached).
"""

######################################################################
# Setup
# -----
# recom_tvm's model specs are framework-neutral; ``tf_export`` turns one into a TF2 SavedModel and a
# frozen GraphDef (with a ``signature.json`` naming which placeholders make up each feature).

import numpy as np

import recom_tvm
from recom_tvm.models import tf_export
from recom_tvm.models.spec import ColumnSpec, ModelSpec

spec = ModelSpec(
    "tutorial",
    (
        ColumnSpec("age", "bucketized", 4, "mean", boundaries=(18.0, 25.0, 35.0, 50.0, 65.0)),
        ColumnSpec("country", "hash_string", 4, "mean", buckets=50),
        ColumnSpec("tags", "hash_string", 4, "sum", buckets=100, ids_per_row=(0, 4)),
        ColumnSpec("item", "identity", 8, "sqrtn", buckets=20, default_value=0, ids_per_row=(1, 3), vocab=25),
    ),
    dense_width=2,
    bottom_mlp=(4,),
    top_mlp=(8,),
)
paths = tf_export.export(spec)
print("TF artifacts:", sorted(k for k in paths if k != "root"))

######################################################################
# Import
# ------
# A frozen ``.pb`` imports with protobuf alone (no TensorFlow needed). The importer walks the graph op by
# op: shape arithmetic (``Shape``, ``StridedSlice``, ``Pack`` ...) is folded symbolically at import time,
# string ops (``StringToHashBucketFast``) go to a *host stage* that runs before the compiled module, and
# TF's sparse ops become recom ops (``recom.sparse_fill_empty_rows``, ``recom.unique``, ...).

mod, params, input_spec = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"])
print(input_spec.summary())

######################################################################
# The Relax function's inputs carry symbols: ``B`` (the batch, shared by every feature) and one
# ``nnz_<feature>`` per sparse feature. Data-dependent sizes (after ``Where``, ``Unique``, ...) get their
# own symbols through ``match_cast``.

main = mod["main"]
for p in list(main.params)[:6]:
    print(f"  {p.name}: {p.ty}")
print("symbols:", {k: v for k, v in list(input_spec.symbols.items())[:6]})

######################################################################
# Build and run
# -------------
# ``build`` lowers recom ops to TIR kernels and compiles with TVM's pipeline. Use ``target="cuda"`` on a
# machine with nvcc (no GPU needed to *build*; see tutorial 02 for running it on a GPU).

model = recom_tvm.build(mod, target="llvm", params=params)

feeds = spec.sample(8, rng=0, hostile=True)  # empty rows, negative / out-of-range / duplicate ids
print({k: (type(v).__name__ if isinstance(v, tuple) else v.shape) for k, v in feeds.items()})
ours = model.run(feeds)["score"]

######################################################################
# Compare with TensorFlow
# -----------------------
# TensorFlow's outputs are the contract: the same feeds through the SavedModel.

tf_out = tf_export.TFReference(spec, paths)(feeds)
print("max |recom_tvm - TF| =", float(np.abs(ours - tf_out).max()))
assert np.allclose(ours, tf_out, atol=2e-5)

######################################################################
# One build serves any batch size: no re-import, no recompilation.

for batch in (1, 33, 300):
    f = spec.sample(batch, rng=batch)
    assert np.allclose(model.run(f)["score"], tf_export.TFReference(spec, paths)(f), atol=2e-5)
print("batch sizes 1, 33, 300: match")

######################################################################
# Bad feeds fail with a clear error instead of a crash or a wrong answer:

bad = dict(feeds)
idx, vals, shape = bad["tags"]
bad["tags"] = (idx, vals[:-1], shape)
try:
    model.run(bad)
except recom_tvm.FeedError as err:
    print("FeedError:", err)
