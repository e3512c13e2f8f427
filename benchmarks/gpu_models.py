"""RECom's models E and F at full size on the GPU: correctness against numpy, latency against PyTorch.

    # host (TensorFlow + compiler, no GPU): resize the large tables to 2^23 rows, import, optimize, build CUDA,
    # export without weights (they are generated on the GPU from the spec's seed)
    python benchmarks/gpu_models.py prepare --dir .device/gpu_models [--models e,f] [--arch sm_90]
    # GPU machine (TVM runtime + PyTorch only):
    python benchmarks/gpu_models.py run --dir .device/gpu_models --out $OUT

Two modules per model: the embedding stage alone (DenseFeatures' output) and end to end (with the MLP).
On the GPU: every table and MLP weight generated with torch from (spec seed, parameter name); the outputs at
each batch checked against recom_tvm.models.reference (numpy, float64; table rows gathered from the GPU);
then, all in the same run:
  ours run         TF-style feeds -> numpy: host stage (string hashing, packing) + H2D + kernels + D2H
  ours host        prepare() alone (validation, host stage, packing)
  ours copy+dev    execute() on prepared host arrays: H2D + kernels + D2H
  ours device      execute() on device-resident inputs: launches + kernels
  torch grouped    F.embedding_bag per embedding dim (TBE-like), device-resident preprocessed ids
                   (+ "graph": the same captured in a CUDA graph; + "copy": from host arrays, with D2H)
  torch loop       F.embedding_bag per column + concat (framework op by op, the TF-GPU stand-in)
and the floor: bytes the embedding stage must move (table rows read, packed inputs, output written) at the
device-to-device copy bandwidth measured in the run. Kernel launches per inference counted by the profiler.
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

from gpu_common import (DeviceTable as _DeviceTable, bandwidths as _bandwidths, capture as _capture,  # noqa: E402
                        embedding_bytes as _embedding_bytes, generate as _generate, kernels as _kernels,
                        timeit as _timeit)
from gpu_common import cli, write_json  # noqa: E402

BATCHES = (32, 256, 2048)
MODELS = {"e": "model_e", "f": "model_f"}


# ------------------------------------------------------------------------------------------------ host
def prepare(out_dir: str, models: list[str], rows: int, arch: str, target: str = "cuda") -> None:
    import recom_tvm
    from recom_tvm import config, report
    from recom_tvm.models import reference, tf_export, zoo
    from recom_tvm.models.resize import embedding_output, resize_hash_columns
    from recom_tvm.passes import identify_columns

    config.cuda_arch = arch
    os.makedirs(out_dir, exist_ok=True)
    for m in models:
        small = getattr(zoo, MODELS[m])(4096)
        t0 = time.perf_counter()
        paths = tf_export.export(small)  # cached; F takes ~30 min in TF the first time
        big = {c.name: rows for c in small.columns if c.name.startswith("l")}
        work = os.path.join(config.cache_dir, "resized", f"{small.name}_{rows}")
        pb = resize_hash_columns(paths["root"], work, big)
        with open(os.path.join(work, "signature.json")) as f:
            sig = json.load(f)
        emb_out = embedding_output(pb)
        info = {"model": m, "spec": MODELS[m], "rows": rows, "arch": arch, "variants": {},
                "tf_export_s": round(time.perf_counter() - t0, 1)}
        for variant, outputs in (("emb", [emb_out]), ("e2e", None)):
            times = {}
            t0 = time.perf_counter()
            mod, params, _ = recom_tvm.from_tensorflow(pb, signature=os.path.join(work, "signature.json"),
                                                       outputs=outputs)
            times["import_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            opt = recom_tvm.optimize(mod)
            times["optimize_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            model = recom_tvm.build(opt, target, params)
            times["build_s"] = time.perf_counter() - t0
            lib = f"{m}_{variant}.so"
            model.export_library(os.path.join(out_dir, lib), include_params=False)
            by_fc = {c.name: c.table for c in identify_columns(opt)}
            info["variants"][variant] = {
                "lib": lib, "times": {k: round(v, 2) for k, v in times.items()},
                "tables": {c.name: by_fc[reference.feature_column_name(c)] for c in small.columns
                           if c.kind != "numeric"},
                "relax_ops": sum(report.relax_op_counts(opt).values()),
                "kernel_launches_static": report.kernel_launches(opt),
                "device_syncs": report.device_syncs(opt)}
            if variant == "e2e":
                tail = reference.extract_tail(pb, emb_out, sig["outputs"]["score"], params, sig["inputs"])
                np.savez(os.path.join(out_dir, f"{m}_tail.npz"), **tail["consts"])
                with open(os.path.join(out_dir, f"{m}_tail.json"), "w") as f:
                    json.dump({"steps": tail["steps"], "output": tail["output"]}, f)
            print(f"model {m} {variant}: import {times['import_s']:.1f}s optimize {times['optimize_s']:.1f}s "
                  f"build {times['build_s']:.1f}s; {info['variants'][variant]['kernel_launches_static']} kernels",
                  flush=True)
        with open(os.path.join(out_dir, f"{m}.model.json"), "w") as f:
            json.dump(info, f, indent=1)


# ---------------------------------------------------------------------------------------------- device
def run(in_dir: str, out_dir: str | None, batches: tuple[int, ...], iters: int) -> int:
    import torch

    from recom_tvm.models import reference, zoo
    from recom_tvm.runtime import load
    from torch_baselines import GroupedEmbeddingBag, PerColumnLoop, TorchTail

    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 like TF and recom_tvm
    cuda = torch.cuda.is_available()  # else a dry run of the script on the host (libraries built for llvm)
    dev = torch.device("cuda" if cuda else "cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    gpu = torch.cuda.get_device_name(0) if cuda else "cpu (dry run)"
    results = {"device": gpu, "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
               "bandwidth": _bandwidths(torch, dev, sync), "models": {}}
    bw = results["bandwidth"]
    print(f"device: {gpu}; copy {bw['d2d_copy_GBps']:.0f} GB/s, H2D (pageable) {bw['h2d_pageable_GBps']:.1f} GB/s")
    failures = 0
    for meta_path in sorted(glob.glob(os.path.join(in_dir, "*.model.json"))):
        with open(meta_path) as f:
            info = json.load(f)
        m = info["model"]
        spec = getattr(zoo, info["spec"])(info["rows"])
        t0 = time.perf_counter()
        models = {v: load(os.path.join(in_dir, d["lib"])) for v, d in info["variants"].items()}
        # ---- weights on the GPU, from (spec seed, parameter name)
        weights, tables = {}, {}
        for v, model in models.items():
            (merged,) = model.spec.param_recipes
            flat = torch.zeros(model.param_shapes()[merged][0], device=dev)
            names = info["variants"][v]["tables"]
            table_of = {t: c for c, t in names.items()}
            by_name = {c.name: c for c in spec.columns}
            for table, offset, rows, stride in model.table_layout(merged):
                col = by_name[table_of[table]]
                view = flat[offset:offset + rows * stride].view(rows, stride)
                view[:, :col.dim] = _generate(torch, dev, spec.seed, col.name, (rows, col.dim), 1.0)
                tables[col.name] = view[:, :col.dim]
            new = {merged: flat}
            for name in model.param_names():
                if name != merged:
                    shape = model.param_shapes()[name]
                    scale = 1 / np.sqrt(shape[0]) if len(shape) == 2 else 0.1
                    weights[name] = new[name] = _generate(torch, dev, spec.seed, name, shape, scale)
            model.set_params(new)
        sync()
        gen_s = time.perf_counter() - t0
        with open(os.path.join(in_dir, f"{m}_tail.json")) as f:
            tail = json.load(f)
        with np.load(os.path.join(in_dir, f"{m}_tail.npz")) as z:
            tail["consts"] = {k: z[k] for k in z.files}
        weights_np = {k: v.cpu().numpy() for k, v in weights.items()}
        dev_tables = {k: _DeviceTable(torch, t) for k, t in tables.items()}
        contiguous = {k: t.contiguous() if not t.is_contiguous() else t for k, t in tables.items()}
        grouped = GroupedEmbeddingBag(spec, contiguous, dev)
        loop = PerColumnLoop(spec, contiguous)
        torch_tail = TorchTail(tail, weights, dev)
        summary = {k: v for k, v in info.items() if k != "variants"}
        summary["variants"] = {v: {k: x for k, x in d.items() if k != "tables"} for v, d in info["variants"].items()}
        mres = {"gen_weights_s": round(gen_s, 2), "prepare_info": summary, "batches": {}}
        print(f"\nmodel {m.upper()} ({len(spec.columns)} columns, large tables {info['rows']} rows): weights "
              f"generated in {gen_s:.1f}s")
        for batch in batches:
            row = {}
            # ---- correctness: numpy reference, fresh inputs
            feeds = spec.sample(batch, rng=batch + 1)
            ref_emb = reference.embedding_stage(spec, dev_tables, feeds)
            (got_emb,) = models["emb"].run(feeds).values()
            ref_score = reference.eval_tail(tail, weights_np, ref_emb, feeds)
            got_score = models["e2e"].run(feeds)["score"]
            grouped_host = grouped.host_inputs(feeds, batch)
            torch_emb = grouped(grouped.upload(grouped_host)).cpu().numpy()
            row["max_err_emb"] = float(np.abs(got_emb - ref_emb).max())
            row["max_err_score"] = float(np.abs(got_score - ref_score).max())
            row["max_err_torch_emb"] = float(np.abs(torch_emb - ref_emb).max())
            row["ok"] = bool(got_emb.shape == ref_emb.shape and row["max_err_emb"] < 1e-4
                             and row["max_err_score"] < 1e-4 and row["max_err_torch_emb"] < 1e-4)
            failures += not row["ok"]
            # ---- timing: 4 input sets, drawn fresh, cycled
            sets = [spec.sample(batch, rng=1000 * batch + i) for i in range(4)]
            emb, e2e = models["emb"], models["e2e"]
            prepared = [emb.prepare(f) for f in sets]
            prepared_e2e = [e2e.prepare(f) for f in sets]
            on_dev = [emb.upload(a) for a in prepared]
            on_dev_e2e = [e2e.upload(a) for a in prepared_e2e]
            g_host = [grouped.host_inputs(f, batch) for f in sets]
            g_dev = [grouped.upload(h) for h in g_host]
            l_dev = [loop.upload(loop.host_inputs(f), dev) for f in sets]
            dense_dev = [torch.from_numpy(np.asarray(f["dense"], np.float32)).to(dev) for f in sets]
            t = {}
            t["ours_emb_run"] = _timeit(emb.run, sets, iters, sync)
            t["ours_e2e_run"] = _timeit(e2e.run, sets, iters, sync)
            t["ours_host_prepare"] = _timeit(emb.prepare, sets, iters, sync)
            t["ours_emb_copy_dev"] = _timeit(emb.execute, prepared, iters, sync)
            t["ours_e2e_copy_dev"] = _timeit(e2e.execute, prepared_e2e, iters, sync)
            t["ours_emb_device"] = _timeit(lambda a: emb.execute(a, copy_out=False), on_dev, iters, sync)
            t["ours_e2e_device"] = _timeit(lambda a: e2e.execute(a, copy_out=False), on_dev_e2e, iters, sync)
            t["torch_grouped_emb_device"] = _timeit(grouped, g_dev, iters, sync)
            t["torch_grouped_emb_copy_dev"] = _timeit(lambda h: grouped(grouped.upload(h)).cpu(), g_host, iters,
                                                      sync)
            t["torch_grouped_e2e_device"] = _timeit(lambda i: torch_tail(grouped(g_dev[i]), dense_dev[i]),
                                                    list(range(len(sets))), iters, sync)
            t["torch_loop_emb_device"] = _timeit(loop, l_dev, max(5, iters // 4), sync)
            graphs = _capture(torch, lambda i: torch_tail(grouped(g_dev[i]), dense_dev[i]), len(sets)) if cuda \
                else None
            t["torch_grouped_e2e_graph"] = _timeit(lambda g: g.replay(), graphs, iters, sync) if graphs else None
            packed_bytes = sum(a.nbytes for a in prepared[0] if isinstance(a, np.ndarray))  # all H2D copies
            floor_bytes = _embedding_bytes(spec, sets[0], packed_bytes)
            t["floor_emb_device"] = 1e3 * floor_bytes / (bw["d2d_copy_GBps"] * 1e9)
            t["floor_h2d_packed"] = 1e3 * packed_bytes / (bw["h2d_pageable_GBps"] * 1e9)
            row.update({k: None if v is None else round(v, 4) for k, v in t.items()})
            row["packed_bytes"], row["floor_bytes"] = packed_bytes, floor_bytes
            if batch == batches[0] and cuda:
                for name, fn in (("ours_emb", lambda: emb.execute(on_dev[0], copy_out=False)),
                                 ("ours_e2e", lambda: e2e.execute(on_dev_e2e[0], copy_out=False)),
                                 ("torch_grouped_emb", lambda: grouped(g_dev[0])),
                                 ("torch_loop_emb", lambda: loop(l_dev[0]))):
                    kernels = _kernels(torch, fn)
                    mres[f"kernels_{name}"] = None if kernels is None else len(kernels)
                    if name.startswith("ours") and kernels is not None:
                        mres[f"kernel_us_{name}"] = [[n, round(us, 1)] for n, us in kernels]
            mres["batches"][batch] = row
            print(f"B={batch:5d} err emb {row['max_err_emb']:.1e} score {row['max_err_score']:.1e} "
                  f"{'ok' if row['ok'] else 'MISMATCH'} | ms: ours run {t['ours_e2e_run']:.3f} "
                  f"(emb {t['ours_emb_run']:.3f}, host {t['ours_host_prepare']:.3f}, copy+dev "
                  f"{t['ours_emb_copy_dev']:.3f}, dev {t['ours_emb_device']:.3f}; e2e dev "
                  f"{t['ours_e2e_device']:.3f}) | torch grouped dev {t['torch_grouped_emb_device']:.3f} "
                  f"(e2e {t['torch_grouped_e2e_device']:.3f}, graph {t['torch_grouped_e2e_graph'] or 0:.3f}, copy+dev "
                  f"{t['torch_grouped_emb_copy_dev']:.3f}) loop {t['torch_loop_emb_device']:.3f} | floor "
                  f"{t['floor_emb_device']:.3f}", flush=True)
        if cuda:  # everything held now: both modules' tables, the baselines' copies, TVM's and torch's pools
            free, total = torch.cuda.mem_get_info()
            mres["device_mem_in_use_GB"] = round((total - free) / 1e9, 2)
        print("kernels per inference (profiler):", {k: v for k, v in mres.items() if k.startswith("kernels_")})
        for name, us in mres.get("kernel_us_ours_e2e", []):
            print(f"  {us:8.1f} us  {name}")
        results["models"][m] = mres
        if out_dir:  # after each model: a run cut short keeps what it measured
            write_json(out_dir, "gpu_models.json", results)
        del models, grouped, loop, tables, dev_tables, contiguous, weights
        if cuda:
            torch.cuda.empty_cache()
    if out_dir:
        write_json(out_dir, "gpu_models.json", results)
    print(f"\n{'all outputs match the numpy reference' if not failures else f'{failures} MISMATCHES'}")
    return 1 if failures else 0


def main() -> int:
    p = cli(__doc__, ".device/gpu_models")
    p.add_argument("--models", default="e,f")
    p.add_argument("--rows", type=int, default=1 << 23, help="rows of the large tables (2^23 in RECom)")
    p.add_argument("--target", default="cuda", help="llvm: a dry run of `run` on this host")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--iters", type=int, default=20)
    a = p.parse_args()
    if a.mode == "prepare":
        prepare(a.dir, a.models.split(","), a.rows, a.arch, a.target)
        return 0
    return run(a.dir, a.out, tuple(int(b) for b in a.batches.split(",")), a.iters)


if __name__ == "__main__":
    sys.exit(main())
