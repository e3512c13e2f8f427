"""Tune the fused embedding kernel of full-size models E and F in offline rounds (the GPU node has no compiler).

    # host: next round's candidates for each model (round 1 also measures the default schedule)
    python benchmarks/tune_models.py export --round-dir .device/tune_r1 [--models e,f] [--per-task 40]
    # GPU node (TVM runtime only):
    python benchmarks/tune_models.py measure --round-dir .device/tune_r1 --out $OUT
    # host: commit the timings (databases in benchmarks/tuning/<model>/), print the summary
    python benchmarks/tune_models.py import --round-dir .device/tune_r1 --results $OUT

Tasks: the fused kernel at B = 32, 256, 2048, each measured on a synthetic request of that batch (ids uniform over
the tables, 1-10 ids per multi-hot bag). Databases and trial logs: benchmarks/tuning/model_<m>/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

BATCHES = (32, 256, 2048)
TUNING = os.path.join(HERE, "tuning")


def work_dir(m: str) -> str:
    return os.path.join(TUNING, f"model_{m}")


def export(round_dir: str, models: list[str], per_task: int, rows: int, arch: str) -> None:
    import recom_tvm
    from full_models import optimized
    from recom_tvm.schedules import offline

    recom_tvm.config.cuda_arch = arch
    for m in models:
        opt, _, _ = optimized(m, rows, "e2e")
        offline.export_round(opt, "cuda", work_dir(m), os.path.join(round_dir, m), per_task=per_task,
                             batches=BATCHES)


def measure(round_dir: str, out_dir: str, number: int, repeat: int) -> int:
    from recom_tvm.runtime.measure import measure as run

    os.makedirs(out_dir, exist_ok=True)
    for m in sorted(os.listdir(round_dir)):
        d = os.path.join(round_dir, m)
        if not os.path.exists(os.path.join(d, "manifest.json")):
            continue
        print(f"== model {m}", flush=True)
        res = run(d, number=number, repeat=repeat)
        with open(os.path.join(out_dir, f"tune_{m}.json"), "w") as f:
            json.dump(res, f, indent=1)
    return 0


def import_results(round_dir: str, results_dir: str, models: list[str], rows: int, arch: str) -> None:
    import shutil

    import recom_tvm
    from full_models import optimized
    from recom_tvm.schedules import offline
    from recom_tvm.schedules.tasks import extract_tasks
    from recom_tvm.schedules.tune import format_row, summarize

    recom_tvm.config.cuda_arch = arch
    for m in models:
        src = os.path.join(results_dir, f"tune_{m}.json")
        if not os.path.exists(src):
            print(f"model {m}: no results in {results_dir}")
            continue
        dst = os.path.join(round_dir, m, "results.json")
        shutil.copyfile(src, dst)
        opt, _, _ = optimized(m, rows, "e2e")
        offline.import_round(opt, "cuda", work_dir(m), dst, batches=BATCHES)
        for row in summarize(work_dir(m), extract_tasks(opt, "cuda", BATCHES))["tasks"]:
            print(f"model {m}: {format_row(row)}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["export", "measure", "import"])
    p.add_argument("--round-dir", required=True)
    p.add_argument("--out", default=os.environ.get("OUT", "."), help="measure: where results go")
    p.add_argument("--results", default=None, help="import: the measure step's --out")
    p.add_argument("--models", default="e,f")
    p.add_argument("--per-task", type=int, default=40)
    p.add_argument("--rows", type=int, default=1 << 23)
    p.add_argument("--arch", default="sm_90")
    p.add_argument("--number", type=int, default=20)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    models = a.models.split(",")
    if a.mode == "export":
        export(a.round_dir, models, a.per_task, a.rows, a.arch)
    elif a.mode == "measure":
        return measure(a.round_dir, a.out, a.number, a.repeat)
    else:
        import_results(a.round_dir, a.results or a.out, models, a.rows, a.arch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
