"""String hashing on the device (config.device_hash) against the host hash, on the GPU and on this host.

    # build host (TensorFlow + compiler): CUDA libraries of each model with the device hash on and off, the hash
    # kernel alone, feeds (random unicode / bytes of every length class of the hash) and TF's outputs
    python benchmarks/gpu_device_hash.py prepare --dir .device/backlog/hash/dh [--corpus NAME,...]
    # GPU machine (TVM runtime, numpy only):
    python benchmarks/gpu_device_hash.py run --dir .device/backlog/hash/dh --out $OUT
    # this host (llvm): prepare() and run() with the device hash (knob on) vs the host hash
    python benchmarks/gpu_device_hash.py host --models mixed100 --out benchmarks/results

Per model and batch (1, 32, 2048), the GPU run checks that the device-hash build answers exactly as the host-hash
build (every output, bit for bit) and as TF; that the hash kernel alone, on the packed input the runtime's own
prepare() wrote, leaves every column's words exactly as the host-hash build packs them (bit-exact ids); and times
prepare() and run() both ways (median of repeated calls, one thread).
"""

from __future__ import annotations

import glob
import os
import random
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gpu_common import cli, write_json  # noqa: E402

BATCHES = (1, 32, 2048)
ZOO = ("demo", "mixed100", "weighted_mix", "example_mix")  # example_mix: serialized tf.Examples
# corpus graphs with hash-bucket columns of string feeds (prepare --corpus to change)
CORPUS = ("tf1_wide_split_strings", "tf2_dense_features_frozen", "tf1_estimator_mix")


def _zoo_spec(name: str):
    from recom_tvm.models import zoo

    return {"demo": zoo.demo, "mixed100": lambda: zoo.mixed(100), "weighted_mix": zoo.weighted_mix,
            "example_mix": zoo.example_mix}[name]()


def _strings(seed: int, n: int = 4000) -> list[bytes]:
    """Random unicode (UTF-8) over every length class of the hash and random bytes of its boundary lengths."""
    rng = random.Random(seed)
    pools = [(0x20, 0x7E), (0xA0, 0x24F), (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0x1F300, 0x1FAFF)]
    out = []
    for _ in range(n):
        size = rng.choice([0, rng.randint(1, 3), rng.randint(4, 7), rng.randint(8, 16), rng.randint(17, 32),
                           rng.randint(33, 64), rng.randint(65, 300)])
        text = ""
        while len(text.encode()) < size:
            lo, hi = rng.choice(pools)
            text += chr(rng.randint(lo, hi))
        out.append(text.encode())
    for size in (0, 1, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129):
        out.append(bytes(rng.randrange(256) for _ in range(size)))
    return out


def _unicode_feeds(spec, batch: int, seed: int, pool: list[bytes] | None) -> dict:
    """spec's sample with its string feeds' values drawn from `pool` (a dense feed's "" stays missing); pool None:
    the sample as it is (the zoo's short vocabulary strings)."""
    rng = random.Random(seed)
    feeds = spec.sample(batch, rng=seed)
    if pool is None:
        return feeds
    for c in spec.columns:
        if not getattr(c, "strings", False) or c.name not in feeds:
            continue
        f = feeds[c.name]
        if isinstance(f, tuple):
            vals = np.empty(len(f[1]), dtype=object)
            vals[:] = [rng.choice(pool) for _ in range(len(f[1]))]
            feeds[c.name] = (f[0], vals, f[2])
        else:
            out = f.copy()
            for idx in zip(*np.nonzero(f != "")):
                out[idx] = rng.choice([s for s in pool if s] or [b"x"])
            feeds[c.name] = out
    return feeds


def _models(corpus: tuple[str, ...], strings: str = "unicode"):
    """(name, imported mod, params, feeds(batch, seed), TF reference(feeds) -> {output: array}); strings: the zoo
    models' string values, "unicode" (every length class, _strings) or "sample" (their own vocabulary)."""
    import recom_tvm
    from recom_tvm.models import tf_export

    pool = _strings(7) if strings == "unicode" else None
    for name in ZOO:
        spec = _zoo_spec(name)
        paths = tf_export.export(spec)
        mod, params, _ = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"])
        ref = tf_export.TFReference(spec, paths)
        yield name, mod, params, (lambda b, s, spec=spec: _unicode_feeds(spec, b, s, pool)), \
            (lambda f, ref=ref: {"score": ref(f)})
    if corpus:
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        from corpus import ENTRIES, harness

        for name in corpus:
            entry = ENTRIES[name]
            mod, params, _ = harness.imported(entry)
            yield f"corpus-{name}", mod, params, \
                (lambda b, s, entry=entry: entry.feeds(np.random.default_rng(s), b, False)), harness.reference(entry)


def prepare(out_dir: str, arch: str, corpus: tuple[str, ...], target: str = "cuda", strings: str = "unicode",
            suffix: str = "") -> None:
    import tvm

    import recom_tvm
    from recom_tvm import config
    from recom_tvm.models import feeds_io
    from recom_tvm.ops.fingerprint_tir import hash_packed_func

    config.cuda_arch = arch
    os.makedirs(out_dir, exist_ok=True)
    for name, mod, params, feeds_of, ref in _models(corpus, strings):
        name += suffix
        t0 = time.perf_counter()
        opt = recom_tvm.optimize(mod)
        built = {}
        for mode in ("on", "off"):
            config.device_hash = mode
            built[mode] = recom_tvm.build(opt, target, params)
            built[mode].export_library(os.path.join(out_dir, f"{name}.{mode}.so"))
        config.device_hash = "auto"
        fused = built["on"].spec.fused
        hashed = fused["device_hash"]
        if not hashed:
            print(f"{name}: no column to hash on the device (left out)", flush=True)
            for mode in ("on", "off"):
                for p in glob.glob(os.path.join(out_dir, f"{name}.{mode}.so*")):
                    os.unlink(p)
            continue
        kernel = hash_packed_func(target, len(hashed), 2 * len(fused["columns"]), fused["packed_dtype"])
        tgt = recom_tvm.build_module.make_target(target)
        with tgt:
            lib = tvm.compile(tvm.IRModule({"main": kernel.with_attr("global_symbol", "main")}), target=tgt)
        lib.export_library(os.path.join(out_dir, f"{name}.kernel.so"))
        for i, batch in enumerate(BATCHES):
            feeds = feeds_of(batch, 100 + i)
            exp = ref(feeds)
            feeds_io.save(os.path.join(out_dir, f"{name}__{batch}.npz"), feeds,
                          **{f"expected:{k}": v for k, v in exp.items()})
        print(f"{name}: {len(hashed)} of {len(fused['columns'])} columns hashed on the device, built for "
              f"{arch if target == 'cuda' else target} and sampled in {time.perf_counter() - t0:.1f}s", flush=True)


def _median_ms(fn, n: int) -> float:
    fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1e3


def _packed(model, args) -> tuple[np.ndarray, list]:
    """(the packed input, the sizes) among prepare()'s arguments."""
    names = [i["name"] for i in model.spec.module_inputs if i["source"] != "param"]
    packed = np.asarray(args[names.index("recom_tvm_packed")])
    return packed, [int(v) for v in args[names.index("recom_tvm_packed_sizes")]]


def check_ids(on, off, kernel, feeds, dev) -> tuple[bool, int, int]:
    """The hash kernel on the device-hash build's packed input: every column's words then equal the host-hash
    build's (header shifted by the region) -> (ok, strings, bytes of strings)."""
    import tvm

    from recom_tvm.runtime.fused_layout import segment_text

    p_on, (batch, n) = _packed(on, on.prepare(feeds))
    p_off, _ = _packed(off, off.prepare(feeds))
    fused = on.spec.fused
    c = len(fused["columns"])
    nbt = np.array([h["num_buckets"] for h in fused["device_hash"]], np.int64)
    text = np.array([segment_text(h) for h in fused["device_hash"]], np.int64)  # decimal segments: AsString ints
    buf = tvm.runtime.tensor(p_on, dev)
    kernel["main"](buf, tvm.runtime.tensor(nbt, dev), tvm.runtime.tensor(text, dev), n)
    got = buf.numpy()
    region = int(p_on[0]) - int(p_off[0])
    ok = bool(np.array_equal(got[:c] - region, p_off[:c]) and np.array_equal(got[c:2 * c], p_off[c:2 * c])
              and np.array_equal(got[int(got[0]):], p_off[int(p_off[0]):]))
    s = len(fused["device_hash"])
    nbytes = int(p_on[2 * c + 2 * s + 1 + n]) if n else 0
    return ok, n, nbytes


def run(in_dir: str, out_dir: str | None, target: str = "cuda") -> int:
    import tvm

    from device_info import gpu_name, machine
    from recom_tvm.models import feeds_io
    from recom_tvm.runtime import load

    dev = tvm.cuda(0) if target == "cuda" else tvm.cpu(0)
    rows, failures = [], 0
    print(f"{'model':26s} {'B':>5s} {'strings':>8s} {'bytes':>8s} {'same':>5s} {'ids':>4s} {'TF err':>8s} "
          f"{'prep dev':>9s} {'prep host':>9s} {'run dev':>8s} {'run host':>8s}  (ms; dev: device hash)")
    for lib in sorted(glob.glob(os.path.join(in_dir, "*.on.so"))):
        name = os.path.basename(lib)[:-len(".on.so")]
        on, off = load(lib), load(os.path.join(in_dir, f"{name}.off.so"))
        kernel = tvm.runtime.load_module(os.path.join(in_dir, f"{name}.kernel.so"))
        for batch in BATCHES:
            path = os.path.join(in_dir, f"{name}__{batch}.npz")
            if not os.path.exists(path):
                continue
            feeds, extra = feeds_io.load(path)
            got_on, got_off = on.run(feeds), off.run(feeds)
            same = set(got_on) == set(got_off) and all(
                np.asarray(got_on[k]).tobytes() == np.asarray(got_off[k]).tobytes() for k in got_on)
            err = 0.0
            for key, exp in extra.items():
                if key.startswith("expected:"):
                    g = np.asarray(got_on[key.split(":", 1)[1]], np.float64)
                    err = max(err, float(np.abs(g - exp).max()) if exp.size else 0.0)
            ids_ok, n, nbytes = check_ids(on, off, kernel, feeds, dev)
            reps = 20 if batch >= 1024 else 200
            t = {"prepare_device_hash_ms": _median_ms(lambda: on.prepare(feeds), reps),
                 "prepare_host_hash_ms": _median_ms(lambda: off.prepare(feeds), reps),
                 "run_device_hash_ms": _median_ms(lambda: on.run(feeds), reps),
                 "run_host_hash_ms": _median_ms(lambda: off.run(feeds), reps)}
            ok = same and ids_ok and err < 1e-4
            failures += not ok
            rows.append({"model": name, "batch": batch, "strings": n, "string_bytes": nbytes, "same_outputs": same,
                         "ids_bit_exact": ids_ok, "max_abs_err_vs_tf": err, "ok": ok, **t,
                         "native_refusals": [on.native_host().refusals if on.native_host() else None,
                                             off.native_host().refusals if off.native_host() else None]})
            print(f"{name:26s} {batch:5d} {n:8d} {nbytes:8d} {str(same):>5s} {str(ids_ok):>4s} {err:8.1e} "
                  f"{t['prepare_device_hash_ms']:9.3f} {t['prepare_host_hash_ms']:9.3f} "
                  f"{t['run_device_hash_ms']:8.3f} {t['run_host_hash_ms']:8.3f}", flush=True)
    device = gpu_name() if target == "cuda" else machine()
    print(f"\ndevice: {device}; {len(rows) - failures}/{len(rows)} cases: device hash == host hash == TF")
    if out_dir:
        write_json(out_dir, "gpu_device_hash.json" if target == "cuda" else "device_hash_host.json",
                   {"device": device, "date": time.strftime("%Y-%m-%d"), "target": target, "rows": rows})
    return 1 if failures or not rows else 0


def host(models: tuple[str, ...], out_dir: str | None) -> int:
    """This host, llvm: prepare() / run() with the device hash (knob on: the TIR hash on the CPU) vs the host hash,
    on the models' own vocabulary strings (name.sample) and on random unicode of every length class."""
    import tempfile

    global ZOO
    ZOO = models
    with tempfile.TemporaryDirectory() as d:
        prepare(d, "sm_90", (), target="llvm", strings="sample", suffix=".sample")
        prepare(d, "sm_90", (), target="llvm", strings="unicode", suffix=".unicode")
        return run(d, out_dir, target="llvm")


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv and argv[0] == "host":
        import argparse

        hp = argparse.ArgumentParser()
        hp.add_argument("mode")
        hp.add_argument("--models", default="mixed100")
        hp.add_argument("--out", default=None)
        a = hp.parse_args(argv)
        sys.exit(host(tuple(a.models.split(",")), a.out))
    p = cli(__doc__, ".device/backlog/hash/dh")
    p.add_argument("--corpus", default=",".join(CORPUS), help="corpus entries with string hash columns ('' none)")
    p.add_argument("--target", default="cuda", help="llvm: a dry run of the device side on the build host")
    a = p.parse_args(argv)
    if a.mode == "prepare":
        prepare(a.dir, a.arch, tuple(x for x in a.corpus.split(",") if x), target=a.target)
        sys.exit(0)
    sys.exit(run(a.dir, a.out, target=a.target))
