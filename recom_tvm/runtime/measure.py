"""Measure an offline tuning round on a GPU node with the TVM runtime only (no compiler, TensorFlow, SymEngine).

    python -m recom_tvm.runtime.measure ROUND_DIR [--out ROUND_DIR/results.json] [--number 20 --repeat 5]

ROUND_DIR is what recom_tvm.schedules.offline.export_round wrote: one library per task holding its candidate
kernels, the tasks' static arrays and a manifest. Each fused-kernel task's measurement request is regenerated from
its seed and checked against the manifest's fingerprint; tables are filled with random values (through PyTorch on
the GPU when it is installed, else from numpy; compact tables with valid rows of their dtype). Dense-layer tasks
run on random normal inputs of their shapes. Every candidate's output is checked against the round's reference
candidate (the default schedule if the round holds it, else the first), so a miscompiled variant is reported, not
ranked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from .synthetic import Distribution, fingerprint, synthetic_packed


def _device(kind: str):
    import tvm

    if kind == "cuda":
        from .compiled_model import _load_cuda_runtime

        _load_cuda_runtime()
        return tvm.cuda(0)
    return tvm.cpu(0)


def _tables(n: int, dev, kind: str, seed: int):
    """n random floats on dev (torch on a GPU when present: tables of GBs in milliseconds)."""
    import tvm

    if kind == "cuda":
        try:
            import torch

            g = torch.Generator(device="cuda").manual_seed(seed)
            t = torch.randn(n, generator=g, device="cuda")
            return tvm.runtime.from_dlpack(t), t
        except ImportError:
            pass
    return tvm.runtime.tensor(np.random.default_rng(seed).standard_normal(n).astype(np.float32), dev), None


def _compact_tables(meta, n: int, dev, kind: str, seed: int):
    """n words holding every table of `meta` as valid rows of its dtype (random float32 values encoded: fp16 /
    bf16 / int8 rows, recom_tvm.runtime.compact), through PyTorch on a GPU when present, else numpy."""
    import tvm

    from . import compact
    from .fused_layout import META, meta_rows

    m = meta_rows(meta)
    f = {k: META.index(k) for k in META}
    tables = {}  # table_base -> (rows, dim, dtype): columns sharing a table share its base
    for row in m.tolist():
        if row[f["kind"]] != 4 and row[f["rows"]] > 0:
            tables[row[f["table_base"]]] = (row[f["rows"]], row[f["dim"]], compact.NAMES[row[f["tdtype"]]])
    try:
        import torch

        if kind != "cuda":
            raise ImportError
        g = torch.Generator(device="cuda").manual_seed(seed)
        flat = torch.zeros(4 * n, dtype=torch.uint8, device="cuda")
        for base, (rows, dim, dt) in tables.items():
            t = torch.randn(rows, dim, generator=g, device="cuda")
            enc = compact.encode_torch(torch, t, dt)
            flat[16 * base:16 * base + enc.numel()].copy_(enc.reshape(-1))
        return tvm.runtime.from_dlpack(flat.view(torch.float32)), flat
    except ImportError:
        rng = np.random.default_rng(seed)
        flat = np.zeros(n, np.float32)
        for base, (rows, dim, dt) in tables.items():
            enc = compact.encode(rng.standard_normal((rows, dim)).astype(np.float32), dt).reshape(-1)
            flat[4 * base:4 * base + enc.size] = enc
        return tvm.runtime.tensor(flat, dev), None


def load_task(round_dir: str, manifest: dict, name: str, dev, log=print) -> tuple:
    """One task of a round on `dev`: (packed / meta / bounds arguments, tables, output buffer, the candidates'
    library, what keeps the tables alive). The request is regenerated from its seed and checked."""
    import tvm

    task = manifest["tasks"][name]
    with np.load(os.path.join(round_dir, task["arrays"])) as z:
        arrays = {k: z[k] for k in z.files}
    src = task["source"]
    if "synthetic" in src:
        s = src["synthetic"]
        packed = synthetic_packed(arrays["meta"], arrays["bounds"], task["batch"], seed=s["seed"],
                                  dist=Distribution.from_json(s["dist"]),
                                  packed_dtype=task.get("packed_dtype", "int64"))
    else:
        packed = arrays["packed"]
    if fingerprint(packed) != src["fingerprint"] and "packed" in arrays:
        log(f"{name}: the regenerated request differs from the tuning host's; using the carried one")
        packed = arrays["packed"]
    if fingerprint(packed) != src["fingerprint"]:
        raise RuntimeError(f"{name}: the regenerated request differs from the tuning host's ({fingerprint(packed)}"
                           f" vs {src['fingerprint']}): numpy's generator changed? export with carry_packed")
    _, _, n_tables, batch = task["shapes"]
    args = [tvm.runtime.tensor(packed, dev), tvm.runtime.tensor(arrays["meta"], dev),
            tvm.runtime.tensor(arrays["bounds"], dev)]
    from .fused_layout import META, meta_rows

    if meta_rows(arrays["meta"])[:, META.index("tdtype")].any():  # compact tables: valid rows of each dtype
        tables, keep = _compact_tables(arrays["meta"], int(n_tables), dev, manifest["device_type"], 7)
    else:
        tables, keep = _tables(int(n_tables), dev, manifest["device_type"], 7)
    out_buf = tvm.runtime.empty((batch, task["width"]), "float32", dev)
    lib = tvm.runtime.load_module(os.path.join(round_dir, task["lib"]))
    return args, tables, out_buf, lib, keep


def load_dense_task(round_dir: str, task: dict, dev, seed: int = 11) -> tuple:
    """A dense-layer task of a round on `dev`: (input tensors, output buffer, the candidates' library, None)."""
    import tvm

    rng = np.random.default_rng(seed)
    *inputs, (out_shape, out_dtype) = task["args"]
    # a scalar parameter is TF's Relu 0 in where(h < 0, 0, h): a random one makes the epilogue jump at h = 0, and
    # any two summation orders then disagree by |s| on the few outputs with h within rounding of 0 (2 in 2M at
    # B = 2,048: every gemv "differed" from dlight's matmul, both right)
    args = [tvm.runtime.tensor(np.zeros(shape, dtype) if not shape else rng.standard_normal(shape).astype(dtype), dev)
            for shape, dtype in inputs]
    out_buf = tvm.runtime.empty(tuple(out_shape), out_dtype, dev)
    return args, out_buf, tvm.runtime.load_module(os.path.join(round_dir, task["lib"])), None


FLUSH_FUNC = "recom_tvm.measure.flush_l2"
FLUSH_BYTES = 256 << 20  # several times any GPU's L2 (H100 / H200: 50 MB)


def _l2_flusher(dev):
    """Register FLUSH_FUNC (time_evaluator's f_preproc): a device copy of FLUSH_BYTES, so the next run finds
    nothing of its arguments in L2. -> what must stay alive while it is registered."""
    import tvm
    import tvm_ffi

    a = tvm.runtime.empty((FLUSH_BYTES // 4,), "float32", dev)
    b = tvm.runtime.empty((FLUSH_BYTES // 4,), "float32", dev)

    def flush(*_args):
        a.copyto(b)
        dev.sync()

    tvm_ffi.register_global_func(FLUSH_FUNC, flush, override=True)
    return a, b, flush


def measure(round_dir: str, number: int = 20, repeat: int = 5, min_repeat_ms: int = 0, log=print,
            cold_dense: bool = True) -> dict:
    """Run and time every candidate of a round; -> the results (what import_round reads).

    cold_dense (GPU): a dense layer is timed one run at a time after flushing L2 (number x repeat runs, the
    median of each `number` a repeat), as it runs in a model, where the embedding lookup and the other layers
    evict its weights between calls. Timed back to back instead, its weights stay in L2 across runs (E's first
    layer: 33 MB in the H100's 50 MB): 96 us warm against 110 cold for that layer's default gemv at B = 32, and
    dlight's matmul, which reuses what it loads, gains less from the hot L2 than the gemv, which re-reads w once
    per row block. A round's tasks are still compiled for a static batch, a model's layers for a symbolic one
    (schedules.dense_tail.clamp_padded_rows: why that once cost 2.5x)."""
    with open(os.path.join(round_dir, "manifest.json")) as f:
        manifest = json.load(f)
    dev = _device(manifest["device_type"])
    out = {"round": manifest["round"], "target": manifest["target"], "device": _device_name(dev),
           "date": time.strftime("%Y-%m-%d"), "candidates": []}
    cold = cold_dense and manifest["device_type"] == "cuda" and any(
        t.get("kind") == "dense" for t in manifest["tasks"].values())
    flusher = _l2_flusher(dev) if cold else None
    out["dense_timing"] = "cold (L2 flushed before each run)" if cold else "warm (runs back to back)"
    for name, task in manifest["tasks"].items():
        if task.get("kind") == "dense":  # a dense layer: random inputs, summation order differs by schedule
            args, out_buf, lib, keep = load_dense_task(round_dir, task, dev)
            tables, rtol = None, 1e-4
        else:
            args, tables, out_buf, lib, keep = load_task(round_dir, manifest, name, dev, log)
            rtol = 1e-5
        args = args + ([tables] if tables is not None else [])
        cands = [c for c in manifest["candidates"] if c["task"] == name]
        ref_func = next((c["func"] for c in cands if c.get("default")), cands[0]["func"])
        poison = np.full(tuple(out_buf.shape), np.nan, np.float32)  # every element must be written
        out_buf.copyfrom(poison)
        lib[ref_func](*args, out_buf)
        dev.sync()
        ref = out_buf.numpy()
        t0 = time.perf_counter()
        for c in cands:
            rec = {"task": name, "func": c["func"], "config": c["config"]}
            try:
                out_buf.copyfrom(poison)
                lib[c["func"]](*args, out_buf)
                dev.sync()
                got = out_buf.numpy()
                diff = float(np.nanmax(np.abs(got - ref))) if got.size else 0.0
                rec["max_diff"] = diff
                rec["ok"] = bool(np.array_equal(np.isnan(got), np.isnan(ref)) and diff <= rtol * max(
                    1.0, float(np.nanmax(np.abs(ref))) if ref.size else 1.0))
                if flusher is not None and task.get("kind") == "dense":
                    timer = lib.time_evaluator(c["func"], dev, number=1, repeat=number * repeat, f_preproc=FLUSH_FUNC)
                    single = [1e3 * float(x) for x in timer(*args, out_buf).results]
                    runs = [float(np.median(single[i::repeat])) for i in range(repeat)]
                else:
                    timer = lib.time_evaluator(c["func"], dev, number=number, repeat=repeat,
                                               min_repeat_ms=min_repeat_ms)
                    runs = [1e3 * float(x) for x in timer(*args, out_buf).results]
                rec["runs_ms"], rec["ms"] = runs, float(np.median(runs))
            except Exception as err:  # noqa: BLE001 - a failing candidate is a result, not the end of the round
                rec.update(ok=False, ms=None, error=str(err).strip().splitlines()[-1][:300])
            out["candidates"].append(rec)
        ok = [r for r in out["candidates"] if r["task"] == name and r.get("ok")]
        best = min(ok, key=lambda r: r["ms"]) if ok else None
        log(f"{name}: {len(cands)} candidates in {time.perf_counter() - t0:.1f}s; "
            + (f"best {best['ms']:.4f} ms ({best['func']}); " if best else "none ran; ")
            + f"{len(cands) - len(ok)} failed or differ")
        del keep
    return out


def _device_name(dev) -> str:
    try:
        return str(dev.device_name)
    except Exception:  # noqa: BLE001
        return "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("round_dir")
    p.add_argument("--out", default=None, help="default: ROUND_DIR/results.json")
    p.add_argument("--number", type=int, default=20)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--warm-dense", action="store_true", help="time dense layers back to back (weights hot in L2)")
    a = p.parse_args(argv)
    res = measure(a.round_dir, a.number, a.repeat, cold_dense=not a.warm_dense)
    path = a.out or os.path.join(a.round_dir, "results.json")
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    bad = sum(not r.get("ok") for r in res["candidates"])
    print(f"{len(res['candidates'])} candidates measured on {res['device']}, {bad} failed or differ -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
