"""The benchmark suite's models and, on the build host, their artifacts.

Models: RECom's E and F at full size (2^23-row tables), 100- and 1,000-column mixed models, and a column-count
sweep of mixed models (10 ... 2,000 columns; 100 and 1,000 are the mixed models themselves). Per model and module
variant (embedding stage alone, "emb", or end to end, "e2e"), the systems built for CUDA:
  fused    recom_tvm.optimize: redundancy eliminated, all columns one kernel (default schedule)
  tuned    the same with the tuning database's schedules (E and F: benchmarks/tuning/)
  unfused  redundancy eliminated, columns not fused (optimize(disable=["fuse_columns"])); models of at most
           UNFUSED_MAX_COLUMNS columns
  off      every pass off: TF's graph op by op (models of at most OFF_MAX_COLUMNS columns: the CUDA build of a
           1,000-column imported module is 41,000 kernels)
Every library is exported without weights: the GPU side generates them from (spec seed, column / parameter name),
the same values for every system and for PyTorch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np

BATCHES = (1, 32, 64, 128, 256, 512, 1024, 2048)
SWEEP_BATCHES = (32, 256, 2048)
OFF_MAX_COLUMNS = 100
UNFUSED_MAX_COLUMNS = 1200  # the 2,000-column unfused module is 8,600 kernels: ~10 min of nvcc per variant
LARGE_ROWS = 1 << 23


@dataclasses.dataclass(frozen=True)
class SuiteModel:
    name: str
    factory: str  # recom_tvm.models.zoo function
    args: tuple
    batches: tuple = BATCHES
    full_size: bool = False  # E / F: large tables resized to LARGE_ROWS (recom_tvm.models.resize)
    sweep: bool = False  # part of the column-count sweep

    def spec(self):
        from recom_tvm.models import zoo

        return getattr(zoo, self.factory)(*self.args)

    @property
    def columns(self) -> int:
        return len(self.spec().columns)


MODELS = {
    "e": SuiteModel("e", "model_e", (LARGE_ROWS,), full_size=True),
    "f": SuiteModel("f", "model_f", (LARGE_ROWS,), full_size=True),
    "mixed100": SuiteModel("mixed100", "mixed", (100, 0), sweep=True),
    "mixed1000": SuiteModel("mixed1000", "mixed", (1000, 0), sweep=True),
    **{f"sweep{n}": SuiteModel(f"sweep{n}", "mixed", (n, 0), batches=SWEEP_BATCHES, sweep=True)
       for n in (10, 30, 300, 2000)},
}


def model_paths(m: SuiteModel) -> dict:
    """{pb, signature} of the model's frozen graph (E / F: resized)."""
    if m.full_size:
        from full_models import paths

        p = paths({"model_e": "e", "model_f": "f"}[m.factory], LARGE_ROWS)
        return {"pb": p["pb"], "signature": p["signature"]}
    from recom_tvm.models import tf_export

    p = tf_export.export(m.spec())
    return {"pb": p["pb"], "signature": p["signature"]}


def systems_for(m: SuiteModel) -> list[str]:
    out = ["fused"] + (["unfused"] if m.columns <= UNFUSED_MAX_COLUMNS else [])
    if m.full_size:
        out.insert(1, "tuned")
    if m.columns <= OFF_MAX_COLUMNS:
        out.append("off")
    return out


def build_model(m: SuiteModel, out_dir: str, arch: str, tuning_dir: str | None, target: str = "cuda") -> dict:
    """Import, optimize and build every system of a model for CUDA (llvm: a dry run of the GPU part on this
    host); -> the model's info (compile times, kernels, which table parameter each column reads)."""
    import recom_tvm
    from recom_tvm import report
    from recom_tvm.models import reference
    from recom_tvm.models.resize import embedding_output
    from recom_tvm.passes import identify_columns

    recom_tvm.config.cuda_arch = arch
    os.makedirs(out_dir, exist_ok=True)
    spec = m.spec()
    t0 = time.perf_counter()
    p = model_paths(m)
    info = {"model": m.name, "factory": m.factory, "args": list(m.args), "columns": len(spec.columns),
            "batches": list(m.batches), "concat_width": spec.concat_width, "tf_export_s": time.perf_counter() - t0,
            "variants": {}}
    emb_out = embedding_output(p["pb"])
    systems = systems_for(m)
    for variant, outputs in (("emb", [emb_out]), ("e2e", None)):
        t0 = time.perf_counter()
        mod, params, _ = recom_tvm.from_tensorflow(p["pb"], signature=p["signature"], outputs=outputs)
        import_s = time.perf_counter() - t0
        modules = {}
        if "off" in systems:
            modules["off"] = (mod, 0.0)
        t0 = time.perf_counter()
        if "unfused" in systems:
            modules["unfused"] = (recom_tvm.optimize(mod, disable=["fuse_columns"]), time.perf_counter() - t0)
        t0 = time.perf_counter()
        fused = recom_tvm.optimize(mod)
        modules["fused"] = (fused, time.perf_counter() - t0)
        if "tuned" in systems:
            modules["tuned"] = (fused, 0.0)
        for system, (sm, opt_s) in modules.items():
            if system == "tuned" and not (tuning_dir and os.path.isdir(tuning_dir)):
                continue
            t0 = time.perf_counter()
            kw = {"database": tuning_dir} if system == "tuned" else {}
            model = recom_tvm.build(sm, target, params, **kw)
            build_s = time.perf_counter() - t0
            lib = f"{variant}_{system}.so"
            model.export_library(os.path.join(out_dir, lib), include_params=False)
            by_fc = {c.name: c.table for c in identify_columns(sm)}
            info["variants"][f"{variant}_{system}"] = {
                "variant": variant, "system": system, "lib": lib,
                "times": {"import_s": round(import_s, 2), "optimize_s": round(opt_s, 2), "build_s": round(build_s, 2)},
                "tables": {c.name: by_fc.get(reference.feature_column_name(c)) for c in spec.columns
                           if c.kind != "numeric"},
                "relax_ops": sum(report.relax_op_counts(sm).values()),
                "kernel_launches_static": report.kernel_launches(sm), "device_syncs": report.device_syncs(sm),
                "kernel_schedules": model.kernel_schedules}
            print(f"  {m.name} {variant} {system}: import {import_s:.1f}s optimize {opt_s:.1f}s build {build_s:.1f}s, "
                  f"{report.kernel_launches(sm)} kernels", flush=True)
        if variant == "e2e":
            sig = json.load(open(p["signature"]))
            tail = reference.extract_tail(p["pb"], emb_out, sig["outputs"]["score"], params, sig["inputs"])
            np.savez(os.path.join(out_dir, "tail.npz"), **tail["consts"])
            with open(os.path.join(out_dir, "tail.json"), "w") as f:
                json.dump({"steps": tail["steps"], "output": tail["output"]}, f)
    with open(os.path.join(out_dir, "model.json"), "w") as f:
        json.dump(info, f, indent=1)
    return info
