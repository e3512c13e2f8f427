"""Per-kernel device time and repeat-determinism of a model prepared by request_path_gpu.py (GPU, runtime only).

    python benchmarks/request_kernels_gpu.py DIR [DIR ...]    # each DIR: `request_path_gpu.py prepare --dir DIR`

For each folder: one B = 32 request run 20 times and the 16 carried B = 32 requests, every answer against the
build host's (native host stage, then the numpy reference host stage, then native again: a wrong answer that
follows the staging path or the kernels shows which); then per carried batch, 5 requests under torch.profiler
(CUPTI sees every kernel of the process, TVM's included): the kernels ranked by device time per request.
Used to split E's request-path kernel time (BENCHMARKS.md, "The request path on the GPU, first run") between the
fused kernel, the hash kernel and the dense tail: prepare the folders with RECOM_TVM_DENSE_TAIL=off /
RECOM_TVM_DEVICE_HASH=off to compare (`gpu_backlog.sh prepare kernels`).
"""

from __future__ import annotations

import json
import os
import pickle
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from request_path_gpu import _close, generated_params  # noqa: E402


def check_and_profile(d: str) -> dict:
    from recom_tvm import config
    from recom_tvm.runtime import load

    meta = json.load(open(next(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".meta.json"))))
    model = load(os.path.join(d, meta["lib"]))
    carried = os.path.join(d, f"{meta['model']}.carried.npz")
    model.set_params(generated_params(model.param_shapes(), dict(np.load(carried)) if os.path.exists(carried) else {}))
    with open(os.path.join(d, f"{meta['model']}.requests.pkl"), "rb") as f:
        req = pickle.load(f)
    feeds, exp = req["threads"][0]
    out = {"folder": d, "repeat_err": [_close(model.run(feeds), exp)[1] for _ in range(20)]}
    for stage in ("native", "numpy", "native_again"):
        config.host_stage = "numpy" if stage == "numpy" else "native"
        out[f"bad_{stage}"] = sum(not _close(model.run(f), e)[0] for f, e in req["threads"])
    config.host_stage = "native"
    try:
        import torch
        from torch.profiler import ProfilerActivity, profile
    except ImportError:  # the build host's dry run
        return out
    out["kernels"] = {}
    for b, (f, e) in sorted(req["batch"].items()):
        for _ in range(3):
            model.run(f)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                model.run(f)
            torch.cuda.synchronize()
        rows: dict = {}
        for ev in prof.events():
            if ev.device_type.name == "CUDA":
                r = rows.setdefault(ev.name[:60], [0, 0.0])
                r[0] += 1
                r[1] += getattr(ev, "device_time", 0.0) / 5
        out["kernels"][b] = {"ok": bool(_close(model.run(f), e)[0]),
                             "top_us": sorted(([n, c // 5, round(t, 1)] for n, (c, t) in rows.items()),
                                              key=lambda x: -x[2])[:10]}
    return out


def main() -> int:
    results = [check_and_profile(d) for d in sys.argv[1:]]
    for r in results:
        print(f"{r['folder']}: B=32 request x20 max err {max(r['repeat_err']):.1e}; 16 requests wrong: native "
              f"{r['bad_native']}, numpy host stage {r['bad_numpy']}, native again {r['bad_native_again']}")
        for b, k in r.get("kernels", {}).items():
            print(f"  B={b} ok={k['ok']}: " + "; ".join(f"{n} x{c} {t:.0f}us" for n, c, t in k["top_us"][:6]))
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "request_kernels_gpu.json"), "w") as f:
            json.dump(results, f, indent=1)
    return int(any(r["bad_native"] or r["bad_numpy"] for r in results))


if __name__ == "__main__":
    sys.exit(main())
