"""The device side of the request path on the GPU: dense-tail schedules and CUDA graphs, checked and timed.

    # build host (compiler + nvcc, no GPU): every variant of every model, libraries without weights
    python benchmarks/gpu_request_path.py prepare --dir .device/request_path [--models mixed100,e]
    # GPU machine (TVM runtime + PyTorch), one command:
    python benchmarks/gpu_request_path.py run --dir .device/request_path --out $OUT
    # the run side checked on this host's CPU (no torch needed): libraries for llvm, weights from numpy
    python benchmarks/gpu_request_path.py prepare --target llvm --dir /tmp/rp --models demo
    python benchmarks/gpu_request_path.py run --dir /tmp/rp --iters 3

Models: demo (small, for the dry run), mixed100, e (RECom's model E at full size: 5 hash tables of 2^23 rows,
resized without TF by full_models.paths; its tables exist only on the GPU). Variants (recom_tvm.optimize, then
build for CUDA):
  tvm_default    config.dense_tail = "off", config.cuda_graph = False: what build made before (dlight's defaults)
  default_graph  dlight's defaults replayed through CUDA graphs
  dense          the dense tail's schedules per batch bucket, kernels launched one by one
  dense_graph    the same replayed through CUDA graphs (build's default now)
On llvm the graph variants build like the others (graphs are CUDA only): the dry run checks the script's logic.
Weights and tables are generated on the GPU (suite_gpu.set_weights: the same values for every variant); run:
  1. correctness: every variant against the numpy reference (reference.embedding_stage + eval_tail in float64) at
     batches on both sides of the dense buckets' edges (4, 64) and of the graph cap, ordinary and hostile inputs;
     then dense_graph through a sequence of batches revisiting earlier ones (graphs captured, then replayed with
     other batches' graphs in between) and a set_params (new weights: a new VM, new graphs), each output checked;
  2. latency per batch (ms, median over fresh inputs, the module on device-resident inputs: launches + kernels +
     the VM), each variant, and PyTorch grouped embedding_bag + MLP in a CUDA graph, in the same run;
  3. kernel launches per inference (CUPTI through torch.profiler: launch API calls and kernels executed), and the
     per-kernel device times at B = 1 and 32 (the dense layers' kernels alone: the MLP's time);
  4. the first call at a new batch (the graph's capture) against a replay.
It prints a table last and writes gpu_request_path_<card>_<date>.json under --out.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from gpu_common import cli, write_json  # noqa: E402

MODELS = {"demo": ("demo", ()), "mixed100": ("mixed", (100, 0)), "e": ("model_e", (1 << 23,)),
          "e_small": ("model_e", (4096,))}
VARIANTS = {"tvm_default": ("off", False), "default_graph": ("off", True), "dense": ("auto", False),
            "dense_graph": ("auto", True)}
CHECK_BATCHES = (1, 4, 5, 33, 64, 65, 300)
TIME_BATCHES = (1, 32, 256, 2048)
GRAPH_SEQUENCE = (5, 33, 5, 65, 1, 33, 300, 5)


# ------------------------------------------------------------------------------------------------------ prepare
def _paths(factory: str, args: tuple, spec) -> dict:
    """The frozen graph: TF's export, or (E at 2^23 rows) the small export with its hash tables resized."""
    from recom_tvm.models import tf_export

    if factory == "model_e" and args[0] > 4096:
        from full_models import paths

        return paths("e", args[0])
    return tf_export.export(spec)


def prepare(out_dir: str, models: list[str], arch: str, target: str = "cuda") -> None:
    import recom_tvm
    from recom_tvm.models import reference, zoo
    from recom_tvm.models.resize import embedding_output
    from recom_tvm.passes import identify_columns

    recom_tvm.config.cuda_arch = arch
    for name in models:
        factory, args = MODELS[name]
        spec = getattr(zoo, factory)(*args)
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        t0 = time.perf_counter()
        paths = _paths(factory, args, spec)
        mod, params, _ = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"])
        opt = recom_tvm.optimize(mod)
        by_fc = {c.name: c.table for c in identify_columns(opt)}
        tables = {c.name: by_fc.get(reference.feature_column_name(c)) for c in spec.columns if c.kind != "numeric"}
        info = {"model": name, "factory": factory, "args": list(args), "columns": len(spec.columns),
                "arch": arch, "target": target, "variants": {}}
        for variant, (dense, graph) in VARIANTS.items():
            recom_tvm.config.dense_tail, recom_tvm.config.cuda_graph = dense, graph
            t1 = time.perf_counter()
            model = recom_tvm.build(opt, target, params)
            lib = f"{variant}.so"
            model.export_library(os.path.join(d, lib), include_params=False)
            info["variants"][variant] = {"lib": lib, "tables": tables, "times": {"build_s": round(
                time.perf_counter() - t1, 2)}, "cuda_graph": graph, "dense_tail": dense,
                "graph_max_batch": recom_tvm.config.cuda_graph_max_batch if graph else None}
        recom_tvm.config.dense_tail, recom_tvm.config.cuda_graph = "auto", True
        emb_out = embedding_output(paths["pb"])
        sig = json.load(open(paths["signature"]))
        tail = reference.extract_tail(paths["pb"], emb_out, sig["outputs"]["score"], params, sig["inputs"])
        np.savez(os.path.join(d, "tail.npz"), **tail["consts"])
        with open(os.path.join(d, "tail.json"), "w") as f:
            json.dump({"steps": tail["steps"], "output": tail["output"]}, f)
        with open(os.path.join(d, "model.json"), "w") as f:
            json.dump(info, f, indent=1)
        print(f"{name}: {len(VARIANTS)} variants built for {target if target != 'cuda' else arch} in {time.perf_counter() - t0:.0f}s", flush=True)


# ---------------------------------------------------------------------------------------------------------- run
_LAUNCH_APIS = ("cuLaunchKernel", "cuLaunchKernelEx", "cudaLaunchKernel", "cudaLaunchKernelExC", "cuGraphLaunch",
                "cudaGraphLaunch")


def launches(torch, fn) -> dict | None:
    """Launch API calls (kernels, graphs) and kernels executed by one call of fn, from CUPTI."""
    try:
        from torch.profiler import ProfilerActivity, profile

        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        api = {}
        kernels = []
        for e in prof.events():
            if e.name in _LAUNCH_APIS:
                api[e.name] = api.get(e.name, 0) + 1
            elif str(e.device_type).endswith("CUDA") and not e.name.startswith(("Memcpy", "Memset")):
                us = getattr(e, "device_time", None) or getattr(e, "cuda_time", 0.0)
                kernels.append([e.name, round(float(us), 2)])
        graphs = api.get("cuGraphLaunch", 0) + api.get("cudaGraphLaunch", 0)
        return {"launch_calls": sum(api.values()), "graph_launches": graphs,
                "kernel_launches": sum(api.values()) - graphs, "kernels_executed": len(kernels), "api": api,
                "kernels": kernels}
    except Exception as err:  # noqa: BLE001 - the profiler is optional
        return {"error": str(err)[:200]}


def _reference(spec, tail, weights_np, tables, feeds) -> np.ndarray:
    from recom_tvm.models import reference

    return reference.eval_tail(tail, weights_np, reference.embedding_stage(spec, tables, feeds), feeds)


def _error(model, ref, feeds) -> float:
    (got,) = model.run(feeds).values()
    if got.shape != ref.shape or not np.isfinite(got).all():
        return float("inf")
    return float(np.abs(got - ref).max())


def numpy_weights(spec, info, models) -> tuple[dict, dict]:
    """suite_gpu.set_weights for the dry run on a CPU: the same structure, values from numpy."""
    from gpu_common import seed_of

    def gen(name, shape, scale):
        return (np.random.default_rng(seed_of(spec.seed, name)).standard_normal(shape) * scale).astype(np.float32)

    tables = {c.name: gen(c.name, (c.rows, c.dim), 1.0) for c in spec.columns if c.kind != "numeric"}
    weights = {}
    for vname, model in models.items():
        table_of = {t: c for c, t in info["variants"][vname]["tables"].items() if t}
        new = {}
        for name in model.param_names():
            if name in table_of:
                new[name] = tables[table_of[name]]
            elif name in (model.spec.param_recipes or {}) and "concat_flat" in model.spec.param_recipes[name]:
                new.update({t: tables[table_of[t]] for t in model.spec.param_recipes[name]["concat_flat"]})
            else:
                shape = model.param_shapes()[name]
                if name not in weights:
                    weights[name] = gen(name, shape, 1 / np.sqrt(shape[0]) if len(shape) == 2 else 0.1)
                new[name] = weights[name]
        model.set_params(new)
    return tables, weights


def run_model(model_dir: str, iters: int, torch, dev, time_batches=TIME_BATCHES) -> dict:
    """One model's checks and timings; torch None: the dry run on a CPU (llvm libraries, no baselines)."""
    from gpu_common import DeviceTable, capture, timeit
    from recom_tvm.runtime import load
    from suite_gpu import _spec, input_sets

    gpu = torch is not None
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    with open(os.path.join(model_dir, "model.json")) as f:
        info = json.load(f)
    spec = _spec(info)
    models = {v: load(os.path.join(model_dir, d["lib"])) for v, d in info["variants"].items()}
    if gpu:
        from suite_gpu import set_weights

        tables, weights = set_weights(torch, dev, spec, info, models)
        weights_np = {k: v.cpu().numpy() for k, v in weights.items()}
        ref_tables = {k: DeviceTable(torch, t) for k, t in tables.items()}
    else:
        tables, weights = numpy_weights(spec, info, models)
        weights_np, ref_tables = weights, tables
    with open(os.path.join(model_dir, "tail.json")) as f:
        tail = json.load(f)
    with np.load(os.path.join(model_dir, "tail.npz")) as z:
        tail["consts"] = {k: z[k] for k in z.files}
    res = {"checks": {}, "graph_sequence": [], "batches": {}, "launches": {}, "capture": {}}
    failures = 0
    # 1. correctness: every variant against one reference per input set
    graph_variants = [v for v, d in info["variants"].items() if d["cuda_graph"]]
    cap = max([info["variants"][v]["graph_max_batch"] or 0 for v in graph_variants] or [0])
    batches = sorted(set(CHECK_BATCHES) | ({cap, cap + 1} if cap and cap <= 4096 else set()))
    for batch in batches:
        for hostile in (False, True):
            feeds = spec.sample(batch, rng=31 * batch + hostile, hostile=hostile)
            ref = _reference(spec, tail, weights_np, ref_tables, feeds)
            for vname, model in models.items():
                err = _error(model, ref, feeds)
                ok = err < 1e-4
                failures += not ok
                res["checks"][f"{vname}_B{batch}_{'hostile' if hostile else 'plain'}"] = {"max_abs_err": err,
                                                                                         "ok": ok}
    g = models["dense_graph"]
    for i, batch in enumerate(GRAPH_SEQUENCE):  # graphs captured, then replayed with others captured between
        feeds = spec.sample(batch, rng=7000 + i)
        err = _error(g, _reference(spec, tail, weights_np, ref_tables, feeds), feeds)
        failures += not err < 1e-4
        res["graph_sequence"].append({"batch": batch, "max_abs_err": err, "ok": err < 1e-4})
    new_w = {k: v * 0.5 for k, v in weights.items()}  # new weights: a new VM, new graphs
    g.set_params(new_w)
    weights_half = {k: np.asarray(v.cpu().numpy() if gpu else v) for k, v in new_w.items()}
    for batch in (5, 33):
        feeds = spec.sample(batch, rng=9000 + batch)
        err = _error(g, _reference(spec, tail, weights_half, ref_tables, feeds), feeds)
        failures += not err < 1e-4
        res["graph_sequence"].append({"batch": batch, "after_set_params": True, "max_abs_err": err,
                                      "ok": err < 1e-4})
    g.set_params(weights)
    res["failures"] = failures
    print(f"{info['model']}: correctness {'all match' if not failures else f'{failures} MISMATCH'} "
          f"({len(res['checks'])} checks, {len(res['graph_sequence'])} graph-sequence runs)", flush=True)
    # 2. latency, 3. launches
    if gpu:
        from torch_baselines import GroupedEmbeddingBag, TorchTail

        grouped = GroupedEmbeddingBag(spec, {k: t.contiguous() for k, t in tables.items()}, dev)
        torch_tail = TorchTail(tail, weights, dev)
    for batch in time_batches:
        n = iters if batch <= 512 else max(3, iters // 2)
        sets = input_sets(info, batch, n)
        row = {"iters": n}
        for vname, model in models.items():
            on_dev = [model.upload(model.prepare(f)) for f in sets]
            row[f"{vname}_device"] = timeit(lambda a, m=model: m.execute(a, copy_out=False), on_dev, n, sync)
            row[f"{vname}_run"] = timeit(model.run, sets, n, sync)
            if gpu and batch in (1, 32):
                res["launches"][f"{vname}_B{batch}"] = launches(torch, lambda m=model, a=on_dev[0]: m.execute(
                    a, copy_out=False))
        row["torch_grouped_mlp_graph"] = row["torch_mlp_alone"] = None
        if gpu:
            g_dev = [grouped.upload(grouped.host_inputs(f, batch)) for f in sets]
            dense = [torch.from_numpy(np.asarray(f["dense"], np.float32)).to(dev) for f in sets]
            graphs = capture(torch, lambda i: torch_tail(grouped(g_dev[i]), dense[i]), min(n, 4))
            row["torch_grouped_mlp_graph"] = timeit(lambda gr: gr.replay(), graphs, n, sync) if graphs else None
            row["torch_mlp_alone"] = timeit(lambda i: torch_tail(torch.zeros(batch, spec.concat_width, device=dev),
                                                                 dense[i]), list(range(n)), n, sync)
        res["batches"][str(batch)] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
        print(f"  B={batch:5d} device ms: " + ", ".join(f"{k[:-7]} {row[k]:.4f}" for k in row if k.endswith(
            "_device")) + (f" | torch grouped+MLP graph {row['torch_grouped_mlp_graph']:.4f}"
                           if row["torch_grouped_mlp_graph"] else ""), flush=True)
    # 4. capture cost: a batch never seen, first call vs the next
    fresh = models["dense_graph"]
    for batch in (7, 129):
        args = fresh.upload(fresh.prepare(spec.sample(batch, rng=batch)))
        sync()
        t0 = time.perf_counter()
        fresh.execute(args, copy_out=False)
        sync()
        first = 1e3 * (time.perf_counter() - t0)
        res["capture"][str(batch)] = {"first_call_ms": round(first, 3),
                                      "replay_ms": round(timeit(lambda a: fresh.execute(a, copy_out=False), [args],
                                                                10, sync), 4)}
    return res


def run(in_dir: str, out_dir: str | None, iters: int, only: list[str] | None, time_batches=TIME_BATCHES) -> int:
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and not torch.cuda.is_available():
        torch = None
    from device_info import gpu_name

    dev = None
    res = {"device": gpu_name() if torch else "cpu (dry run)", "date": time.strftime("%Y-%m-%d"), "models": {}}
    if torch is not None:
        from gpu_common import bandwidths

        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 like TF and recom_tvm
        dev = torch.device("cuda")
        res["torch"] = torch.__version__
        res["bandwidth"] = bandwidths(torch, dev, torch.cuda.synchronize)
    failures = 0
    for name in sorted(os.listdir(in_dir)):
        d = os.path.join(in_dir, name)
        if not os.path.exists(os.path.join(d, "model.json")) or (only and name not in only):
            continue
        with open(os.path.join(d, "model.json")) as f:
            built_for = json.load(f).get("target", "cuda")
        if (built_for == "cuda") != (torch is not None):
            print(f"{name}: built for {built_for}, this machine {'has' if torch else 'has no'} GPU: skipped")
            failures += 1
            continue
        res["models"][name] = run_model(d, iters, torch, dev, time_batches)
        failures += res["models"][name]["failures"]
        if out_dir:
            card = res["device"].split()[-1].lower() if torch and res["device"] else "cpu"
            write_json(out_dir, f"gpu_request_path_{card}_{res['date']}.json", res)
    names = list(VARIANTS)
    print(f"\n{'model':9s} {'B':>5s} " + " ".join(f"{v:>13s}" for v in names) + f" {'torch graph':>11s}"
          "  launch calls at B=1 (" + " / ".join(names) + ")")
    for name, m in res["models"].items():
        for b, row in m["batches"].items():
            tg = row.get("torch_grouped_mlp_graph")
            la = " / ".join(str(m["launches"].get(f"{v}_B1", {}).get("launch_calls")) for v in names)
            print(f"{name:9s} {b:>5s} " + " ".join(f"{row[v + '_device']:13.4f}" for v in names)
                  + f" {'-' if tg is None else f'{tg:.4f}':>11s}  " + (la if b == "1" and m["launches"] else ""))
    print(f"device: {res['device']}; " + ("all outputs match the reference" if not failures
                                          else f"{failures} MISMATCHES or models skipped"))
    return 1 if failures else 0


def main() -> int:
    p = cli(__doc__, ".device/request_path")
    p.add_argument("--models", default="mixed100,e")
    p.add_argument("--target", default="cuda", choices=["cuda", "llvm"],
                   help="prepare: llvm builds libraries for this host's CPU (the dry run of `run`)")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--time-batches", default=",".join(map(str, TIME_BATCHES)))
    a = p.parse_args()
    models = a.models.split(",")
    if a.mode == "prepare":
        prepare(a.dir, models, a.arch, a.target)
        return 0
    return run(a.dir, a.out, a.iters, models, tuple(int(b) for b in a.time_batches.split(",")))


if __name__ == "__main__":
    sys.exit(main())
