"""CUDA correctness of the corpus (tests/corpus/: graphs built the ways users build them), imported and optimized
(one fused embedding kernel), every output compared with TensorFlow's (the embedding stage included).

    # host (TensorFlow + compiler): CUDA libraries, feeds at B = 1, 7, 512 (ordinary + hostile), TF's outputs
    python benchmarks/gpu_corpus.py prepare --dir .device/gpu_corpus
    # GPU machine (runtime only; ../shared/device/stage_runtime.sh):
    python benchmarks/gpu_corpus.py run --dir .device/gpu_corpus --out $OUT
    # the run side checked on a CPU: prepare --target llvm --dir /tmp/c, then run --dir /tmp/c
    # CUDA graphs (config.cuda_graph, opt-in): only the libraries that replay graphs, every case run twice (the
    # second pass replays the graphs the first one captured, checks included)
    python benchmarks/gpu_corpus.py prepare --cuda-graph --dir .device/gpu_corpus_graphs
    python benchmarks/gpu_corpus.py run --passes 2 --dir .device/gpu_corpus_graphs --out $OUT

Where TF raises, the case records the error class recom_tvm must raise (InvalidArgumentError for TF's run-time
errors, FeedError for feeds TF refuses before running).
"""

from __future__ import annotations

import glob
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from device_info import gpu_name  # noqa: E402
from gpu_common import cli, report_cases  # noqa: E402

PREFIX = "corpus-"


def expected_error_class(err: Exception) -> str:
    """The recom_tvm error TF's exception corresponds to."""
    import tensorflow as tf

    return "InvalidArgumentError" if isinstance(err, tf.errors.OpError) else "FeedError"


def prepare(out_dir: str, arch: str, only: list[str] | None = None, target: str = "cuda",
            cuda_graph: bool = False) -> None:
    """cuda_graph: build with CUDA graphs and keep only the libraries that replay them (the others are the
    graph-less builds the default run covers)."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    os.environ["RECOM_TVM_HOST_FALLBACK"] = "0"
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # TF's own kernels as the reference (tests/conftest.py)
    import recom_tvm
    from corpus import ENTRIES, harness
    from recom_tvm.models import feeds_io

    recom_tvm.config.cuda_arch = arch
    recom_tvm.config.host_fallback = False
    if cuda_graph:
        recom_tvm.config.cuda_graph = True
    os.makedirs(out_dir, exist_ok=True)
    for name in sorted(ENTRIES):
        if only and name not in only:
            continue
        entry = ENTRIES[name]
        t0 = time.perf_counter()
        mod, params, _ = harness.imported(entry)
        kept = 0
        for suffix, variant in (("", mod), (".opt", None)):
            lib = os.path.join(out_dir, f"{PREFIX}{name}{suffix}.so")
            try:
                built = recom_tvm.build(variant if variant is not None else recom_tvm.optimize(mod), target, params)
                if cuda_graph and not replays_graphs(built.executable):
                    print(f"{name}{suffix}: no CUDA graph in this build (left out)", flush=True)
                    continue
                built.export_library(lib)
            except Exception as err:  # noqa: BLE001 - a graph that does not build for the target is a failed case
                with open(lib + ".build_error", "w") as f:
                    f.write(f"{type(err).__name__}: {str(err).strip().splitlines()[-1][:300]}")
                print(f"{name}{suffix}: BUILD FAILED for {target}: {type(err).__name__}", flush=True)
            kept += 1
        if not kept:
            continue
        ref = harness.reference(entry)
        for i, batch in enumerate(entry.batches):
            for hostile in (False, True):
                feeds = entry.feeds(np.random.default_rng(1000 * i + hostile), batch, hostile)
                path = os.path.join(out_dir, f"{PREFIX}{name}__{batch}_{int(hostile)}.npz")
                try:
                    exp = ref(feeds)
                except Exception as err:  # noqa: BLE001 - TF's error: ours must be of the matching class
                    feeds_io.save(path, feeds, expect_error=np.array(expected_error_class(err)))
                    continue
                feeds_io.save(path, feeds, **{f"expected:{k}": v for k, v in exp.items()})
        print(f"{name}: built for {target if target != 'cuda' else arch} and sampled in {time.perf_counter() - t0:.1f}s", flush=True)


def replays_graphs(executable) -> bool | None:
    """Whether the VM code launches CUDA graphs: a built executable, or a loaded library (runtime only); None if
    its VM code cannot be printed."""
    try:
        text = executable.as_text() if hasattr(executable, "as_text") else \
            executable["vm_load_executable"]()["as_text"]()
    except Exception:  # noqa: BLE001 - a library without a printable VM executable
        return None
    return "vm.builtin.cuda_graph.run_or_capture" in text


def compare(model, feeds: dict, extra: dict, tol: float = 1e-4) -> tuple[bool, float | None, str]:
    """(ok, max abs error, note) of one case: every expected output, or the expected error class."""
    from recom_tvm import RecomError

    if "expect_error" in extra:
        want = str(extra["expect_error"])
        try:
            model.run(feeds)
            return False, None, f"no error raised (TF raised; expected {want})"
        except RecomError as e:
            return type(e).__name__ == want or want in [c.__name__ for c in type(e).__mro__], None, \
                f"{type(e).__name__}: {str(e)[:100]}"
    got = model.run(feeds)
    worst, notes = 0.0, []
    for key, exp in extra.items():
        if not key.startswith("expected:"):
            continue
        out = key.split(":", 1)[1]
        g = got.get(out)
        if g is None or g.shape != exp.shape:
            notes.append(f"{out}: shape {None if g is None else g.shape} vs TF {exp.shape}")
            continue
        finite = np.isfinite(exp)
        if not np.array_equal(np.isfinite(g), finite) or not np.array_equal(np.isnan(g), np.isnan(exp)):
            notes.append(f"{out}: non-finite values differ from TF's")
        if finite.any():
            worst = max(worst, float(np.abs(g[finite] - exp[finite]).max()))
    return not notes and worst < tol, worst, "; ".join(notes)


def run(in_dir: str, out_dir: str | None, passes: int = 1) -> int:
    """passes > 1: every model's cases again (case `<case>@<pass>`), on the same VM: the later passes replay
    what the first captured (CUDA graphs are keyed by batch size)."""
    from recom_tvm.models import feeds_io
    from recom_tvm.runtime import load

    device_name = gpu_name()
    rows = []
    for err_file in sorted(glob.glob(os.path.join(in_dir, f"{PREFIX}*.so.build_error"))):
        with open(err_file) as f:
            rows.append({"model": os.path.basename(err_file)[:-len(".so.build_error")], "case": "build",
                         "max_abs_err": None, "ok": False, "note": "build failed on the host: " + f.read()})
        print(f"{rows[-1]['model']}: {rows[-1]['note'][:150]}", flush=True)
    for lib in sorted(p for p in glob.glob(os.path.join(in_dir, f"{PREFIX}*.so")) if not p.endswith(".host.so")):
        name = os.path.basename(lib)[:-3]
        base = name.split(".")[0]
        model = load(lib)
        graphs = replays_graphs(model.executable)
        for p in range(1, passes + 1):
            for case in sorted(glob.glob(os.path.join(in_dir, f"{base}__*.npz"))):
                feeds, extra = feeds_io.load(case)
                try:
                    ok, err, note = compare(model, feeds, extra)
                except Exception as e:  # noqa: BLE001 - a crash is a failed case, reported
                    ok, err, note = False, None, f"{type(e).__name__}: {str(e)[:100]}"
                rows.append({"model": name, "case": os.path.basename(case)[len(base) + 2:-4] + (f"@{p}" if p > 1
                                                                                                 else ""),
                             "max_abs_err": err, "ok": ok, "note": note, "cuda_graph": graphs,
                             "one_call": model.one_call})
        n = [r for r in rows if r["model"] == name]
        why = f": {model.serve_error}" if getattr(model, "serve_error", None) else ""
        print(f"{name}: {sum(r['ok'] for r in n)}/{len(n)} cases ok (CUDA graphs: {graphs}; run() in one native "
              f"call: {model.one_call}{why})", flush=True)
    for r in rows:
        if not r["ok"]:
            print(f"FAILED {r['model']} {r['case']}: {r['note']}")
    return report_cases(rows, device_name, "corpus cases", out_dir, "gpu_corpus.json")


def main() -> int:
    p = cli(__doc__, ".device/gpu_corpus")
    p.add_argument("--only", nargs="*", default=None)
    p.add_argument("--target", default="cuda", choices=["cuda", "llvm"],
                   help="llvm: the same cases on this host's CPU (checks the run side without a GPU)")
    p.add_argument("--cuda-graph", action="store_true",
                   help="prepare: build with CUDA graphs (config.cuda_graph) and keep only the libraries that use them")
    p.add_argument("--passes", type=int, default=1,
                   help="run: run every model's cases this many times (passes after the first replay CUDA graphs)")
    a = p.parse_args()
    if a.mode == "prepare":
        prepare(a.dir, a.arch, a.only, a.target, a.cuda_graph)
        return 0
    return run(a.dir, a.out, a.passes)


if __name__ == "__main__":
    sys.exit(main())
