"""The suite's GPU part for one model (a process of its own, so memory peaks are the model's own).

    python benchmarks/suite_gpu.py MODEL_DIR OUT.json [--iters 20]

MODEL_DIR: what suite_models.build_model wrote (libraries without weights, model.json, the MLP's tail program).
Every table and MLP weight is generated on the GPU from (spec seed, column / parameter name), the same for every
system; each system's outputs are checked against the numpy reference (float64) first. Then per batch, with
inputs drawn fresh for every timed iteration (uniform ids; Zipf ids for the fused kernel vs PyTorch grouped on
full-size models), in the same run:
  <variant>_device        module on device-resident inputs: launches + kernels (+ the VM's dispatch)
  fused e2e: run          TF-style feeds -> numpy: host stage + H2D + kernels + D2H
             host_*       prepare() split: normalize (checks, conversion), host (string hashing), pack
             h2d          the prepared inputs' host->device copy alone
  torch_grouped_*         F.embedding_bag per dim group (TBE-like), preprocessed ids on the device; + CUDA graph
  torch_loop_*            one F.embedding_bag per column + concat (framework op by op: the TF-GPU stand-in)
  floor_emb               bytes the embedding stage must move / device copy bandwidth measured in this run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

ZIPF = 1.2


def _spec(info):
    from recom_tvm.models import zoo

    return getattr(zoo, info["factory"])(*info["args"])


def _sample(args):
    factory, fargs, batch, seed, zipf = args
    from recom_tvm.models import zoo

    return getattr(zoo, factory)(*fargs).sample(batch, rng=seed, zipf=zipf)


def input_sets(info, batch: int, n: int, zipf=None, pool=None) -> list:
    jobs = [(info["factory"], tuple(info["args"]), batch, 10_000 * batch + i + (7 if zipf else 0), zipf)
            for i in range(n)]
    return list(pool.map(_sample, jobs)) if pool is not None else [_sample(j) for j in jobs]


def set_weights(torch, dev, spec, info, models) -> tuple[dict, dict]:
    """Generate every column's table and every other parameter once; give each system its views."""
    from gpu_common import generate as _generate

    by_name = {c.name: c for c in spec.columns}
    tables = {c.name: _generate(torch, dev, spec.seed, c.name, (c.rows, c.dim), 1.0)
              for c in spec.columns if c.kind != "numeric"}
    weights = {}
    for vname, model in models.items():
        meta = info["variants"][vname]
        table_of = {t: c for c, t in meta["tables"].items() if t}
        new = {}
        recipes = model.spec.param_recipes or {}
        for name in model.param_names():
            if name in recipes and "concat_flat" in recipes[name]:  # the fused kernel's flat table
                flat = torch.zeros(model.param_shapes()[name][0], device=dev)
                for table, offset, rows, stride in model.table_layout(name):
                    col = by_name[table_of[table]]
                    flat[offset:offset + rows * stride].view(rows, stride)[:, :col.dim] = tables[col.name]
                new[name] = flat
            elif name in table_of:
                new[name] = tables[table_of[name]]
            else:
                shape = model.param_shapes()[name]
                if name not in weights:
                    scale = 1 / np.sqrt(shape[0]) if len(shape) == 2 else 0.1
                    weights[name] = _generate(torch, dev, spec.seed, name, shape, scale)
                new[name] = weights[name]
        model.set_params(new)
    return tables, weights


def host_steps(model, feeds_list) -> dict:
    """prepare() split into its steps, median over fresh inputs (ms): normalize (checks, conversion, row sort),
    strings (the host stage: string hashing; id checks), pack (binding sizes, packing, the argument list)."""
    from host_stage import step_times

    st = step_times(model, feeds_list, reduce=np.median, with_prepare=False)
    return {"host_normalize": st["normalize"] + st["sort"], "host_strings": st["host"], "host_pack": st["bind+pack"]}


def run(model_dir: str, out_path: str, iters: int) -> int:
    import torch

    from gpu_common import (DeviceTable as _DeviceTable, bandwidths as _bandwidths, capture as _capture,
                            embedding_bytes as _embedding_bytes, kernels as _kernels, timeit as _timeit)
    from recom_tvm.models import reference
    from recom_tvm.runtime import load
    from torch_baselines import GroupedEmbeddingBag, PerColumnLoop, TorchTail

    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 like TF and recom_tvm
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with open(os.path.join(model_dir, "model.json")) as f:
        info = json.load(f)
    spec = _spec(info)
    free0 = torch.cuda.mem_get_info()[0] if cuda else 0
    res = {"model": info["model"], "device": torch.cuda.get_device_name(0) if cuda else "cpu (dry run)",
           "date": time.strftime("%Y-%m-%d"), "columns": info["columns"], "bandwidth": _bandwidths(torch, dev, sync),
           "compile": {k: v["times"] for k, v in info["variants"].items()}, "batches": {}, "checks": {}}
    t0 = time.perf_counter()
    models = {v: load(os.path.join(model_dir, d["lib"])) for v, d in info["variants"].items()}
    tables, weights = set_weights(torch, dev, spec, info, models)
    sync()
    res["load_and_weights_s"] = round(time.perf_counter() - t0, 2)
    with open(os.path.join(model_dir, "tail.json")) as f:
        tail = json.load(f)
    with np.load(os.path.join(model_dir, "tail.npz")) as z:
        tail["consts"] = {k: z[k] for k in z.files}
    weights_np = {k: v.cpu().numpy() for k, v in weights.items()}
    contiguous = {k: t.contiguous() for k, t in tables.items()}
    grouped = GroupedEmbeddingBag(spec, contiguous, dev)
    loop = PerColumnLoop(spec, contiguous)
    torch_tail = TorchTail(tail, weights, dev)
    # ---- every system against the numpy reference first
    dev_tables = {k: _DeviceTable(torch, t) for k, t in tables.items()}
    failures = 0
    for batch in (1, 33):
        feeds = spec.sample(batch, rng=batch + 1, hostile=True)
        ref_emb = reference.embedding_stage(spec, dev_tables, feeds)
        ref_score = reference.eval_tail(tail, weights_np, ref_emb, feeds)
        for vname, model in models.items():
            (got,) = model.run(feeds).values()
            ref = ref_emb if vname.startswith("emb") else ref_score
            err = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")
            ok = err < 1e-4
            failures += not ok
            res["checks"][f"{vname}_B{batch}"] = {"max_abs_err": err, "ok": ok}
        got = grouped(grouped.upload(grouped.host_inputs(spec.sample(batch, rng=batch + 1), batch))).cpu().numpy()
        ref = reference.embedding_stage(spec, dev_tables, spec.sample(batch, rng=batch + 1))
        res["checks"][f"torch_grouped_B{batch}"] = {"max_abs_err": float(np.abs(got - ref).max()),
                                                     "ok": bool(np.abs(got - ref).max() < 1e-4)}
    print(f"{info['model']}: {len(models)} systems loaded, weights in {res['load_and_weights_s']}s; checks "
          + ("all match" if not failures else f"{failures} MISMATCH"), flush=True)
    bw = res["bandwidth"]
    pool = ProcessPoolExecutor(max_workers=min(12, os.cpu_count() or 2))
    peak_dev = 0
    for batch in info["batches"]:
        n = iters if batch <= 512 else max(6, iters // 2)
        sets = input_sets(info, batch, n, pool=pool)
        row: dict = {"iters": n}
        t = {}
        emb_f, e2e_f = models.get("emb_fused"), models.get("e2e_fused")
        for vname, model in models.items():
            prepared = [model.prepare(f) for f in sets]
            on_dev = [model.upload(a) for a in prepared]
            t[f"{vname}_device"] = _timeit(lambda a, m=model: m.execute(a, copy_out=False), on_dev, n, sync)
            if vname == "e2e_fused":
                t["e2e_fused_copy_dev"] = _timeit(model.execute, prepared, n, sync)
                t["h2d"] = _timeit(lambda a, m=model: m.upload(a), prepared, n, sync)
            del on_dev, prepared
        t["e2e_fused_run"] = _timeit(e2e_f.run, sets, n, sync)
        t["emb_fused_run"] = _timeit(emb_f.run, sets, n, sync)
        t["host_prepare"] = _timeit(e2e_f.prepare, sets, n, sync)
        t.update(host_steps(e2e_f, sets[:max(3, n // 2)]))
        g_dev = [grouped.upload(grouped.host_inputs(f, batch)) for f in sets]
        dense = [torch.from_numpy(np.asarray(f["dense"], np.float32)).to(dev) for f in sets]
        t["torch_grouped_emb_device"] = _timeit(grouped, g_dev, n, sync)
        t["torch_grouped_e2e_device"] = _timeit(lambda i: torch_tail(grouped(g_dev[i]), dense[i]), list(range(n)), n,
                                                sync)
        graphs = _capture(torch, lambda i: torch_tail(grouped(g_dev[i]), dense[i]), min(n, 4)) if cuda else None
        t["torch_grouped_e2e_graph"] = _timeit(lambda g: g.replay(), graphs, n, sync) if graphs else None
        l_dev = [loop.upload(loop.host_inputs(f), dev) for f in sets[:max(3, n // 4)]]
        t["torch_loop_emb_device"] = _timeit(loop, l_dev, len(l_dev), sync)
        t["torch_loop_e2e_device"] = _timeit(lambda i: torch_tail(loop(l_dev[i]), dense[i]), list(range(len(l_dev))),
                                             len(l_dev), sync)
        packed_bytes = sum(a.nbytes for a in emb_f.prepare(sets[0]) if isinstance(a, np.ndarray))
        floor_bytes = _embedding_bytes(spec, sets[0], packed_bytes)
        t["floor_emb"] = 1e3 * floor_bytes / (bw["d2d_copy_GBps"] * 1e9)
        row["floor_bytes"], row["packed_bytes"] = floor_bytes, packed_bytes
        if info["model"] in ("e", "f"):  # skewed ids: hot rows in cache
            zsets = input_sets(info, batch, n, zipf=ZIPF, pool=pool)
            for vname in ("emb_fused", "emb_tuned"):
                if vname in models:
                    on_dev = [models[vname].upload(models[vname].prepare(f)) for f in zsets]
                    t[f"{vname}_device_zipf"] = _timeit(lambda a, m=models[vname]: m.execute(a, copy_out=False),
                                                        on_dev, n, sync)
            zg = [grouped.upload(grouped.host_inputs(f, batch)) for f in zsets]
            t["torch_grouped_emb_device_zipf"] = _timeit(grouped, zg, n, sync)
        if cuda:
            for vname in ("emb_fused", "emb_tuned"):
                if vname in models:
                    m_ = models[vname]
                    args = m_.upload(m_.prepare(sets[0]))
                    kernels = _kernels(torch, lambda: m_.execute(args, copy_out=False))
                    if kernels:
                        row[f"kernels_{vname}"] = [[k, round(us, 2)] for k, us in kernels]
            peak_dev = max(peak_dev, free0 - torch.cuda.mem_get_info()[0])
        row.update({k: None if v is None else round(v, 4) for k, v in t.items()})
        res["batches"][str(batch)] = row
        print(f"  B={batch:5d} ms: fused e2e run {t['e2e_fused_run']:.3f} (host {t['host_prepare']:.3f}, "
              f"dev {t['e2e_fused_device']:.3f}) emb dev {t['emb_fused_device']:.3f}"
              + (f" tuned {t['emb_tuned_device']:.3f}" if "emb_tuned_device" in t else "")
              + (f" unfused {t['emb_unfused_device']:.3f}" if "emb_unfused_device" in t else "")
              + (f" off {t['emb_off_device']:.3f}" if "emb_off_device" in t else "")
              + f" | torch grouped {t['torch_grouped_emb_device']:.3f} loop {t['torch_loop_emb_device']:.3f}"
              f" | floor {t['floor_emb']:.4f}", flush=True)
        with open(out_path, "w") as f:  # a run cut short keeps what it measured
            json.dump(res, f, indent=1)
    pool.shutdown()
    res["peak_device_GB"] = round(peak_dev / 1e9, 2) if cuda else None
    res["peak_host_rss_GB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    res["failures"] = failures
    with open(out_path, "w") as f:
        json.dump(res, f, indent=1)
    return 1 if failures else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("out")
    p.add_argument("--iters", type=int, default=20)
    a = p.parse_args()
    return run(a.model_dir, a.out, a.iters)


if __name__ == "__main__":
    sys.exit(main())
