"""
Tuning the fused embedding kernel
=================================

``recom_tvm.optimize`` fuses every embedding column of a model into one kernel. How that kernel is laid out on
the GPU — threads per block, floats per load, bags per thread, id-loop unrolling, which columns' blocks go first —
is a ``KernelConfig``, and the best one depends on the model and the batch size. ``recom_tvm.tune`` searches
that space with TVM's MetaSchedule (evolutionary search guided by an XGBoost cost model, records in a JSON
database), one task per representative batch size; ``recom_tvm.build(..., database=...)`` compiles the best
schedule of each batch bucket into the kernel, which picks one by the request's batch at run time (no
recompilation per batch).

This tutorial tunes a small model on the CPU (llvm) so that it runs anywhere in a minute; on a GPU host use
``target="cuda"``. It then shows the two ways to tune on GPU nodes: an RPC tracker, and offline rounds.
"""

######################################################################
# A model and its design space
# ----------------------------

import json
import os
import tempfile

import numpy as np

import recom_tvm
from recom_tvm.models import tf_export, zoo
from recom_tvm.schedules import KNOBS, offline
from recom_tvm.runtime import measure

spec = zoo.demo()
paths = tf_export.export(spec)
mod, params, _ = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"])
mod = recom_tvm.optimize(mod)
for knob, values in KNOBS.items():
    print(f"  {knob:12s} {values}")

######################################################################
# Tune locally
# ------------
# One task per batch size; the default schedule of each is measured first, so the summary says what tuning
# bought. ``trials`` is per task. Progress goes to stderr; every trial is in ``work_dir/trials.jsonl``.

work = tempfile.mkdtemp(prefix="recom_tune_")
db = recom_tvm.tune(mod, target="llvm", work_dir=os.path.join(work, "local"), trials=6, batches=(16, 256),
                    trials_per_iter=3)
with open(os.path.join(work, "local", "summary.json")) as f:
    for row in json.load(f)["tasks"]:
        print(f"B={row['batch']}: default {row['default_ms']:.4f} ms, best {row['best_ms']:.4f} ms "
              f"after {row['best_at_trial']} of {row['trials']} trials")

######################################################################
# Build with the database: the kernel holds the best schedule of each bucket (edges at the geometric means of
# the tuned batches) and answers exactly as the default one does.

tuned = recom_tvm.build(mod, "llvm", params, database=db)
default = recom_tvm.build(mod, "llvm", params)
print("schedules per bucket:", tuned.kernel_schedules)
for batch in (8, 300):
    feeds = spec.sample(batch, rng=batch)
    assert np.array_equal(tuned.run(feeds)["score"], default.run(feeds)["score"])

######################################################################
# GPU nodes behind an RPC tracker
# -------------------------------
# On the tuning host (which has the compiler and nvcc)::
#
#     python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port 9190
#
# on every GPU node (the TVM runtime only)::
#
#     python -m tvm.exec.rpc_server --tracker TUNING_HOST:9190 --key h100
#
# and then::
#
#     runner = recom_tvm.schedules.rpc_runner(work_dir, tracker="TUNING_HOST:9190", key="h100", max_workers=4)
#     db = recom_tvm.tune(mod, "cuda", work_dir, trials=128, runner=runner)
#
# or ``recom-tvm tune model.pb --target cuda --runner rpc --tracker TUNING_HOST:9190 --key h100 --workers 4``.
# Candidates are built here and measured there on the task's real request (uploaded by the runner).
#
# GPU nodes the tuning host cannot reach
# --------------------------------------
# Offline rounds: export a batch of candidates, carry the directory to the GPU node, measure it there with a
# runtime-only script, import the timings (the next round's cost model learns from them), repeat. Here the
# "GPU node" is this process, on the CPU:

for rnd in (1, 2):
    out = os.path.join(work, f"round{rnd}")
    offline.export_round(mod, "llvm", os.path.join(work, "offline"), out, per_task=3, batches=(16, 256))
    # on the GPU node: python -m recom_tvm.runtime.measure ROUND_DIR   (writes ROUND_DIR/results.json)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(measure.measure(out, number=3, repeat=3, log=lambda s: None), f)
    best = offline.import_round(mod, "llvm", os.path.join(work, "offline"), os.path.join(out, "results.json"),
                                batches=(16, 256))
    print(f"round {rnd}: best ms per task {best}")

######################################################################
# The same from the command line::
#
#     recom-tvm tune model.pb --target cuda --work-dir W --offline-export round1 --trials 40
#     python -m recom_tvm.runtime.measure round1                   # on the GPU node
#     recom-tvm tune model.pb --target cuda --work-dir W --offline-import round1/results.json
#
# ``benchmarks/tune_models.py`` runs these rounds for RECom's models E and F; BENCHMARKS.md has the results.
