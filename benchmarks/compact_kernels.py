"""The fused kernel of full-size E and F per table dtype and schedule knob, on the GPU (issue 16's targets).

    # host (compiler, TF exports of E / F cached): one offline round per model and table dtype, holding the
    # default schedule, the tuned one (benchmarks/tuning/model_<m>) and the new knobs on top of it
    python benchmarks/compact_kernels.py export --dir .device/compact [--models e,f] [--batches 512,2048]
    # GPU (TVM runtime + PyTorch): time every candidate (time_evaluator, median of --repeat x --number), check each
    # against its round's default (poisoned output, every element written), bytes floor per task at the copy
    # bandwidth measured in the same run
    python3 benchmarks/compact_kernels.py measure --dir .device/compact --out $OUT
    # host: tables for BENCHMARKS.md (time, floor ratio, dtype vs float32 ratio per model, batch and schedule)
    python benchmarks/compact_kernels.py report --results $OUT/compact_kernels.json

Baseline in the same run: PyTorch's grouped embedding_bag (TBE-like: one F.embedding_bag per embedding dim over
that dim's tables stacked, per-sample weights carrying the combiner, scattered into the [B, width] output) on the
very request of each task, ids preprocessed outside the timing (bucketized values bucketized in numpy), tables of
the task's dtype (float32 / float16 / bfloat16; int8 has no PyTorch embedding_bag without FBGEMM). Before timing,
its float32 output is checked against our default schedule's on the same tables (the same work). Without PyTorch
(`--target llvm` on the build host) the same inputs are checked with a numpy embedding_bag instead.

    # the run's logic on a CPU (small tables, llvm, numpy in place of PyTorch)
    python benchmarks/compact_kernels.py export --dir .device/compact_llvm --target llvm --rows 4096 --models e \
        --batches 512 --dtypes float32,int8 --variants all
    python benchmarks/compact_kernels.py measure --dir .device/compact_llvm --out /tmp/ck --number 2 --repeat 2

Floor: the bytes a task must move (its packed request, every id's table row in the task's dtype: dim x 4 / 2 / 2
/ 1 bytes, + 8 for an int8 row's scale and bias, the [B, width] float32 output) over the device-to-device copy
bandwidth. Tables hold random float32 values encoded in their dtype (runtime.measure fills them on the GPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

DTYPES = ("float32", "float16", "bfloat16", "int8")
BATCHES = (512, 2048)
BEST512 = {"vec": 8, "threads": 128, "rows": 2, "stage_meta": True, "smem_bounds": True}
# knobs tried on top of each task's tuned schedule (a dict of KernelConfig fields each)
VARIANTS = {"stage_meta": {"stage_meta": True}, "search_once": {"search_once": True}, "group2": {"group": 2},
            "group4": {"group": 4}, "vec8": {"vec": 8},
            "all": {"stage_meta": True, "search_once": True, "group": 4},
            "all_vec8": {"stage_meta": True, "search_once": True, "group": 4, "vec": 8},
            # __launch_bounds__(threads, blocks): fewer registers, more warps resident (2026-12-07: did not pay)
            "vec8_occ75": {"vec": 8, "occupancy": 75},
            # bucketize by counting the boundaries <= x (2026-12-07): on the tuned schedule, vec8, and the vec8
            # grid's best at B = 512 (threads 128, 2 bags, stage_meta, smem_bounds) with the boundaries in shared
            # or global memory, searched per lane or once per bag
            "lin16": {"linear_search": 16}, "vec8_lin16": {"vec": 8, "linear_search": 16},
            "best512": BEST512, "best512_lin16": {**BEST512, "linear_search": 16},
            "best512_lin16_gmem": {**BEST512, "linear_search": 16, "smem_bounds": False},
            "best512_lin16_once": {**BEST512, "linear_search": 16, "search_once": True},
            # the knobs the vec8 grid did not vary, on its best (2026-12-07, twentieth session)
            "best512_unroll2": {**BEST512, "unroll": 2}, "best512_unroll4": {**BEST512, "unroll": 4},
            "best512_interleave": {**BEST512, "interleave": True},
            "best512_light_first": {**BEST512, "heavy_first": False}, "best512_group2": {**BEST512, "group": 2},
            "best512_once": {**BEST512, "search_once": True}}
# --variants igrid: around the interleaved best at B = 512 (2026-12-07, twentieth session)
IGRID = {f"i_t{t}_r{r}_g{g}": {**BEST512, "interleave": True, "threads": t, "rows": r, "group": g}
         for t in (64, 128, 256) for r in (1, 2, 4) for g in (1, 2)}
# --variants fgrid: F's best at B = 512 (best512, 1.59x its floor) over threads, bags per thread, group and
# interleave (2026-12-07, twenty-first session)
FGRID = {f"f_t{t}_r{r}_g{g}_i{i}": {**BEST512, "threads": t, "rows": r, "group": g, "interleave": bool(i)}
         for t in (128, 256) for r in (2, 4, 8) for g in (1, 2, 4) for i in (0, 1)}
# --variants grid: vec8 (the best at B = 512 after the 16-byte stores) over threads, bags per thread and the staging
# knobs
GRID = {f"g_t{t}_r{r}_m{m}_s{sb}": {"vec": 8, "threads": t, "rows": r, "stage_meta": bool(m), "smem_bounds": bool(sb)}
        for t in (64, 128, 256) for r in (1, 2, 4) for m in (0, 1) for sb in (0, 1)}
ELEM_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}


def candidates(opt, tuned: dict, batches=BATCHES, gpu: bool = True,
               variants=None) -> dict[int, list[tuple[str, object]]]:
    """{batch: [(label, KernelConfig), ...]} after the default: tuned, then each variant on top of tuned (those
    the task can run)."""
    from recom_tvm.ops.fused_kernel import DEFAULT, check_config, column_classes, max_bounds
    from recom_tvm.schedules.tasks import find_fused_call

    call = find_fused_call(opt)
    classes, nb = column_classes(call.meta), max(max_bounds(call.meta), 1)
    def wanted(label: str) -> bool:  # default: every variant but the grids; "grid" / "igrid" / "fgrid" name all of one
        if variants is None:
            return label in VARIANTS
        return label in variants or ("grid" in variants and label in GRID) or \
            ("igrid" in variants and label in IGRID) or ("fgrid" in variants and label in FGRID)

    out = {}
    for b in batches:
        base = tuned.get(b, DEFAULT)
        picks = [("tuned", base)] if base != DEFAULT else []
        for label, change in {**VARIANTS, **GRID, **IGRID, **FGRID}.items():
            if not wanted(label):
                continue
            cfg = dataclasses.replace(base, **change)
            if cfg not in [c for _, c in picks] and cfg != DEFAULT and check_config(cfg, classes, nb, gpu) is None:
                picks.append((label, cfg))
        out[b] = picks
    return out


def export(out_dir: str, models: list[str], rows: int, arch: str, batches, target_kind: str = "cuda",
           dtypes=DTYPES, variants=None) -> None:
    import recom_tvm
    from full_models import optimized
    from recom_tvm.build_module import make_target
    from recom_tvm.passes.compact_tables import CompactTables
    from recom_tvm.schedules import offline
    from recom_tvm.schedules.apply import tuned_configs
    from recom_tvm.schedules.tasks import find_fused_call
    from recom_tvm.schedules.tune import open_database

    recom_tvm.config.cuda_arch = arch
    target = make_target(target_kind)
    for m in models:
        opt, _, _ = optimized(m, rows, "e2e")  # the model the tuning records were made for
        db = os.path.join(HERE, "tuning", f"model_{m}")
        best = tuned_configs(open_database(db), find_fused_call(opt), target) if os.path.isdir(db) else {}
        # the nearest tuned batch's schedule for each measured batch
        tuned = {b: min(best.items(), key=lambda kv: abs(np.log(kv[0] / b)))[1][0] for b in batches} if best else {}
        for d in dtypes:
            mod = CompactTables(d)(opt) if d != "float32" else opt
            picks = candidates(mod, tuned, batches, target_kind == "cuda", variants)
            labels = {b: ["default"] + [lbl for lbl, _ in p] for b, p in picks.items()}
            rd = os.path.join(out_dir, f"{m}_{d}")
            t0 = time.perf_counter()
            offline.export_configs(mod, target, rd, {b: [c for _, c in p] for b, p in picks.items()},
                                   batches=batches)
            with open(os.path.join(rd, "labels.json"), "w") as f:
                json.dump({"model": m, "dtype": d, "labels": {str(b): v for b, v in labels.items()}}, f)
            print(f"{m} {d}: {sum(map(len, labels.values()))} candidates in {time.perf_counter() - t0:.0f}s",
                  flush=True)


def task_bytes(arrays: dict, task: dict) -> int:
    """Bytes one task must move at least: packed request, each id's row in its dtype, the float32 output."""
    from recom_tvm.runtime import compact
    from recom_tvm.runtime.fused_layout import KIND, META, meta_rows
    from recom_tvm.runtime.synthetic import Distribution, synthetic_env

    meta = meta_rows(arrays["meta"])
    s = task["source"]["synthetic"]
    fused, env = synthetic_env(meta, arrays["bounds"], task["batch"], seed=s["seed"],
                               dist=Distribution.from_json(s["dist"]))
    f = {k: META.index(k) for k in META}
    total = 8 * int(task["shapes"][0]) + 4 * task["batch"] * task["width"]
    for row, col in zip(meta.tolist(), fused["columns"]):
        if row[f["kind"]] == KIND["numeric"]:
            continue
        t = col["tensors"]
        if row[f["kind"]] == KIND["csr"]:
            n = env[t["ids"]].size
        elif row[f["kind"]] == KIND["dense"]:
            n = int((env[t["x"]] != -1).sum())
        else:
            n = task["batch"]
        dt = compact.NAMES[row[f["tdtype"]]]
        total += n * (row[f["dim"]] * ELEM_BYTES[dt] + (8 if dt == "int8" else 0))
    return total


def grouped_inputs(meta, bounds, batch: int, seed: int, dist) -> tuple[dict, int]:
    """One task's request as a grouped embedding_bag takes it: ({dim: (table bases, ids into the dim's stacked
    tables, bag offsets (B * columns + 1), per-sample weights with the combiner folded in, output column index)},
    ids in all). numpy; the same request the kernel's packed input holds (runtime.synthetic)."""
    from recom_tvm.runtime.fused_layout import KIND_NAME, META, MODE, PRE, meta_rows
    from recom_tvm.runtime.synthetic import synthetic_env

    m = meta_rows(meta)
    f = {k: META.index(k) for k in META}
    fused, env = synthetic_env(m, bounds, batch, seed=seed, dist=dist)
    bounds = np.asarray(bounds, np.float32)
    per_dim: dict[int, dict] = {}
    n_ids = 0
    for row, col in zip(m.tolist(), fused["columns"]):
        kind, t = KIND_NAME[row[f["kind"]]], col["tensors"]
        if kind == "numeric":
            continue
        if row[f["pre"]] != PRE["none"]:
            raise ValueError("identity columns with a default: not in E / F (baseline not written for them)")
        w = None
        if kind == "csr":
            bag = env[t["indices"]][:, 0]
            ids = env[t["ids"]]
            w = env[t["weights"]] if "weights" in t else None
        elif kind == "dense":
            x = env[t["x"]]
            keep = x != -1
            bag, ids = np.nonzero(keep)[0], x[keep]
        elif kind == "one":
            bag, ids = np.arange(batch), env[t["ids"]]
        else:  # bucket: TF's Bucketize (boundaries <= x counted)
            b = bounds[row[f["pre_a"]]:row[f["pre_a"]] + row[f["pre_b"]]]
            bag, ids = np.arange(batch), np.searchsorted(b, env[t["x"]].reshape(-1), side="right")
        w = np.ones(len(ids), np.float32) if w is None else w.astype(np.float32)
        counts = np.bincount(bag, minlength=batch)
        den = np.bincount(bag, weights=w * w if row[f["mode"]] == MODE["sqrtn"] else w, minlength=batch)
        scale = {MODE["sum"]: np.ones(batch), MODE["mean"]: 1 / np.where(den > 0, den, 1),
                 MODE["sqrtn"]: 1 / np.sqrt(np.where(den > 0, den, 1))}[row[f["mode"]]]
        g = per_dim.setdefault(row[f["dim"]], {"bases": [], "rows": [], "ids": [], "counts": [], "w": [], "cols": []})
        if row[f["table_base"]] not in g["bases"]:
            g["bases"].append(row[f["table_base"]])
            g["rows"].append(row[f["rows"]])
        k = g["bases"].index(row[f["table_base"]])
        g["ids"].append(ids.astype(np.int64) + int(sum(g["rows"][:k])))
        g["counts"].append(counts)
        g["w"].append((w * scale[bag]).astype(np.float32))
        g["cols"].append(np.arange(row[f["out_off"]], row[f["out_off"]] + row[f["dim"]]))
        n_ids += len(ids)
    out = {}
    for dim, g in per_dim.items():
        offsets = np.concatenate([[0], np.cumsum(np.concatenate(g["counts"]))]).astype(np.int64)
        out[dim] = {"bases": g["bases"], "rows": g["rows"], "ids": np.concatenate(g["ids"]), "offsets": offsets,
                    "w": np.concatenate(g["w"]), "index": np.concatenate(g["cols"]).astype(np.int64),
                    "columns": len(g["counts"])}
    return out, n_ids


def _stacked(flat, meta, g: dict, dim: int, xp):
    """The dim's tables (float32 rows read from the kernel's flat float32 table) stacked: [sum rows, dim]."""
    from recom_tvm.runtime.fused_layout import META, meta_rows

    m = meta_rows(meta)
    stride = {int(r[META.index("table_base")]): int(r[META.index("stride4")]) for r in m}
    parts = [flat[4 * b:4 * (b + n * stride[b])].reshape(n, 4 * stride[b])[:, :dim]
             for b, n in zip(g["bases"], g["rows"])]
    return xp.cat(parts) if hasattr(xp, "cat") else xp.concatenate(parts)


def grouped_numpy(inputs: dict, tables: dict, batch: int, width: int) -> np.ndarray:
    """The grouped embedding_bag in numpy (float64 sums): the host check of the baseline's inputs."""
    out = np.zeros((batch, width), np.float64)
    for dim, g in inputs.items():
        rows = tables[dim].astype(np.float64)[g["ids"]] * g["w"][:, None]
        bag = np.repeat(np.arange(g["columns"] * batch), np.diff(g["offsets"]))
        pooled = np.zeros((g["columns"] * batch, dim))
        np.add.at(pooled, bag, rows)
        out[:, g["index"]] = pooled.reshape(g["columns"], batch, dim).transpose(1, 0, 2).reshape(batch, -1)
    return out


class TorchGrouped:
    """PyTorch's grouped embedding_bag over one task's request (inputs on the device, built once)."""

    def __init__(self, torch, inputs: dict, tables: dict, batch: int, width: int, dev) -> None:
        self.torch, self.batch, self.width, self.dev = torch, batch, width, dev
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(dev)  # noqa: E731
        self.groups = [(tables[d], t(g["ids"]), t(g["offsets"]), t(g["w"]).to(tables[d].dtype), t(g["index"]),
                        g["columns"], d) for d, g in inputs.items()]

    def __call__(self):
        F = self.torch.nn.functional
        out = self.torch.zeros(self.batch, self.width, device=self.dev)
        for table, ids, offs, w, index, cols, dim in self.groups:
            pooled = F.embedding_bag(ids, table, offs, mode="sum", per_sample_weights=w, include_last_offset=True)
            out.index_copy_(1, index, pooled.float().view(cols, self.batch, dim).permute(1, 0, 2)
                            .reshape(self.batch, -1))
        return out


def baseline(rd: str, manifest: dict, labels: dict, number: int, repeat: int) -> list[dict]:
    """Per task of this round: the grouped embedding_bag's time (PyTorch on the GPU) after a check of its float32
    output against our default schedule on the same tables; without PyTorch, the numpy check only."""
    import tvm

    from recom_tvm.runtime.measure import _device, load_task
    from recom_tvm.runtime.synthetic import Distribution

    try:
        import torch
    except ImportError:
        torch = None
    dev = _device(manifest["device_type"])
    rows = []
    for name, task in manifest["tasks"].items():
        args, _, out_buf, lib, keep = load_task(rd, manifest, name, dev, log=lambda *_: None)
        del keep
        with np.load(os.path.join(rd, task["arrays"])) as z:
            meta, bounds = z["meta"], z["bounds"]
        s, b, width = task["source"]["synthetic"], task["batch"], task["width"]
        inputs, n_ids = grouped_inputs(meta, bounds, b, s["seed"], Distribution.from_json(s["dist"]))
        n_words = int(task["shapes"][2])
        cands = [c for c in manifest["candidates"] if c["task"] == name]
        ref_func = next((c["func"] for c in cands if c.get("default")), cands[0]["func"])
        rec = {"model": labels["model"], "dtype": labels["dtype"], "batch": b, "ids": n_ids}
        if labels["dtype"] == "float32":  # the same work: our default schedule and the baseline, same tables
            if torch is not None and manifest["device_type"] == "cuda":
                flat = torch.randn(n_words, generator=torch.Generator(device="cuda").manual_seed(3), device="cuda")
                lib[ref_func](*args, tvm.runtime.from_dlpack(flat), out_buf)
                tabs = {d: _stacked(flat, meta, g, d, torch) for d, g in inputs.items()}
                got = TorchGrouped(torch, inputs, tabs, b, width, flat.device)().cpu().numpy()
                del tabs, flat
            else:
                flat = np.random.default_rng(3).standard_normal(n_words).astype(np.float32)
                lib[ref_func](*args, tvm.runtime.tensor(flat, dev), out_buf)
                got = grouped_numpy(inputs, {d: _stacked(flat, meta, g, d, np) for d, g in inputs.items()}, b,
                                    width)
            ours = out_buf.numpy()
            # numeric columns (copied by the kernel) are not the baseline's: compared where the baseline writes
            cols = np.concatenate([g["index"] for g in inputs.values()])
            rec["max_diff_vs_ours"] = float(np.abs(got[:, cols] - ours[:, cols]).max())
            rec["ok"] = rec["max_diff_vs_ours"] <= 1e-4 * max(1.0, float(np.abs(ours).max()))
        if torch is not None and manifest["device_type"] == "cuda" and labels["dtype"] != "int8":
            dt = getattr(torch, labels["dtype"])
            g = torch.Generator(device="cuda").manual_seed(5)
            tabs = {d: torch.randn(sum(gr["rows"]), d, generator=g, device="cuda").to(dt) for d, gr in inputs.items()}
            fn = TorchGrouped(torch, inputs, tabs, b, width, torch.device("cuda"))
            runs = []
            for _ in range(repeat):
                fn()
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(number):
                    fn()
                torch.cuda.synchronize()
                runs.append(1e3 * (time.perf_counter() - t0) / number)
            rec["torch_ms"], rec["torch_runs_ms"] = float(np.median(runs)), runs
            del tabs, fn
        rows.append(rec)
        print(f"  torch grouped {labels['model']}/{labels['dtype']}/B{b}: "
              + (f"{rec['torch_ms'] * 1e3:.1f} us" if "torch_ms" in rec else "not timed")
              + (f", check vs ours max diff {rec['max_diff_vs_ours']:.1e}" if "max_diff_vs_ours" in rec else ""),
              flush=True)
    return rows


def _bandwidth_numpy() -> dict:
    a = np.ones(1 << 24, np.float32)
    b = np.empty_like(a)
    t0 = time.perf_counter()
    for _ in range(5):
        np.copyto(b, a)
    return {"d2d_copy_GBps": 5 * 2 * a.nbytes / (time.perf_counter() - t0) / 1e9, "h2d_pageable_GBps": None}


def measure(in_dir: str, out_dir: str, number: int, repeat: int) -> int:
    from device_info import gpu_name
    from recom_tvm.runtime.measure import measure as run

    try:
        import torch
        from gpu_common import bandwidths

        dev = torch.device("cuda")
        bw = bandwidths(torch, dev, torch.cuda.synchronize)
        device = gpu_name()
    except (ImportError, AssertionError, RuntimeError):  # the host check (llvm): no PyTorch / no GPU
        bw, device = _bandwidth_numpy(), f"CPU (llvm), {os.cpu_count()} cores"
    rows, base = [], []
    for name in sorted(os.listdir(in_dir)):
        rd = os.path.join(in_dir, name)
        if not os.path.exists(os.path.join(rd, "manifest.json")):
            continue
        with open(os.path.join(rd, "labels.json")) as f:
            labels = json.load(f)
        with open(os.path.join(rd, "manifest.json")) as f:
            manifest = json.load(f)
        print(f"== {name}", flush=True)
        res = run(rd, number=number, repeat=repeat)
        for c in res["candidates"]:
            task = manifest["tasks"][c["task"]]
            with np.load(os.path.join(rd, task["arrays"])) as z:
                nbytes = task_bytes({k: z[k] for k in z.files}, task)
            b = task["batch"]
            i = int(c["func"].split("_")[1])
            floor_ms = 1e3 * nbytes / (bw["d2d_copy_GBps"] * 1e9)
            rows.append({"model": labels["model"], "dtype": labels["dtype"], "batch": b,
                         "schedule": labels["labels"][str(b)][i], "config": c["config"], "ok": c.get("ok"),
                         "ms": c.get("ms"), "runs_ms": c.get("runs_ms"), "bytes": nbytes, "floor_ms": floor_ms,
                         "error": c.get("error")})
        base += baseline(rd, manifest, labels, number, repeat)
    out = {"device": device, "date": time.strftime("%Y-%m-%d"), "bandwidth": bw, "rows": rows, "torch": base}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "compact_kernels.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(report(out))
    return 1 if any(not r["ok"] for r in rows) or any(not r.get("ok", True) for r in base) else 0


def report(res: dict) -> str:
    """Markdown: per model and batch, each dtype's default / tuned / best time, floor ratio, ratio to float32."""
    lines = [f"{res['device']}, {res['date']}; copy bandwidth {res['bandwidth']['d2d_copy_GBps']:.0f} GB/s "
             "(read + write). Kernel alone, median; floor = the task's bytes / that bandwidth.", "",
             "| model | B | table dtype | default | tuned | best (schedule) | floor | best / floor | "
             "best / float32 best | torch grouped (same dtype) | torch / best |", "|---" * 11 + "|"]
    torch_ms = {(r["model"], r["batch"], r["dtype"]): r["torch_ms"] for r in res.get("torch", []) if "torch_ms" in r}
    rows = [r for r in res["rows"] if r["ok"] and r["ms"]]
    best32 = {}
    for r in rows:
        if r["dtype"] == "float32":
            k = (r["model"], r["batch"])
            best32[k] = min(best32.get(k, float("inf")), r["ms"])
    for key in sorted({(r["model"], r["batch"], r["dtype"]) for r in rows},
                      key=lambda k: (k[0], k[1], list(ELEM_BYTES).index(k[2]))):
        mine = [r for r in rows if (r["model"], r["batch"], r["dtype"]) == key]
        get = {r["schedule"]: r for r in mine}
        best = min(mine, key=lambda r: r["ms"])
        ratio = best["ms"] / best32[key[:2]] if key[:2] in best32 else float("nan")
        tuned = f"{get['tuned']['ms'] * 1e3:.1f} us" if "tuned" in get else "–"
        tm = torch_ms.get(key)
        vs = (f"{tm * 1e3:.1f} us | {tm / best['ms']:.2f}x" if tm else "– | –")
        lines.append(f"| {key[0].upper()} | {key[1]} | {key[2]} | {get['default']['ms'] * 1e3:.1f} us | {tuned} | "
                     f"{best['ms'] * 1e3:.1f} us ({best['schedule']}) | {best['floor_ms'] * 1e3:.1f} us | "
                     f"{best['ms'] / best['floor_ms']:.2f}x | {ratio:.2f}x | {vs} |")
    bad_t = [r for r in res.get("torch", []) if not r.get("ok", True)]
    if bad_t:
        lines.append("\nthe baseline differs from our default schedule: " + ", ".join(
            f"{r['model']}/B{r['batch']} ({r['max_diff_vs_ours']:.1e})" for r in bad_t))
    bad = [r for r in res["rows"] if not r["ok"]]
    if bad:
        lines.append(f"\n{len(bad)} candidates failed or differ from their round's default: "
                     + ", ".join(f"{r['model']}/{r['dtype']}/B{r['batch']}/{r['schedule']}" for r in bad[:8]))
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["export", "measure", "report"])
    p.add_argument("--dir", default=".device/compact")
    p.add_argument("--out", default=os.environ.get("OUT", "."))
    p.add_argument("--results", default=None, help="report: the measure step's compact_kernels.json")
    p.add_argument("--models", default="e,f")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--rows", type=int, default=1 << 23)
    p.add_argument("--arch", default="sm_90")
    p.add_argument("--dtypes", default=",".join(DTYPES))
    p.add_argument("--variants", default=None, help="export: these knob variants only (default: all but the grid; "
                   "'grid': GRID's 36 vec8 configs; 'igrid': IGRID's 18 around the interleaved vec8 best; 'fgrid': FGRID's 36 "
                   "around F's best at 512)")
    p.add_argument("--target", default="cuda", choices=["cuda", "llvm"], help="export: llvm checks the run's logic "
                   "on a CPU")
    p.add_argument("--number", type=int, default=20)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    if a.mode == "export":
        export(a.dir, a.models.split(","), a.rows, a.arch, tuple(int(b) for b in a.batches.split(",")), a.target,
               tuple(a.dtypes.split(",")), a.variants.split(",") if a.variants else None)
        return 0
    if a.mode == "measure":
        return measure(a.dir, a.out, a.number, a.repeat)
    with open(a.results) as f:
        print(report(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
