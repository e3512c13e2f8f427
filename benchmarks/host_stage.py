"""Where the host side of a request goes: CompiledModel.prepare() split into its steps (runtime only).

    python benchmarks/host_stage.py --lib .device/gpu_models/e_emb.so --spec model_e [--batches 32,256,2048]

Steps of the numpy reference: normalize (validate + convert feeds), sort (rows of unsorted sparse feeds), host
(the host-stage plan: string hashing ...), bind+pack (symbolic sizes; the fused kernel's one input buffer), assert
(host-checked facts); then the native host stage's own steps (ingest, feed checks, sort, host ops,
checks+bind+layout, write) and prepare() whole (native where the library carries it). Best of N per step, fresh
inputs per repetition; --profile adds cProfile's top entries.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def step_times(model, feeds_list: list, reduce=np.min, with_prepare: bool = True) -> dict[str, float]:
    """prepare()'s steps in ms, `reduce`d over the feeds (best of N by default); + the sum and prepare() whole."""
    from recom_tvm.runtime.assertions import check_all
    from recom_tvm.runtime.feeds import check_ids, normalize_feeds, sort_rows
    from recom_tvm.runtime.host_stage import run_host_stage

    s = model.spec
    acc: dict[str, list[float]] = {}
    for feeds in feeds_list:
        t = [time.perf_counter()]
        env = normalize_feeds(s, feeds)
        t.append(time.perf_counter())
        for name in s.sort_rows:
            sort_rows(s.feature(name), env, s.sort_with.get(name, ()), s.feed_of)
        t.append(time.perf_counter())
        env = run_host_stage(s.host_plan, env) if s.host_plan else env
        for c in s.id_checks:
            check_ids(c, env[c["tensor"]], env[c["where_positive"]] if "where_positive" in c else None)
        t.append(time.perf_counter())
        _, bound = model.arguments(env)
        t.append(time.perf_counter())
        if s.assertions:
            check_all(s.assertions, {k: v for k, (v, _) in bound.items()})
        t.append(time.perf_counter())
        for i, k in enumerate(("normalize", "sort", "host", "bind+pack", "assert")):
            acc.setdefault(k, []).append(1e3 * (t[i + 1] - t[i]))
    out = {k: float(reduce(v)) for k, v in acc.items()}
    out["sum"] = sum(out.values())
    if with_prepare:
        out["prepare"] = min(_once(model.prepare, f) for f in feeds_list)
    return out


def _once(fn, x) -> float:
    t0 = time.perf_counter()
    fn(x)
    return 1e3 * (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lib", required=True)
    p.add_argument("--spec", required=True, help="a recom_tvm.models.zoo function, e.g. model_e")
    p.add_argument("--rows", type=int, default=None, help="large-table rows of the spec (model_e / model_f)")
    p.add_argument("--batches", default="32,256,2048")
    p.add_argument("--reps", type=int, default=8)
    p.add_argument("--profile", type=int, default=0, help="cProfile prepare() at this batch")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    from recom_tvm.models import zoo
    from recom_tvm.runtime import load

    fn = getattr(zoo, a.spec)
    spec = fn(a.rows) if a.rows else fn()
    model = load(a.lib)
    rows = {}
    for batch in (int(b) for b in a.batches.split(",")):
        feeds = [spec.sample(batch, rng=1000 + i) for i in range(a.reps)]
        model.prepare(feeds[0])  # warm the per-model caches
        rows[batch] = step_times(model, feeds)
        print(f"B={batch:5d} numpy reference: " + " ".join(f"{k} {v:.2f}" for k, v in rows[batch].items()) +
              f" (ms, best of {a.reps}; prepare = the native host stage where the model has it)", flush=True)
        native = model.native_host()
        if native is not None:  # its own steps (ms, best of N)
            best = {}
            for f in feeds:
                model.prepare(f)
                for k, v in native.timings(model._prepare_ctx.ctx).items():
                    best[k] = min(best.get(k, v), v)
            rows[batch]["native_steps"] = best
            print(f"B={batch:5d} native: " + " ".join(f"{k} {v:.3f}" for k, v in best.items()), flush=True)
    if a.profile:
        import cProfile
        import pstats

        feeds = [spec.sample(a.profile, rng=i) for i in range(4)]
        prof = cProfile.Profile()
        prof.enable()
        for f in feeds:
            model.prepare(f)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"lib": a.lib, "spec": a.spec, "steps_ms": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
