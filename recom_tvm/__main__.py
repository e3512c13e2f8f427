"""Command line: `python -m recom_tvm demo | ops | import MODEL | tune MODEL | export MODEL --triton REPO`."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _gpu_available() -> bool:
    try:
        import tvm

        return bool(tvm.cuda(0).exist)
    except Exception:  # noqa: BLE001 - no CUDA runtime / driver
        return False


def _median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def demo(args) -> int:
    """Import the built-in demo model, optimize it, build it (CUDA if a GPU is present, else llvm), run,
    compare with TF, and report what the passes did and how fast it runs."""
    from . import build, config, from_tensorflow, optimize, report
    from .frontend.graph import Graph
    from .models import tf_export, zoo
    from .passes import identify_columns

    config.verbose = config.verbose or args.verbose
    spec = zoo.demo()
    print(f"== recom_tvm demo: model {spec.name!r}, {len(spec.columns)} columns "
          f"({', '.join(sorted({c.kind for c in spec.columns}))}), concat width {spec.concat_width}")
    t0 = time.perf_counter()
    paths = tf_export.export(spec)
    print(f"TF model (SavedModel + frozen .pb): {paths['root']}  [{time.perf_counter() - t0:.1f}s]")
    t0 = time.perf_counter()
    mod, params, ispec = from_tensorflow(paths["pb"], signature=paths["signature"])
    t_import = time.perf_counter() - t0
    with open(paths["pb"], "rb") as f:
        graph = Graph.from_bytes(f.read())
    t0 = time.perf_counter()
    opt = optimize(mod)
    t_opt = time.perf_counter() - t0
    print(f"imported in {t_import:.2f}s, optimized in {t_opt:.2f}s; {len(ispec.host_plan)} string ops run in the "
          "host stage")
    print(f"  {'':22s} {'ops':>6s} {'kernels':>8s} {'syncs':>6s}")
    print(f"  {'TensorFlow graph':22s} {sum(report.tf_op_counts(graph).values()):6d} {'':>8s} {'':>6s}")
    for tag, m in (("imported (passes off)", mod), ("optimized", opt)):
        print(f"  {tag:22s} {sum(report.relax_op_counts(m).values()):6d} {report.kernel_launches(m):8d} "
              f"{report.device_syncs(m):6d}")
    print("columns after the passes:")
    for col in identify_columns(opt):
        print(f"  {col.name:26s} {col.kind:22s} -> {col.op.replace('recom.', '')} ({col.combiner})")
    fused = [f for f in (opt.attrs["recom_tvm.facts"] if "recom_tvm.facts" in opt.attrs else []) if "fused" in str(f)]
    for fact in fused:
        print(f"fusion: {fact}")
    target = args.target or ("cuda" if _gpu_available() else "llvm")
    t0 = time.perf_counter()
    model = build(opt, target=target, params=params)
    print(f"built for {target} in {time.perf_counter() - t0:.2f}s; fused kernel schedule (recom_tvm.tune finds a "
          f"better one per batch bucket): {model.kernel_schedules[0][1] if model.kernel_schedules else '-'}")
    ref = tf_export.TFReference(spec, paths)
    worst = 0.0
    for batch, hostile in ((1, False), (7, True), (args.batch, False), (args.batch, True)):
        feeds = spec.sample(batch, rng=batch + hostile, hostile=hostile)
        got = model.run(feeds)["score"]
        exp = ref(feeds)
        err = float(np.abs(got - exp).max())
        worst = max(worst, err)
        print(f"  batch {batch:4d}{' (hostile inputs)' if hostile else '':17s} max |recom_tvm - TF| = {err:.2e}")
    ok = worst < 1e-4
    print(f"matches TensorFlow: {'yes' if ok else 'NO'} (tolerance 1e-4)")
    feeds = spec.sample(args.batch, rng=123)
    tf_feeds = tf_export.to_tf_feeds(spec, feeds)
    t_tf = _median_ms(lambda: ref.run_tf(tf_feeds), args.repeat)
    t_rt = _median_ms(lambda: model.run(feeds), args.repeat)
    raw = build(mod, target=target, params=params)
    t_raw = _median_ms(lambda: raw.run(feeds), args.repeat)
    print(f"latency at batch {args.batch} (median of {args.repeat}): TF-CPU {t_tf:.2f} ms; recom_tvm ({target}) "
          f"passes off {t_raw:.2f} ms, optimized {t_rt:.2f} ms -> {t_tf / t_rt:.2f}x TF-CPU")
    return 0 if ok else 1


def ops(_args) -> int:
    from . import supported_ops

    for group, names in supported_ops().items():
        print(f"{group} ({len(names)}): {', '.join(names)}")
    return 0


def import_model(args) -> int:
    from . import from_tensorflow

    mod, params, spec = from_tensorflow(args.model, signature=args.signature)
    print(spec.summary())
    if args.show:
        mod.show()
    return 0


def _optimized_model(model: str, signature: str | None):
    """An optimized module from a model path, or `zoo:NAME[:N]` (a built-in model, exported with TF)."""
    from . import optimize

    mod, _params, _spec = _imported(model, signature)
    return optimize(mod)


def _imported(model: str, signature: str | None):
    """from_tensorflow of a model path, or of `zoo:NAME[:N]` (a built-in model, exported with TF first)."""
    from . import from_tensorflow

    if model.startswith("zoo:"):
        from .models import tf_export, zoo

        name, *rest = model[4:].split(":")
        factory = getattr(zoo, name, None)
        if factory is None or name.startswith("_"):
            raise SystemExit(f"no built-in model {name!r} (demo, mixed:N, model_e:ROWS, model_f:ROWS, ...)")
        paths = tf_export.export(factory(*[int(x) for x in rest]))
        model, signature = paths["pb"], paths["signature"]
    return from_tensorflow(model, signature=signature)


def tune_cmd(args) -> int:
    """Tune the model's fused embedding kernel (MetaSchedule + XGBoost), locally, through an RPC tracker, or in
    offline rounds for GPU nodes this host cannot reach."""
    try:
        return _tune(args)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        if args.verbose:
            raise
        print(f"recom-tvm tune: error: {err}", file=sys.stderr)
        return 2


def _tune(args) -> int:
    from . import config
    from .runtime.synthetic import Distribution
    from .schedules import offline
    from .schedules.tune import say, summarize, tune

    config.verbose = config.verbose or args.verbose
    batches = tuple(int(b) for b in args.batches.split(","))
    dist = Distribution(zipf=args.zipf)
    mod = _optimized_model(args.model, args.signature)
    kw = dict(batches=batches, seed=args.seed, dist=dist)
    if args.offline_export:
        path = offline.export_round(mod, args.target, args.work_dir, args.offline_export, per_task=args.trials, **kw)
        say(f"round written: {path}; measure it on the GPU node with\n"
            f"    python -m recom_tvm.runtime.measure {args.offline_export}\n"
            f"then: recom-tvm tune {args.model} --work-dir {args.work_dir} --offline-import "
            f"{args.offline_export}/results.json")
        return 0
    if args.offline_import:
        best = offline.import_round(mod, args.target, args.work_dir, args.offline_import, **kw)
        from .schedules.tasks import extract_tasks
        from .schedules.tune import format_row

        for row in summarize(args.work_dir, extract_tasks(mod, args.target, **kw))["tasks"]:
            say(format_row(row))
        return 0 if best else 1
    if args.runner == "rpc":
        from .schedules import rpc_runner

        if not args.tracker or not args.key:
            raise SystemExit("--runner rpc needs --tracker HOST:PORT and --key KEY")
        runner = rpc_runner(args.work_dir, args.tracker, args.key, max_workers=args.workers)
    else:
        runner = "local"
    tune(mod, args.target, args.work_dir, args.trials, runner=runner, **kw)
    return 0


def export_cmd(args) -> int:
    """Compile a model (or take an exported library) and write a Triton model repository and / or a library."""
    import os

    from .serving.repository import export_triton

    if not args.triton and not args.library:
        raise SystemExit("recom-tvm export: give --triton REPO and / or --library PATH.so")
    if args.model.endswith(".so") and os.path.exists(args.model + ".spec.json"):
        model = args.model  # already exported: no compiler needed
    else:
        from . import build, optimize

        mod, params, _ = _imported(args.model, args.signature)
        model = build(optimize(mod), target=args.target, params=params)
        if args.library:
            model.export_library(args.library)
            print(f"library: {args.library} (+ .spec.json, .params.npz)")
    if args.triton:
        name = args.name or _default_name(args.model)
        path = export_triton(model, args.triton, name, max_batch_requests=args.max_batch_requests,
                             preferred_batch_sizes=tuple(int(x) for x in args.preferred_batch_sizes.split(",")),
                             max_queue_delay_us=args.queue_delay_us, instances=args.instances,
                             gpus=[int(g) for g in args.gpus.split(",")] if args.gpus else None,
                             merge_requests=not args.no_merge)
        print(f"Triton model repository: {args.triton} (model {name!r} in {path}); serve it with\n"
              f"    tritonserver --model-repository {args.triton}")
    return 0


def _default_name(model: str) -> str:
    import os
    import re

    base = model[4:].split(":")[0] if model.startswith("zoo:") else os.path.basename(model.rstrip("/"))
    return re.sub(r"\W", "_", base.rsplit(".", 1)[0] if base.endswith((".so", ".pb")) else base) or "recom_tvm"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="recom-tvm", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="import, build, run and check the built-in demo model")
    d.add_argument("--target", choices=["llvm", "cuda"], default=None, help="default: cuda if a GPU is present")
    d.add_argument("--batch", type=int, default=256)
    d.add_argument("--repeat", type=int, default=20)
    d.add_argument("-v", "--verbose", action="store_true")
    d.set_defaults(fn=demo)
    o = sub.add_parser("ops", help="list the TF ops the importer accepts")
    o.set_defaults(fn=ops)
    i = sub.add_parser("import", help="import a model and print its serving spec")
    i.add_argument("model")
    i.add_argument("--signature", default=None)
    i.add_argument("--show", action="store_true", help="print the Relax module")
    i.set_defaults(fn=import_model)
    t = sub.add_parser("tune", help="tune the fused embedding kernel of a model (MetaSchedule, XGBoost)")
    t.add_argument("model", help="frozen .pb, SavedModel dir, or zoo:NAME[:N] (a built-in model)")
    t.add_argument("--signature", default=None)
    t.add_argument("--target", default="cuda", choices=["cuda", "llvm"])
    t.add_argument("--work-dir", default="recom_tvm_tuning", help="database, trial log, measurement inputs")
    t.add_argument("--trials", type=int, default=64, help="candidates per batch size (per round, offline)")
    t.add_argument("--batches", default="32,256,2048", help="representative batch sizes (one task each)")
    t.add_argument("--runner", default="local", choices=["local", "rpc"])
    t.add_argument("--tracker", default=None, help="HOST:PORT of the TVM RPC tracker (--runner rpc)")
    t.add_argument("--key", default=None, help="device key the GPU nodes registered with (--runner rpc)")
    t.add_argument("--workers", type=int, default=1, help="candidates measured at once (--runner rpc)")
    t.add_argument("--offline-export", metavar="DIR", default=None,
                   help="write the next round's candidates to DIR for a GPU node this host cannot reach")
    t.add_argument("--offline-import", metavar="RESULTS", default=None,
                   help="commit a measured round (DIR/results.json) to the database")
    t.add_argument("--zipf", type=float, default=0.0, help="synthetic ids: Zipf exponent (0: uniform)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("-v", "--verbose", action="store_true")
    t.set_defaults(fn=tune_cmd)
    e = sub.add_parser("export", help="compile a model and write a Triton model repository (and / or a library)")
    e.add_argument("model", help="frozen .pb, SavedModel dir, zoo:NAME[:N], or a library from export_library (.so)")
    e.add_argument("--triton", metavar="REPO", default=None, help="write a Triton model repository here")
    e.add_argument("--library", metavar="PATH.so", default=None, help="also write the exported library here")
    e.add_argument("--name", default=None, help="model name in the repository (default: from MODEL)")
    e.add_argument("--signature", default=None)
    e.add_argument("--target", default="llvm", choices=["llvm", "cuda"])
    e.add_argument("--instances", type=int, default=None,
                   help="model instances per GPU (cuda, default 2) or in all (llvm, default 1)")
    e.add_argument("--gpus", default=None, help="comma-separated GPU ids for the instances (default: all)")
    e.add_argument("--max-batch-requests", type=int, default=16, help="requests the dynamic batcher groups")
    e.add_argument("--preferred-batch-sizes", default="4,8", help="in requests")
    e.add_argument("--queue-delay-us", type=int, default=1000, help="longest wait for a preferred batch")
    e.add_argument("--no-merge", action="store_true",
                   help="run the requests of a dynamic batch one by one (models whose rows interact)")
    e.set_defaults(fn=export_cmd)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
