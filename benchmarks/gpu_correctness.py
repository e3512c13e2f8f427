"""CUDA correctness run: models built here (GPU-less host) and run on the GPU machine with the TVM runtime only.

    # host (TensorFlow + compiler): build CUDA libraries, sample feeds, compute TF's outputs
    python benchmarks/gpu_correctness.py prepare --dir .device/gpu_check
    # GPU machine (runtime only; see ../shared/device/stage_runtime.sh):
    python benchmarks/gpu_correctness.py run --dir .device/gpu_check --out $OUT

Models: the demo and one per column type / input format, each as imported (passes off: TF's graph op by op) and
optimized (redundancy eliminated, columns fused into one kernel); batches 1, 7, 512, ordinary and hostile
inputs, plus an out-of-range id for an identity column without default (TF raises; so must we, on the GPU too).
The demo also with its packed input forced to int64 (`demo.i64`: the default is int32, ids narrowed saturating) and
with ids far outside its tables (`huge_ids`: 2^32 + 5, -2^32 + 7, 2^40, ... that a wrapping cast would make valid).
Five of them also with points of the fused kernel's schedule space in which every value of every knob appears
(`--schedules`, SCHEDULE_MODELS), and with compact tables (COMPACT_MODELS: every table dtype with the default
schedule, and each with schedule variants): a compact build is checked against the same compact model built for
llvm here (the numpy-exact reference of the quantized model: float summation order only) and against TF within
SCORE_ATOL of its dtype (tests/test_compact_tables.py states the same tolerances).
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from device_info import gpu_name  # noqa: E402
from gpu_common import cli, report_cases  # noqa: E402

BATCHES = (1, 7, 512)
# models also built with random points of the fused kernel's schedule space (batch buckets split at 4 and 100, so
# B = 1, 7, 512 each run a different schedule): every knob value on the GPU, against TF
SCHEDULE_MODELS = ("demo", "mixed24", "weighted_mix", "vocab_mix", "example_mix")
# models also built with compact tables (recom_tvm.build(..., table_dtype=...)), each dtype alone and mixed
COMPACT_MODELS = ("demo", "mixed24", "weighted_mix")
COMPACT = ("float16", "bfloat16", "int8", "mixdt")  # mixdt: int8 with two columns float16 (_compact_choice)
# ids far outside every table (the demo's item_ids: identity with default, dense input with -1 = missing)
HUGE_IDS = (2**32 + 5, 2**32 - 1, -2**32 + 7, 2**31, 2**31 - 1, -2**31 - 1, 2**40 + 3, 2**63 - 1, -2**63, 300, -1)
SCORE_ATOL = {"float32": 1e-4, "float16": 5e-4, "bfloat16": 5e-3, "int8": 5e-3, "mixdt": 5e-3}


def schedule_variants(n: int, seed: int = 0) -> list[tuple]:
    """n bucketed schedule sets; knob values cycled so that each value of each knob appears."""
    import random

    from recom_tvm.schedules import KNOBS, KernelConfig

    rng = random.Random(seed)
    pools = {k: [] for k in KNOBS}

    def draw(k):
        if not pools[k]:
            pools[k] = list(KNOBS[k])
            rng.shuffle(pools[k])
        v = pools[k].pop()
        return bool(v) if isinstance(getattr(KernelConfig(), k), bool) else v

    out = []
    for _ in range(n):
        cfgs = [KernelConfig(**{k: draw(k) for k in KNOBS}) for _ in range(3)]
        out.append(((4, cfgs[0]), (100, cfgs[1]), (None, cfgs[2])))
    return out


def _compact_choice(opt, d: str):
    """table_dtype of compact variant d; "mixdt": int8 with the model's first two fused columns float16."""
    if d != "mixdt":
        return d
    from recom_tvm.module_spec import spec_of

    cols = [c["name"] for c in spec_of(opt).fused["columns"] if c["kind"] != "numeric"]
    return {"default": "int8", **{c: "float16" for c in cols[:2]}}


def prepare(out_dir: str, arch: str, only: list[str] | None = None, schedules: int = 0, compact: int = 0,
            target: str = "cuda") -> None:
    import recom_tvm
    from recom_tvm.models import feeds_io, tf_export, zoo

    recom_tvm.config.cuda_arch = arch
    os.makedirs(out_dir, exist_ok=True)
    specs = {"demo": zoo.demo(), "mixed24": zoo.mixed(24, seed=3), "weighted_mix": zoo.weighted_mix(),
             "vocab_mix": zoo.vocab_mix(), "crossed_mix": zoo.crossed_mix(), "example_mix": zoo.example_mix(),
             **zoo.per_column_type()}
    for name, spec in specs.items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        paths = tf_export.export(spec)
        ref = tf_export.TFReference(spec, paths)
        mod, params, _ = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"])
        recom_tvm.build(mod, target, params).export_library(os.path.join(out_dir, f"{name}.so"))
        opt = recom_tvm.optimize(mod)
        recom_tvm.build(opt, target, params).export_library(os.path.join(out_dir, f"{name}.opt.so"))
        if name == "demo":  # the packed input as int64 too (int32 by default where the tables allow)
            old, recom_tvm.config.packed_dtype = recom_tvm.config.packed_dtype, "int64"
            try:
                recom_tvm.build(recom_tvm.optimize(mod), target, params).export_library(
                    os.path.join(out_dir, f"{name}.i64.so"))
            finally:
                recom_tvm.config.packed_dtype = old
        if name in SCHEDULE_MODELS:
            for k, buckets in enumerate(schedule_variants(schedules, seed=len(name))):
                recom_tvm.build(opt, target, params, kernel_schedules=buckets).export_library(
                    os.path.join(out_dir, f"{name}.s{k}.so"))
        compact_refs = {}  # dtype -> the same compact model on llvm (what the GPU's output must equal)
        if name in COMPACT_MODELS and compact:
            for d in COMPACT:
                choice = _compact_choice(opt, d)
                compact_refs[d] = recom_tvm.build(opt, "llvm", params, table_dtype=choice)
                recom_tvm.build(opt, target, params, table_dtype=choice).export_library(
                    os.path.join(out_dir, f"{name}.{d}.so"))
                for k, buckets in enumerate(schedule_variants(compact, seed=len(name) + len(d))):
                    recom_tvm.build(opt, target, params, table_dtype=choice, kernel_schedules=buckets
                                    ).export_library(os.path.join(out_dir, f"{name}.{d}.s{k}.so"))
        for batch in BATCHES:
            for hostile in (False, True):
                feeds = spec.sample(batch, rng=batch * 7 + hostile, hostile=hostile)
                extra = {f"expected_{d}": m.run(feeds)["score"] for d, m in compact_refs.items()}
                feeds_io.save(os.path.join(out_dir, f"{name}__{batch}_{int(hostile)}.npz"), feeds,
                              expected=ref(feeds), **extra)
        if name == "demo":  # identity-with-default ids a wrapping int32 cast would turn into valid rows
            feeds = spec.sample(16, rng=5)
            feeds["item_ids"] = np.resize(np.array(HUGE_IDS, np.int64), feeds["item_ids"].shape)
            extra = {f"expected_{d}": m.run(feeds)["score"] for d, m in compact_refs.items()}
            feeds_io.save(os.path.join(out_dir, f"{name}__huge_ids.npz"), feeds, expected=ref(feeds), **extra)
        if name == "identity":
            feeds = spec.sample(7, rng=3)
            idx, vals, shape = feeds["x"]
            vals = vals.copy()
            vals[-1] = spec.columns[0].buckets + 5
            feeds["x"] = (idx, vals, shape)
            try:
                ref(feeds)
                raise AssertionError("TF accepted an out-of-range identity id")
            except Exception as err:  # noqa: BLE001 - TF's InvalidArgumentError
                if isinstance(err, AssertionError):
                    raise
            feeds_io.save(os.path.join(out_dir, f"{name}__oor_error.npz"), feeds, expect_error=np.array(1))
        built = arch if target == "cuda" else target
        print(f"{name}: built for {built} and sampled in {time.perf_counter() - t0:.1f}s", flush=True)


def run(in_dir: str, out_dir: str | None) -> int:
    from recom_tvm import InvalidArgumentError
    from recom_tvm.models import feeds_io
    from recom_tvm.runtime import load

    device_name = gpu_name()
    rows, memory = [], {}
    for lib in sorted(p for p in glob.glob(os.path.join(in_dir, "*.so")) if not p.endswith(".host.so")):
        name = os.path.basename(lib)[:-3]
        base = name.split(".")[0]  # name.opt / name.s<k>: the model's optimized / scheduled variants
        t0 = time.perf_counter()
        model = None
        free_before = _free_device_memory()
        model = load(lib)
        for case in sorted(glob.glob(os.path.join(in_dir, f"{base}__*.npz"))):
            feeds, extra = feeds_io.load(case)
            label = os.path.basename(case)[len(base) + 2:-4]
            if "expect_error" in extra:
                try:
                    model.run(feeds)
                    ok, err, msg = False, None, "no error raised"
                except InvalidArgumentError as e:
                    ok, err, msg = True, None, str(e)[:120]
            else:
                got = model.run(feeds)["score"]
                exp = extra["expected"]
                err = float(np.abs(got - exp).max()) if got.size else 0.0
                dtype = next((p for p in name.split(".")[1:] if p in COMPACT), "float32")
                ok = bool(got.shape == exp.shape and err <= SCORE_ATOL[dtype] and np.isfinite(got).all())
                msg = ""
                if dtype != "float32":  # and the same compact model on llvm, up to float summation order
                    q = extra[f"expected_{dtype}"]
                    qerr = float(np.abs(got - q).max()) if got.size else 0.0
                    ok = ok and qerr < 1e-4
                    msg = f"{dtype}: vs llvm {qerr:.1e}"
            rows.append({"model": name, "case": label, "max_abs_err": err, "ok": ok, "note": msg})
        memory[name] = _memory_row(model, free_before)
        print(f"{name}: {sum(r['ok'] for r in rows if r['model'] == name)}/"
              f"{sum(r['model'] == name for r in rows)} cases ok ({time.perf_counter() - t0:.1f}s); "
              f"{memory[name]['text']}", flush=True)
    print(f"\n{'model':24s} {'case':12s} {'max|err|':>10s} ok")
    for r in rows:
        e = "-" if r["max_abs_err"] is None else f"{r['max_abs_err']:.2e}"
        print(f"{r['model']:24s} {r['case']:12s} {e:>10s} {'yes' if r['ok'] else 'NO'} {r['note'][:60]}")
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "device_memory.json"), "w") as f:
            json.dump({"device": device_name, "models": memory}, f, indent=1)
    return report_cases(rows, device_name, "cases", out_dir, "gpu_correctness.json")


def _free_device_memory() -> int | None:
    """Free device memory after the previous model's buffers are gone (its VM's pool cleared)."""
    import gc

    import tvm
    import tvm_ffi

    gc.collect()
    tvm_ffi.get_global_func("vm.builtin.memory_manager.clear")()
    from recom_tvm.runtime.memory import free_memory

    return free_memory(tvm.cuda(0))


def _memory_row(model, free_before: int | None) -> dict:
    """Device memory the model holds after its cases (parameters + the VM pool's buffers: the peak of its requests,
    as the pool keeps what it allocated) beside the parameter bytes its spec predicts, by table dtype."""
    from recom_tvm.runtime.memory import free_memory, parameter_bytes

    after = free_memory(model.device)
    pred = parameter_bytes(model.spec)
    used = None if free_before is None or after is None else free_before - after
    mib = 1 << 20
    by = ", ".join(f"{d} {b / mib:.2f}" for d, b in sorted(pred["tables_by_dtype"].items()))
    text = (f"device memory {'?' if used is None else f'{used / mib:.1f}'} MiB held; parameters predicted "
            f"{(pred['tables'] + pred['weights']) / mib:.2f} MiB (tables {pred['tables'] / mib:.2f}: {by or '-'}; "
            f"weights {pred['weights'] / mib:.2f})")
    return {"held_bytes": used, "predicted": pred, "text": text}


def main() -> int:
    p = cli(__doc__, ".device/gpu_check")
    p.add_argument("--target", default="cuda", help="prepare: llvm builds the same set for a dry run on this host")
    p.add_argument("--only", nargs="*", default=None, help="prepare these models only (default: all)")
    p.add_argument("--schedules", type=int, default=4,
                   help=f"schedule variants of {', '.join(SCHEDULE_MODELS)} (0: none)")
    p.add_argument("--compact", type=int, default=1,
                   help=f"schedule variants per table dtype of {', '.join(COMPACT_MODELS)} (0: no compact builds)")
    a = p.parse_args()
    if a.mode == "prepare":
        prepare(a.dir, a.arch, a.only, a.schedules, a.compact, a.target)
        return 0
    return run(a.dir, a.out)


if __name__ == "__main__":
    sys.exit(main())
