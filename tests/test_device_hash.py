"""String hashing on the device (config.device_hash, recom_tvm.passes.device_hash): hash-bucket columns of string
feeds ship their strings in the packed input and one TIR kernel writes the ids the fused kernel reads; hash-bucket
columns of integer feeds (AsString) ship the integers and the kernel makes their decimal text. On llvm with the
knob on: TF's answers (embedding stage and score) on random unicode and random bytes of every length class of
the hash, integers of every digit count and sign (int64 extremes, int8 / int32 feeds), sparse, dense and weighted
feeds, empty rows, a model mixing device-hashed and unhashed columns, int32 and int64 packing; bit-identical with
the host-hash build; both host paths write the same bytes (the suite's run() hook); the pass's structure; the
region's layout and limits; a runtime-only load."""

from __future__ import annotations

import random
import textwrap

import numpy as np
import pytest
import tvm

import recom_tvm
from recom_tvm import config
from recom_tvm.models.spec import ColumnSpec, ModelSpec
from recom_tvm.models import zoo
from recom_tvm.ops.fingerprint_tir import hash_packed_func
from recom_tvm.passes._util import spec_of
from recom_tvm.passes.device_hash import DeviceHash, device_hash_on
from recom_tvm.runtime import packer
from recom_tvm.runtime.fingerprint import hash_bucket_fast
from recom_tvm.runtime.fingerprint import DecimalStrings
from recom_tvm.runtime.fused_layout import HASH_PAD, TEXT_BYTES, TEXT_DECIMAL, hash_region_words
from recom_tvm.shapes.symbolic import const_array

from conftest import assert_host_paths_agree, assert_matches_tf, outcome, run_runtime_only
from test_fingerprint_tir import strings_of_every_class
from test_runtime_only import BLOCK_IMPORTS

# device-hashed: sparse (empty rows), dense (GatherNd of the non-empty entries), weighted, one id per row, AsString
# of integers (decimal text made on the device); unhashed: identity, numeric
HASH_MIX = ModelSpec("device_hash_mix", (
    ColumnSpec("s", "hash_string", 8, "mean", buckets=97, ids_per_row=(0, 5), vocab=300),
    ColumnSpec("d", "hash_string", 4, "sum", buckets=1000, input="dense", ids_per_row=(1, 3), vocab=300),
    ColumnSpec("w", "hash_string", 8, "sqrtn", buckets=50, ids_per_row=(0, 4), weighted=True),
    ColumnSpec("o", "hash_string", 4, "mean", buckets=7, vocab=50),
    ColumnSpec("u", "hash_int", 4, "mean", buckets=100, vocab=1000),
    ColumnSpec("i", "identity", 4, "sum", buckets=20, vocab=20),
    ColumnSpec("x", "numeric", 2),
), dense_width=2, bottom_mlp=(4,), top_mlp=(8,), seed=3)
STRINGS = strings_of_every_class(seed=5)
# integers of every decimal length and both signs, the int64 extremes, powers of ten and their neighbours
INTS = sorted({0, 1, -1, 9, -9, (1 << 63) - 1, -(1 << 63), -(1 << 63) + 1,
               *[s * (10 ** k + d) for k in range(1, 19) for d in (-1, 0, 1) for s in (1, -1)]})


def _build(mod, params, mode: str, packed_dtype: str = "auto"):
    old = config.device_hash, config.packed_dtype
    config.device_hash, config.packed_dtype = mode, packed_dtype
    try:
        return recom_tvm.build(recom_tvm.optimize(mod) if packed_dtype != "auto" else mod, "llvm", params)
    finally:
        config.device_hash, config.packed_dtype = old


def unicode_feeds(spec: ModelSpec, batch: int, seed: int) -> dict:
    """spec's hostile sample with every string replaced by one of STRINGS (random unicode, random bytes of every
    length class, the empty string included; a dense feed's "" stays missing)."""
    rng = random.Random(seed)
    feeds = spec.sample(batch, rng=seed, hostile=True)
    for c in spec.columns:
        if c.kind == "hash_int":  # integers of every decimal length (AsString's text) instead
            f = feeds[c.name]
            vals = np.array([rng.choice(INTS) for _ in range(np.size(f[1] if isinstance(f, tuple) else f))],
                            np.int64)
            feeds[c.name] = (f[0], vals, f[2]) if isinstance(f, tuple) else vals.reshape(f.shape)
            continue
        if not c.strings:
            continue
        f = feeds[c.name]
        if isinstance(f, tuple):
            vals = np.empty(len(f[1]), dtype=object)
            vals[:] = [rng.choice(STRINGS) for _ in range(len(f[1]))]
            feeds[c.name] = (f[0], vals, f[2])
        else:
            out = f.copy()
            for idx in zip(*np.nonzero(f != "")):
                out[idx] = rng.choice(STRINGS)
            feeds[c.name] = out
    return feeds


@pytest.fixture(scope="module")
def hash_mix(compiled):
    """HASH_MIX optimized, built with the device hash (int32 packing, as auto picks, and int64) and without."""
    c = compiled(HASH_MIX, optimized=True)
    imported = c.variants["imported"][0]
    on32, off = _build(c.mod, c.params, "on"), _build(c.mod, c.params, "off")
    on64 = _build(imported, c.params, "on", "int64")
    assert on32.spec.fused["packed_dtype"] == "int32" and on64.spec.fused["packed_dtype"] == "int64"
    return c, {"on32": on32, "on64": on64, "off": off}


def test_device_hash_choice():
    assert device_hash_on("auto", "cuda") and not device_hash_on("auto", "llvm")
    assert device_hash_on("on", "llvm") and not device_hash_on("off", "cuda")
    with pytest.raises(ValueError, match="device_hash"):
        device_hash_on("gpu", "cuda")


def test_device_hash_matches_tf(hash_mix):
    """Every column's embedding (the embedding stage) and the score as TF computes them, and the same bytes as
    the host-hash build, on both packed dtypes; batches with empty rows, one row, none."""
    c, models = hash_mix
    hashed = {c.variants["optimized"][2].spec.fused["columns"][h["column"]]["name"]
              for h in models["on32"].spec.fused["device_hash"]}
    assert hashed == {"s_embedding", "d_embedding", "w_weighted_by_w_weight_embedding", "o_embedding",
                      "u_embedding"}, hashed
    assert [h.get("text") for h in models["on32"].spec.fused["device_hash"]
            if h["strings"].endswith("AsString:0")] == ["decimal"]
    assert models["off"].spec.fused["device_hash"] == []
    for batch, seed in ((37, 1), (1, 2), (8, 3), (0, 4)):
        feeds = unicode_feeds(HASH_MIX, batch, seed)
        exp, exp_emb = c.ref(feeds), c.tf_embedding(feeds)
        ref = models["off"].run(feeds)
        for name in ("on32", "on64"):
            got = models[name].run(feeds)
            assert_matches_tf(got["embedding"], exp_emb, f"{name} B={batch}: embedding stage")
            assert_matches_tf(got["score"], exp, f"{name} B={batch}: score")
            for k in ref:
                assert got[k].tobytes() == ref[k].tobytes(), (name, batch, k)
        if batch:  # a keyed-jagged request (strings as bytes + offsets, read in place by the native stage)
            kjt = recom_tvm.KeyedJagged.from_feeds(models["on32"].spec, feeds)
            assert models["on32"].run(kjt)["score"].tobytes() == ref["score"].tobytes()


def test_every_length_class_reaches_the_kernel(hash_mix):
    """A batch holding every string of STRINGS (every length class, exact boundaries) in the sparse column: the
    ids the device writes select TF's rows (embedding stage)."""
    c, models = hash_mix
    n = len(STRINGS)
    feeds = HASH_MIX.sample(n, rng=9)
    feeds["s"] = (np.stack([np.arange(n), np.zeros(n, np.int64)], 1), np.array(STRINGS, dtype=object),
                  np.array([n, 1], np.int64))
    got = models["on32"].run(feeds)
    assert_matches_tf(got["embedding"], c.tf_embedding(feeds), "every length class: embedding stage")


def test_packing_edge_cases_agree_with_the_reference(hash_mix):
    """The native writer's fast paths against the numpy packer, bit for bit, on both packed dtypes: CSR offsets of
    sorted rows with empty rows first, last and between (the row ends the feed check keeps); rows past the batch
    (a dense_shape larger than the batch: TF's concat rejects it, and both host paths raise the same error); rows
    out of order (sorted first: the check's row ends do not apply to the sorted copy); a dense_shape of 2^40
    columns; a sparse feed without ids; a dense
    string feed with every entry missing, none missing and one column missing (Where / GatherNd of the non-empty
    entries); strings of every length the short copy splits at (0-3, 4-7, 8-16, 17+), the short ones copied 16
    bytes at a time except within 16 bytes of their column's end. Each request's outcome is
    TF's (answer or error class) as well."""
    c, models = hash_mix
    batch = 9
    base = HASH_MIX.sample(batch, rng=21)
    words = np.array([("x" * n) for n in (0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 40)], dtype=object)
    rows = np.array([2, 2, 2, 4, 5, 5, 8, 8, 8, 8, 8, 8], np.int64)
    cols = np.concatenate([np.arange(3), [0], np.arange(2), np.arange(6)]).astype(np.int64)
    cases = {
        "empty rows first, between, last": (np.stack([rows, cols], 1), words, np.array([batch, 6], np.int64)),
        "rows past the batch": (np.stack([np.r_[rows[:-2], 10, 11], cols], 1), words,
                                np.array([batch + 3, 6], np.int64)),
        "no ids": (np.zeros((0, 2), np.int64), np.array([], dtype=object), np.array([batch, 1], np.int64)),
        "rows out of order": (np.stack([rows[::-1], cols], 1), words, np.array([batch, 6], np.int64)),
        "a dense_shape far wider than the ids": (np.stack([rows, cols], 1), words,
                                                 np.array([batch, 1 << 40], np.int64)),
    }
    dense = base["d"]
    dense_cases = {"every entry missing": np.full(dense.shape, "", dtype=object),
                   "none missing": np.array([[f"w{i}{j}" * (i + 1) for j in range(dense.shape[1])]
                                             for i in range(batch)], dtype=object),
                   "one column missing": np.where(np.arange(dense.shape[1]) == 1, "", dense).astype(object)}
    requests = {what: dict(base, s=f) for what, f in cases.items()}
    requests.update({what: dict(base, d=f) for what, f in dense_cases.items()})
    for what, feeds in requests.items():
        exp = outcome(lambda: c.ref(feeds))
        assert isinstance(exp, BaseException) == (what == "rows past the batch"), (what, exp)
        for name in ("on32", "on64", "off"):
            assert_host_paths_agree(models[name], feeds)
            assert_matches_tf(outcome(lambda: models[name].run(feeds)["score"]), exp, f"{name}: {what}")


def test_pass_structure(compiled):
    """DeviceHash on the demo: one hash_strings call in front of the fused kernel reading the packed input, the
    sizes argument [B, strings], the host plan without its three hashes (the two strings' and user_id's of its
    AsString, which stays and is the decimal segment's source); off: main unchanged; a second application changes
    nothing."""
    c = compiled(zoo.demo(), optimized=True)
    before = c.mod
    on = DeviceHash("llvm", "on")(before)
    main = on["main"]
    calls = []

    def visit(e):
        if isinstance(e, tvm.relax.Call) and isinstance(e.op, tvm.ir.Op) and e.op.name.startswith("recom."):
            calls.append(e)

    tvm.relax.analysis.post_order_visit(main.body, visit)
    ops = [e.op.name for e in calls]
    assert ops.count("recom.hash_strings") == 1 and ops.count("recom.fused_embedding") == 1, ops
    hs = next(e for e in calls if e.op.name == "recom.hash_strings")
    fused = next(e for e in calls if e.op.name == "recom.fused_embedding")
    packed = next(p for p in main.params if p.name == "recom_tvm_packed")
    sizes = next(p for p in main.params if p.name == "recom_tvm_packed_sizes")
    assert hs.args[0].same_as(packed)
    spec = spec_of(on)
    assert const_array(hs.args[1]).tolist() == [h["num_buckets"] for h in spec.fused["device_hash"]]
    assert int(hs.args[3].value) == 2 * len(spec.fused["columns"])  # the region follows the header
    assert const_array(hs.args[4]).tolist() == [TEXT_DECIMAL if h.get("text") == "decimal" else TEXT_BYTES
                                                for h in spec.fused["device_hash"]]
    (var,) = [b.var for blk in main.body.blocks for b in blk.bindings if b.value.same_as(hs)]
    assert fused.args[0].same_as(var)  # the fused kernel reads the hashed packed input
    assert [str(v) for v in sizes.ty.values] == ["B_age", "recom_tvm_hash_strings"]
    assert [i["shape"] for i in spec.module_inputs if i["name"] == "recom_tvm_packed_sizes"] == \
        [["B_age", "recom_tvm_hash_strings"]]
    assert not [n for n in spec.host_plan if n["op"] == "StringToHashBucketFast"]
    (as_string,) = [n for n in spec.host_plan if n["op"] == "AsString"]
    texts = {h["strings"]: h.get("text", "bytes") for h in spec.fused["device_hash"]}
    assert sorted(texts.values()) == ["bytes", "bytes", "decimal"] and texts[as_string["outputs"][0]] == "decimal"
    for h in spec.fused["device_hash"]:
        col = spec.fused["columns"][h["column"]]
        assert col["tensors"]["ids"] == h["strings"]
        assert h.get("text") == "decimal" or spec.placeholders[h["strings"]]["dtype"] == "string"
    off = DeviceHash("llvm", "off")(before)
    tvm.ir.assert_structural_equal(off["main"], before["main"])
    assert spec_of(off).fused["device_hash"] == []
    tvm.ir.assert_structural_equal(DeviceHash("llvm", "on")(on)["main"], main)
    tvm.ir.assert_structural_equal(DeviceHash("cuda", "on")(off)["main"], before["main"])  # decided: kept


def _hashed_fused(dtype: str) -> tuple[dict, dict]:
    cols = [{"kind": "csr", "tensors": {"indices": "i", "ids": "sv"}, "name": "a"},
            {"kind": "one", "tensors": {"ids": "o"}, "name": "b"},
            {"kind": "dense", "tensors": {"x": "sd"}, "name": "c"},
            {"kind": "csr", "tensors": {"indices": "i2", "ids": "v2"}, "name": "d"}]
    long = b"y" * 500  # (more bytes than packed words: the int32 limit test)
    env = {"i": np.array([[0, 0], [0, 1], [2, 0]]), "sv": np.array([STRINGS[0], STRINGS[1], b""], dtype=object),
           "o": np.array([3, 4, 5]), "sd": np.array([[STRINGS[2], long], [STRINGS[4], b"x"], [b"", b""]],
                                                    dtype=object),
           "i2": np.zeros((0, 2), np.int64), "v2": np.zeros(0, dtype=object)}
    fused = {"columns": cols, "packed_dtype": dtype, "device_hash": [
        {"column": 0, "strings": "sv", "num_buckets": 10}, {"column": 2, "strings": "sd", "num_buckets": 2**30},
        {"column": 3, "strings": "v2", "num_buckets": 3}]}
    return fused, env


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_region_layout_and_kernel(dtype):
    """packer.pack's device-hash region as fused_layout describes it, and the TIR kernel (llvm) writing exactly
    the host hash's ids there, leaving every other word as it was."""
    fused, env = _hashed_fused(dtype)
    batch, ncols = 3, 4
    p = packer.pack(fused, env, batch)
    word = np.dtype(dtype).itemsize
    strings = list(env["sv"]) + list(env["sd"].reshape(-1))
    nbytes = sum(len(s) for s in strings)
    region = hash_region_words(3, len(strings), nbytes, word)
    assert region == 2 * 3 + 2 + 9 + -(-nbytes // word) + HASH_PAD
    r = 2 * ncols
    assert p[0] == r + region  # the first column's data after the region
    np.testing.assert_array_equal(p[r:r + 4], [0, 3, 9, 9])  # first strings per segment, then n
    np.testing.assert_array_equal(p[r + 4:r + 7], [p[0] + batch + 1, p[2], p[3] + batch + 1])  # where ids go
    offsets = p[r + 7:r + 17]
    np.testing.assert_array_equal(offsets, np.cumsum([0] + [len(s) for s in strings]))
    raw = p[r + 17:r + region].view(np.uint8)
    assert raw[:nbytes].tobytes() == b"".join(strings) and not raw[nbytes:].any()
    ids_at = [(p[r + 4], 3), (p[r + 5], 6)]
    assert all(not p[a:a + n].any() for a, n in ids_at)  # zero until the device writes them
    kernel = tvm.compile(tvm.IRModule({"main": hash_packed_func("llvm", 3, r, dtype).with_attr(
        "global_symbol", "main")}), target="llvm")
    buf = tvm.runtime.tensor(p)
    kernel["main"](buf, tvm.runtime.tensor(np.array([10, 2**30, 3], np.int64)),
                   tvm.runtime.tensor(np.zeros(3, np.int64)), len(strings))
    out = buf.numpy()
    expect = p.copy()
    expect[ids_at[0][0]:ids_at[0][0] + 3] = hash_bucket_fast(env["sv"], 10)
    expect[ids_at[1][0]:ids_at[1][0] + 6] = hash_bucket_fast(env["sd"], 2**30).reshape(-1)
    np.testing.assert_array_equal(out, expect)


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_decimal_segments(dtype):
    """AsString of integers hashed on the device (fused_layout.TEXT_DECIMAL): packer.pack ships each value's 8
    bytes (offsets stepping by 8) between segments of ordinary strings, and the TIR kernel (llvm) writes TF's ids
    of the values' decimal text, every digit count and sign and the int64 extremes included; int32 and int8
    integers (AsString of a narrower type) ship widened."""
    ints = np.array(INTS, np.int64)
    narrow = np.array([[-128, 127, 0], [5, -7, 100]], np.int8)
    cols = [{"kind": "one", "tensors": {"ids": "n"}, "name": "a"},
            {"kind": "csr", "tensors": {"indices": "i", "ids": "sv"}, "name": "b"},
            {"kind": "dense", "tensors": {"x": "k"}, "name": "c"},
            {"kind": "one", "tensors": {"ids": "m"}, "name": "d"}]
    env = {"n": DecimalStrings(ints), "i": np.array([[0, 0], [1, 0]]),
           "sv": np.array([STRINGS[3], b"x"], dtype=object), "k": DecimalStrings(narrow),
           "m": DecimalStrings(np.array([2**31 - 1, -2**31, 0], np.int32))}
    fused = {"columns": cols, "packed_dtype": dtype, "device_hash": [
        {"column": 0, "strings": "n", "num_buckets": 2**40 + 3 if dtype == "int64" else 1000, "text": "decimal"},
        {"column": 1, "strings": "sv", "num_buckets": 77},
        {"column": 2, "strings": "k", "num_buckets": 13, "text": "decimal"},
        {"column": 3, "strings": "m", "num_buckets": 2**31 - 1, "text": "decimal"}]}
    batch = 3
    p = packer.pack(fused, env, batch)
    n = ints.size + 2 + narrow.size + 3
    assert packer.hash_strings_count(fused, env) == n
    r, S = 2 * len(cols), 4
    offsets = p[r + 2 * S + 1:r + 2 * S + 2 + n]
    lens = [8] * ints.size + [len(STRINGS[3]), 1] + [8] * (narrow.size + 3)
    np.testing.assert_array_equal(offsets, np.cumsum([0] + lens))
    raw = p[r + 2 * S + 2 + n:p[0]].view(np.uint8)
    assert raw[:ints.size * 8].tobytes() == ints.astype("<i8").tobytes()  # the values, as they are
    assert raw[offsets[-4]:offsets[-1]].tobytes() == np.array([2**31 - 1, -2**31, 0], "<i8").tobytes()
    kernel = tvm.compile(tvm.IRModule({"main": hash_packed_func("llvm", S, r, dtype).with_attr(
        "global_symbol", "main")}), target="llvm")
    buf = tvm.runtime.tensor(p)
    nbt = np.array([h["num_buckets"] for h in fused["device_hash"]], np.int64)
    kernel["main"](buf, tvm.runtime.tensor(nbt), tvm.runtime.tensor(np.array([1, 0, 1, 1], np.int64)), n)
    out = buf.numpy()

    def text(v):
        return np.array([str(int(x)).encode() for x in np.asarray(v).reshape(-1)], dtype=object)

    expect = {p[0]: hash_bucket_fast(text(ints), int(nbt[0])), p[1] + batch + 1: hash_bucket_fast(env["sv"], 77),
              p[2]: hash_bucket_fast(text(narrow), 13), p[3]: hash_bucket_fast(text(env["m"].ints), 2**31 - 1)}
    for at, ids in expect.items():
        np.testing.assert_array_equal(out[at:at + ids.size], ids)
    # every other word as packed (the ids' words were 0)
    mask = np.ones(p.size, bool)
    for at, ids in expect.items():
        mask[at:at + ids.size] = False
        assert not p[at:at + ids.size].any()
    np.testing.assert_array_equal(out[mask], p[mask])


def test_int32_limit_counts_the_bytes(monkeypatch):
    """The int32 layout refuses a request whose strings' bytes would not fit its offsets (RequestTooLargeError
    naming the column and its feed), as it refuses a packed length past the limit."""
    fused, env = _hashed_fused("int32")
    size = packer.pack(fused, env, 3).size
    nbytes = sum(len(s) for s in list(env["sv"]) + list(env["sd"].reshape(-1)))
    assert nbytes > size
    monkeypatch.setattr(packer, "PACKED_INT32_LIMIT", nbytes)
    packer.pack(fused, env, 3)
    monkeypatch.setattr(packer, "PACKED_INT32_LIMIT", size - 1)
    with pytest.raises(recom_tvm.RequestTooLargeError, match=f"{size} int32 words, above the int32 layout's limit"):
        packer.pack(fused, env, 3)
    monkeypatch.setattr(packer, "PACKED_INT32_LIMIT", size)  # the words fit, the byte offsets do not
    with pytest.raises(recom_tvm.RequestTooLargeError, match=rf"{nbytes} bytes of strings.*'c', fed from 'sd'"):
        packer.pack(fused, env, 3)


def test_exported_device_hash_model_runs_runtime_only(hash_mix, tmp_path):
    """A device-hash export loads with the TVM runtime only and packs as it was built (spec.fused records the
    choice); an export from before the knob (no "device_hash" in its spec) hashes on the host as it did."""
    import json

    c, models = hash_mix
    lib = str(tmp_path / "mix.so")
    models["on32"].export_library(lib)
    old = str(tmp_path / "old.so")
    models["off"].export_library(old)
    with open(old + ".spec.json") as f:
        meta = json.load(f)
    del meta["spec"]["fused"]["device_hash"]
    with open(old + ".spec.json", "w") as f:
        json.dump(meta, f)
    feeds = unicode_feeds(HASH_MIX, 19, 7)
    np.save(tmp_path / "exp.npy", c.ref(feeds))
    assert recom_tvm.load(old).run(feeds)["score"].tobytes() == models["off"].run(feeds)["score"].tobytes()
    import pickle

    with open(tmp_path / "feeds.pkl", "wb") as f:
        pickle.dump(feeds, f)
    script = BLOCK_IMPORTS + textwrap.dedent(f"""
        import pickle
        import numpy as np
        from recom_tvm.runtime import load
        model = load({lib!r})
        assert [h["column"] for h in model.spec.fused["device_hash"]], model.spec.fused
        with open({str(tmp_path / 'feeds.pkl')!r}, "rb") as f:
            feeds = pickle.load(f)
        got = model.run(feeds)["score"]
        np.testing.assert_allclose(got, np.load({str(tmp_path / 'exp.npy')!r}), rtol=1e-5, atol=2e-5)
        native = model.native_host()
        assert native is not None and native.refusals == 0, (model.native_error, native and native.last_refusal)
        args, ref = model.prepare(feeds), model.prepare_reference(feeds)
        assert all(np.asarray(a).tobytes() == np.asarray(b).tobytes() for a, b in zip(args, ref))
        loaded = [m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in blocked)]
        assert not loaded, loaded
        print("OK runtime-only")
    """)
    res = run_runtime_only("-c", script)
    assert res.returncode == 0 and "OK runtime-only" in res.stdout, res.stdout[-2000:] + res.stderr[-3000:]


def test_cuda_build_launches_the_hash_before_the_graph(compiled):
    """CUDA (auto: on): the hash kernel is compiled into the library and, with CUDA graphs on, launched before
    the captured part (it reads the request's own packed input)."""
    from recom_tvm.cuda_support import nvcc_path

    if nvcc_path() is None:
        pytest.skip("nvcc (CUDA toolkit) is not installed on this host")
    c = compiled(zoo.demo(), optimized=True)
    old = config.cuda_graph
    config.cuda_graph = True
    try:
        model = recom_tvm.build(c.mod, "cuda", c.params)
    finally:
        config.cuda_graph = old
    assert [h["num_buckets"] for h in model.spec.fused["device_hash"]] == [100, 500, 1000]  # country, tags, user_id
    text = model.executable.as_text()
    main = text[text.index("@main:"):]
    main = main[:main.index("\n@", 1)] if "\n@" in main[1:] else main
    assert "recom_hash_strings" in main and "main_cuda_graph" in main, main[:2000]
    graph = text[text.index("@main_cuda_graph:"):]
    graph = graph[:graph.index("@main_cuda_graph_cuda_graph_capture")] if \
        "@main_cuda_graph_cuda_graph_capture:" in graph else graph
    assert graph.index("recom_hash_strings") < graph.index("run_or_capture"), graph[:3000]


def test_corpus_graph_with_hash_columns():
    """A user-written graph (tests/corpus: DenseFeatures over hash-bucket columns of string feeds) built with the
    device hash: TF's outputs at every batch of the entry, ordinary and hostile."""
    from corpus import ENTRIES, harness
    from test_corpus import _compare

    entry = ENTRIES["tf2_dense_features_frozen"]
    mod, params, _ = harness.imported(entry)
    model = _build(recom_tvm.optimize(mod), params, "on")
    assert model.spec.fused["device_hash"]
    for i, batch in enumerate(entry.batches):
        for hostile in (False, True):
            _compare(entry, model, batch, hostile, seed=1000 * i + hostile)


def test_tf_example_string_features(compiled):
    """Serialized tf.Examples (ParseExampleV2 in the host stage): a string feature's values parsed from the
    examples are shipped to the device hash as they are (the hashed column `country`; `genre`'s vocabulary OOV
    hash and the cross stay on the host): TF's embedding stage and score, the host-hash build's bytes."""
    c = compiled(zoo.example_mix(), optimized=True)
    on = _build(c.mod, c.params, "on")
    names = [c.model.spec.fused["columns"][h["column"]]["name"] for h in on.spec.fused["device_hash"]]
    assert names == ["country_embedding"], names
    for batch in (1, 7, 300):
        for hostile in (False, True):
            feeds = zoo.example_mix().sample(batch, rng=batch + hostile, hostile=hostile)
            got, exp = outcome(lambda: on.run(feeds)), c.ref(feeds)
            if isinstance(got, dict):
                assert_matches_tf(got["embedding"], c.tf_embedding(feeds), f"B={batch}: embedding stage")
                assert got["score"].tobytes() == c.model.run(feeds)["score"].tobytes()
                got = got["score"]
            assert_matches_tf(got, exp, f"B={batch} hostile={hostile}")


def test_integer_feeds_of_every_width():
    """A tf.function hashing integer feeds as TF's hash-bucket columns do (to_hash_bucket_fast(as_string(x))): an
    int32 id per row (a plain gather), int8 ids [B, 2] and an int64 SparseTensor (a bag with empty rows): the fused
    columns' hashes move to the device as decimal segments, and the embedding stage and score are TF's on extreme
    values of each width, imported and optimized builds alike."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    t_a, t_b, t_c = (tf.constant(rng.normal(size=(n, d)).astype(np.float32)) for n, d in ((50, 4), (7, 2), (97, 3)))

    def hashed(x, n):
        return tf.strings.to_hash_bucket_fast(tf.strings.as_string(x), n)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, 2], tf.int8),
                                  tf.SparseTensorSpec([None, None], tf.int64)])
    def serve(a, b, c):
        ea = tf.gather(t_a, hashed(a, 50))
        eb = tf.reshape(tf.gather(t_b, hashed(b, 7)), [-1, 4])
        ids = tf.SparseTensor(c.indices, hashed(c.values, 97), c.dense_shape)
        ec = tf.nn.safe_embedding_lookup_sparse(t_c, ids, combiner="sum")
        e = tf.concat([ea, eb, ec], axis=1)
        return {"embedding": e, "score": tf.reduce_sum(e * e, axis=1, keepdims=True)}

    cf = serve.get_concrete_function()
    mod, params, _ = recom_tvm.from_tensorflow(cf)
    for name, m in (("imported", mod), ("optimized", recom_tvm.optimize(mod))):
        model = _build(m, params, "on")
        if name == "optimized":
            # the int32 gather and the int64 bag are fused columns (the int8 gather + reshape is computed beside
            # the kernel, its hash on the host)
            texts = {h["num_buckets"]: h.get("text") for h in model.spec.fused["device_hash"]}
            assert texts == {50: "decimal", 97: "decimal"}, model.spec.fused["device_hash"]
        for batch, seed in ((1, 0), (9, 1), (64, 2), (0, 3)):
            r = np.random.default_rng(seed)
            a = r.choice([0, 1, -1, 9, 10, -10, 2**31 - 1, -2**31, 123456, -99999], batch).astype(np.int32)
            b = r.choice([0, -128, 127, 5, -7, 99, 100], (batch, 2)).astype(np.int8)
            counts = r.integers(0, 4, batch)
            rows = np.repeat(np.arange(batch), counts)
            cols = np.concatenate([np.arange(k) for k in counts]) if counts.sum() else np.zeros(0, np.int64)
            vals = r.choice(INTS, len(rows)).astype(np.int64)
            idx = np.stack([rows, cols], 1).astype(np.int64).reshape(-1, 2)
            shape = np.array([batch, max(int(counts.max()) if batch else 1, 1)], np.int64)
            exp = cf(tf.constant(a), tf.constant(b), tf.SparseTensor(idx, vals, shape))
            got = model.run({"a": a, "b": b, "c": (idx, vals, shape)})
            for k in ("embedding", "score"):
                assert_matches_tf(got[k], exp[k].numpy(), f"{name} B={batch}: {k}")


def test_a_native_library_older_than_the_segments_is_refused(hash_mix):
    """A host library without decimal segments (DEVICE_HASH 1) would ship AsString integers as strings: refused for
    a model that has them; one without the device hash at all (no DEVICE_HASH) for any device-hashing model."""
    from recom_tvm.runtime.native import NativeHost

    _, models = hash_mix
    lib = models["on32"].native_host().lib

    class OldLibrary:  # the same functions, with an older (or no) DEVICE_HASH marker
        def __init__(self, level):
            self.level = level

        def __getattr__(self, name):
            if name == "DEVICE_HASH":
                if self.level is None:
                    raise AttributeError(name)
                return self.level
            return getattr(lib, name)

    with pytest.raises(ValueError, match="hashes AsString of integers on the device .* predates it"):
        NativeHost(OldLibrary(1), models["on32"].spec)
    with pytest.raises(ValueError, match="hashes AsString of integers on the device .* predates it"):
        NativeHost(OldLibrary(None), models["on32"].spec)
    assert NativeHost(OldLibrary(None), models["off"].spec).program.module_args  # no device hash: still used
