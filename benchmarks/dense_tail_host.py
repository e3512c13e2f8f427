"""The dense tail on the build host's CPU (llvm): before / after its schedules, against TF-CPU, same run.

    python benchmarks/dense_tail_host.py [--models mixed100,e_small] [--batches 1,32,256,2048] [--threads N]
                                         [--json OUT]

Per model, interleaved in one run (median of --repeat, inputs drawn fresh per iteration from a pool):
  MLP alone     the model's top MLP (K = concat width -> top_mlp -> 1, bias + relu, sigmoid last) as a module of
                its own: TVM's default llvm build (no schedule, generic x86-64: what `build` did before), ours
                (the dense tail's schedules, config.llvm_mcpu) with and without x86-64-v3, and TF-CPU (the same
                matmuls in a TF1 graph session)
  whole model   recom_tvm.optimize + build, before (dense_tail off, generic CPU) and after (the defaults): run()
                from TF-style feeds and the compiled module alone (execute on prepared arguments), vs TF-CPU on the
                frozen graph in a TF1 session (suite_host.TFGraph; feeding excluded)
--threads: TVM's thread pool and TF's intra- / inter-op pools (default: every core). On a host shared with other
work, one thread each compares the code rather than how each runtime's threads survive preemption.
Where the unscheduled build would take more than --max-seconds per call (model E's 8,120 x 1,024 layer at large
batches), "before" is not run: its row says so, with the MLP-alone time it extrapolates from.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

MODELS = {"mixed100": ("mixed", (100, 0)), "e_small": ("model_e", (4096,)), "demo": ("demo", ())}


def _median_ms(fn, inputs: list, repeat: int) -> float:
    return _interleaved({"x": (fn, inputs, repeat)})["x"]


def _interleaved(systems: dict) -> dict:
    """{name: (fn, inputs, repeat)} -> {name: median ms}: one call of each system in turn, round after round, so
    that a change in the host's load falls on every system alike (each is warmed up first)."""
    ts = {k: [] for k in systems}
    for fn, inputs, _ in systems.values():
        fn(inputs[0])
    for i in range(max(r for _, _, r in systems.values())):
        for k, (fn, inputs, repeat) in systems.items():
            if i < repeat:
                x = inputs[i % len(inputs)]
                t0 = time.perf_counter()
                fn(x)
                ts[k].append(time.perf_counter() - t0)
    return {k: 1e3 * float(np.median(v)) for k, v in ts.items()}


def _settings(dense: str, mcpu: str):
    import recom_tvm

    recom_tvm.config.dense_tail, recom_tvm.config.llvm_mcpu = dense, mcpu


SYSTEMS = {"tvm_default": ("off", "generic"), "ours_generic_cpu": ("auto", "generic"), "ours": ("auto", "auto")}


def mlp_shapes(spec) -> tuple[int, tuple[int, ...]]:
    k0 = spec.concat_width + (spec.bottom_mlp[-1] if spec.bottom_mlp else spec.dense_width)
    return k0, tuple(spec.top_mlp) + (1,)


def _tf_config(threads: int):
    import tensorflow as tf

    return tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)


def mlp_alone(spec, batches, repeat: int, max_seconds: float, threads: int = 0) -> dict:
    """The top MLP alone: TVM default / ours / TF-CPU per batch (ms)."""
    import tensorflow as tf
    import tvm

    import recom_tvm.build_module as bm
    from recom_tvm.backend.pipeline import compile_module
    from recom_tvm.models.mlp import relax_mlp

    k0, layers = mlp_shapes(spec)
    rng = np.random.default_rng(0)
    ws, k = [], k0
    for n in layers:
        ws.append((rng.standard_normal((k, n)) / np.sqrt(k)).astype("float32"))
        k = n
    mod = relax_mlp(k0, layers)
    vms = {}
    for name, (dense, mcpu) in SYSTEMS.items():
        _settings(dense, mcpu)
        target = bm.make_target("llvm")
        vms[name] = (tvm.runtime.vm.VirtualMachine(compile_module(mod, target), tvm.cpu()), target)
    _settings("auto", "auto")
    # TF-CPU: the same matmuls (+ bias, relu / sigmoid) in a graph session, biases as in the module (random)
    g = tf.Graph()
    with g.as_default():
        x_ph = tf.compat.v1.placeholder(tf.float32, [None, k0])
        h = x_ph
        for i, w in enumerate(ws):
            h = tf.matmul(h, tf.constant(w)) + tf.constant(rng.standard_normal(w.shape[1]).astype("float32"))
            h = tf.nn.relu(h) if i + 1 < len(ws) else tf.sigmoid(h)
    sess = tf.compat.v1.Session(graph=g, config=_tf_config(threads))
    dev_ws = [tvm.runtime.tensor(w) for w in ws]
    out = {"k": k0, "layers": list(layers), "batches": {}}
    for batch in batches:
        xs = [rng.standard_normal((batch, k0)).astype("float32") for _ in range(3)]
        args = [tvm.runtime.tensor(x) for x in xs]
        systems = {"tf_cpu": (lambda x: sess.run(h, {x_ph: x}), xs, repeat)}
        row = {}
        for name, (vm, _) in vms.items():
            est = out["batches"].get(str(batches[0]), {}).get(name)
            if name == "tvm_default" and est and batches[0] and est * batch / batches[0] > 1e3 * max_seconds:
                row[name] = None
                row[f"{name}_estimate_ms"] = round(est * batch / batches[0], 1)
                continue
            n = repeat if name != "tvm_default" else max(2, min(repeat, 3))
            systems[name] = (lambda a, vm=vm: vm["main"](a, *dev_ws), args, n)
        row.update(_interleaved(systems))
        out["batches"][str(batch)] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
        print(f"  MLP {k0}->{layers} B={batch}: " + ", ".join(
            f"{k} {v:.3f} ms" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
    sess.close()
    return out


def whole_model(spec, batches, repeat: int, mlp: dict, threads: int = 0) -> dict:
    import recom_tvm
    from recom_tvm.models import tf_export
    from suite_host import TFGraph

    paths = tf_export.export(spec)
    mod, params, _ = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"])
    opt = recom_tvm.optimize(mod)
    models, build_s = {}, {}
    for name in ("tvm_default", "ours"):
        _settings(*SYSTEMS[name])
        t0 = time.perf_counter()
        models[name] = recom_tvm.build(opt, "llvm", params)
        build_s[name] = round(time.perf_counter() - t0, 2)
    _settings("auto", "auto")
    graph = TFGraph(paths["pb"], paths["signature"], threads=threads)
    out = {"build_s": build_s, "batches": {}}
    for batch in batches:
        feeds = [spec.sample(batch, rng=1000 * batch + i) for i in range(3)]
        tf_feeds = [graph.feed_dict(f) for f in feeds]
        exp = graph.run(tf_feeds[0])
        row, systems = {}, {"tf_cpu": (graph.run, tf_feeds, repeat)}
        for name, model in models.items():
            before_mlp = mlp["batches"][str(batch)].get(name)
            if name == "tvm_default" and before_mlp is None:
                row[f"{name}_run"] = row[f"{name}_module"] = None
                continue
            got = model.run(feeds[0])["score"]
            row[f"{name}_max_abs_err_vs_tf"] = float(np.abs(got - exp).max())
            n = repeat if name == "ours" else max(2, min(repeat, 3))
            systems[f"{name}_module"] = (model.execute, [model.prepare(f) for f in feeds], n)
            systems[f"{name}_run"] = (model.run, feeds, n)
        systems["prepare"] = (models["ours"].prepare, feeds, repeat)
        row.update(_interleaved(systems))
        out["batches"][str(batch)] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
        print(f"  model B={batch}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                 for k, v in row.items()), flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="mixed100,e_small")
    p.add_argument("--batches", default="1,32,256,2048")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--max-seconds", type=float, default=20.0, help="skip 'before' calls predicted longer")
    p.add_argument("--mlp-only", action="store_true", help="the MLP alone, not the whole model")
    p.add_argument("--threads", type=int, default=0, help="threads of TVM's and TF's pools (0: every core)")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if a.threads:
        os.environ["TVM_NUM_THREADS"] = str(a.threads)  # read when TVM's thread pool starts
    from recom_tvm.backend.cpu import llvm_mcpu
    from recom_tvm.models import zoo

    batches = [int(b) for b in a.batches.split(",")]
    load = os.getloadavg()[0]
    res = {"date": time.strftime("%Y-%m-%d"), "machine": _cpu_name(), "cores": os.cpu_count(),
           "python": platform.python_version(), "llvm_mcpu": llvm_mcpu() or "generic", "repeat": a.repeat,
           "threads": a.threads or os.cpu_count(), "load_average_start": round(load, 2), "models": {}}
    for name in a.models.split(","):
        factory, args = MODELS[name]
        spec = getattr(zoo, factory)(*args)
        print(f"== {name}: {len(spec.columns)} columns", flush=True)
        mlp = mlp_alone(spec, batches, a.repeat, a.max_seconds, a.threads)
        res["models"][name] = {"columns": len(spec.columns), "mlp_alone": mlp}
        if not a.mlp_only:
            res["models"][name]["whole_model"] = whole_model(spec, batches, a.repeat, mlp, a.threads)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=1)
    res["load_average_end"] = round(os.getloadavg()[0], 2)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


def _cpu_name() -> str:
    from device_info import cpu_name

    return cpu_name() or platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
