"""
Eliminating redundant work in embedding columns
===============================================

A TensorFlow embedding column runs ~40 ops per feature: it filters negative ids (``Where`` + two gathers,
a data-dependent size), fills empty rows (``SparseFillEmptyRows``, another one), deduplicates ids
(``Unique``, another one), gathers table rows, reduces segments, and masks the filled rows back to zero.
``recom_tvm.optimize`` proves most of it redundant and rewrites each column into one bag of table rows.

This tutorial shows one column before and after, and the facts that justified each rewrite.
"""

######################################################################
# One hash-bucket column
# ----------------------

import numpy as np

import recom_tvm
from recom_tvm import report
from recom_tvm.models import tf_export
from recom_tvm.models.spec import ColumnSpec, ModelSpec
from recom_tvm.passes import identify_columns

spec = ModelSpec("tutorial_opt", (
    ColumnSpec("tags", "hash_string", 8, "mean", buckets=100, ids_per_row=(0, 4)),
    ColumnSpec("item", "identity", 8, "sum", buckets=20, ids_per_row=(1, 3), vocab=20),
    ColumnSpec("age", "bucketized", 4, "mean", boundaries=(18.0, 30.0, 50.0)),
), top_mlp=(4,))
paths = tf_export.export(spec)
mod, params, _ = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"])
print("imported:", sum(report.relax_op_counts(mod).values()), "Relax ops,",
      report.device_syncs(mod), "device->host syncs (data-dependent sizes and range checks)")

######################################################################
# Optimize
# --------
# The pipeline: FoldProvenComparisons (value ranges decide the id filter), EliminateRedundancy (rewrite
# rules, applied until nothing fires), CommonSubexprAcrossColumns, ResolveShapes.

opt = recom_tvm.optimize(mod)
print("optimized:", sum(report.relax_op_counts(opt).values()), "Relax ops,", report.device_syncs(opt), "syncs")

######################################################################
# The facts behind each rewrite: value ranges (StringToHashBucketFast's ids lie in [0, buckets), Bucketize's
# in [0, len(boundaries)]), sortedness of rows (a feed's rows are sorted on the host, as TF's
# SparseFillEmptyRows does), and symbolic equalities (the bucketized column's rows are ``arange(B)``, so
# it is a plain gather).

for fact in opt.attrs["recom_tvm.facts"]:
    print(" -", fact)

######################################################################
# The columns, before and after: the same slots of the concat, now read by one op each.

for col in identify_columns(opt):
    print(f"  {col.name:26s} {col.kind:12s} {col.op:22s} {col.combiner:14s} slot {col.concat_slot}")

######################################################################
# The Relax for the hash column is now a slice of the indices (the row of each id) and one bag:

text = opt["main"].script(show_meta=False)
print("\n".join(line for line in text.splitlines() if "embedding_bag" in line or "strided_slice" in line))

######################################################################
# What the runtime does instead: for the identity column without a default, TF-CPU raises on ids past the
# table; the check moved to the host, before launch. The feed's rows are sorted there when needed.

from recom_tvm.module_spec import spec_of  # noqa: E402

print("host checks:", [c["tensor"] for c in spec_of(opt).id_checks], "| sort rows of:", spec_of(opt).sort_rows)

######################################################################
# Same answers as TensorFlow, ordinary and hostile inputs alike:

model = recom_tvm.build(opt, target="llvm", params=params)
ref = tf_export.TFReference(spec, paths)
for batch in (1, 17, 256):
    feeds = spec.sample(batch, rng=batch, hostile=True)
    assert np.allclose(model.run(feeds)["score"], ref(feeds), atol=2e-5)
print("optimized module matches TensorFlow")
