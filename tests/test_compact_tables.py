"""Compact tables (fp16 / bf16 / int8 rows, `recom_tvm.build(..., table_dtype=...)`): the encodings against
independent references, the fused kernel against a numpy reference of the quantized model (exact up to float
summation order) and within a stated tolerance of TensorFlow, per-table overrides, set_params / export / load
(runtime only), and the memory report with its out-of-memory check."""

from __future__ import annotations

import json
import textwrap

import ml_dtypes
import numpy as np
import pytest
import tvm

import recom_tvm
from recom_tvm.models import reference, tf_export, zoo
from recom_tvm.models.resize import embedding_output
from recom_tvm.passes import identify_columns
from recom_tvm.passes.compact_tables import fused_meta
from recom_tvm.runtime import compact
from recom_tvm.runtime.fused_layout import META

from conftest import run_runtime_only
from test_runtime_only import BLOCK_IMPORTS

DTYPES = ("float16", "bfloat16", "int8")
MIXED = zoo.mixed(24, seed=3)  # every column kind and input format, dims 1..16
DEMO = zoo.demo()
TABLES = "recom_tvm_fused_tables"
# Stated tolerance against TensorFlow's score (max abs error, sigmoid outputs) on the zoo models; the measured
# errors (benchmarks/BENCHMARKS.md, "Compact tables": zoo models, 2026-12-05) sit 3.5-5x below these.
SCORE_ATOL = {"float32": 2e-5, "float16": 5e-4, "bfloat16": 5e-3, "int8": 5e-3}


# ------------------------------------------------------------------------------------------------ encodings
def _fbgemm_rowwise(t: np.ndarray):
    """FBGEMM's FloatToFused8BitRowwiseQuantized, row by row (the independent reference)."""
    q = np.zeros(t.shape, np.uint8)
    scale, bias = np.zeros(len(t), np.float32), np.zeros(len(t), np.float32)
    for r, row in enumerate(t.astype(np.float32)):
        lo, hi = np.float32(row.min()), np.float32(row.max())
        rng = np.float32(hi - lo)
        scale[r], bias[r] = np.float32(rng / np.float32(255.0)), lo
        inv = np.float32(np.float32(255.0) / np.float32(rng + np.float32(1e-8)))
        q[r] = [int(np.rint(np.float32((x - lo) * inv))) for x in row]
    return q, scale, bias


@pytest.mark.parametrize("dim", [1, 3, 4, 7, 8, 9, 16, 17, 32, 40])
def test_encodings_match_independent_references(dim):
    rng = np.random.default_rng(dim)
    t = (rng.standard_normal((37, dim)) * rng.choice([1e-3, 1.0, 50.0], (37, 1))).astype(np.float32)
    t[0] = 0.0  # a zero row (int8: scale 0)
    t[1, 0] = -2.5e-40  # a float32 denormal (bfloat16 keeps it)
    for dtype in ("float32",) + DTYPES:
        words = compact.encode(t, dtype, "t")
        # rows start 16-byte aligned and hold whole 16-byte units; the kernel's lanes never read past a row
        assert words.shape == (37, compact.row_words(dtype, dim)) and words.shape[1] % 4 == 0
        assert 4 * words.shape[1] >= {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}[dtype] * \
            (-(-dim // 8) * 8 if dtype != "float32" else -(-dim // 4) * 4)
        got = compact.decode(words, dtype, dim)
        if dtype == "float32":
            np.testing.assert_array_equal(got, t)
        elif dtype == "float16":
            np.testing.assert_array_equal(got, t.astype(np.float16).astype(np.float32))
        elif dtype == "bfloat16":
            np.testing.assert_array_equal(got, t.astype(ml_dtypes.bfloat16).astype(np.float32))
        else:
            q, scale, bias = _fbgemm_rowwise(t)
            raw = words.view(np.uint8)
            np.testing.assert_array_equal(raw[:, :dim], q)
            qp = raw[:, 4 * compact.qparams_word(dim):4 * compact.qparams_word(dim) + 8].copy().view(np.float32)
            np.testing.assert_array_equal(qp[:, 0], scale)
            np.testing.assert_array_equal(qp[:, 1], bias)
            np.testing.assert_array_equal(got, q.astype(np.float32) * scale[:, None] + bias[:, None])
            assert np.all(np.abs(got - t) <= scale[:, None] * 0.5 + 1e-6 * np.abs(t).max(axis=1, keepdims=True))


def test_encoding_errors_name_the_table():
    with pytest.raises(ValueError, match=r"tbl: value 70000.0 .* overflows float16"):
        compact.encode(np.array([[1.0, 7e4]], np.float32), "float16", "tbl")
    with pytest.raises(ValueError, match="tbl: value nan .* not finite"):
        compact.encode(np.array([[1.0, np.nan]], np.float32), "int8", "tbl")
    with pytest.raises(ValueError, match="not a table dtype"):
        compact.check_dtype("int4")


def test_flat_layout_round_trip():
    rng = np.random.default_rng(0)
    tables = {"a": rng.standard_normal((5, 8)), "b": rng.standard_normal((3, 3)), "c": rng.standard_normal((4, 32))}
    recipe = {"concat_flat": ["a", "b", "c"], "pad_rows_to": 4, "shapes": {k: list(v.shape) for k, v in
                                                                          tables.items()},
              "dtypes": {"a": "int8", "b": "float32", "c": "bfloat16"}}
    flat = compact.build_flat(recipe, tables)
    layout = compact.layout(recipe, {})
    assert [(t, o % 4) for t, o, _, _ in layout] == [("a", 0), ("b", 0), ("c", 0)]  # 16-byte aligned tables
    # a: int8 dim 8 = 8 codes + scale + bias = one 16-byte unit; b: float32 dim 3 = one unit; c: bf16 dim 32 = 4
    assert [s for _, _, _, s in layout] == [4, 4, 16] and flat.size == 5 * 4 + 3 * 4 + 4 * 16
    for t in tables:
        np.testing.assert_array_equal(compact.read_table(recipe, flat, t), compact.decode(
            compact.encode(tables[t], recipe["dtypes"][t]), recipe["dtypes"][t], tables[t].shape[1]))
    new = rng.standard_normal((3, 3)).astype(np.float32)
    flat2 = compact.write_table(recipe, flat.copy(), "b", new)
    np.testing.assert_array_equal(compact.read_table(recipe, flat2, "b"), new)
    np.testing.assert_array_equal(compact.read_table(recipe, flat2, "a"), compact.read_table(recipe, flat, "a"))
    with pytest.raises(ValueError, match=r"expected a \[3, 3\] table"):
        compact.write_table(recipe, flat.copy(), "b", new[:2])


# ------------------------------------------------------------------------------------ the kernel, per dtype
@pytest.fixture(scope="module")
def mixed_emb():
    """MIXED with its embedding stage as a second output: (spec, optimized module, params, column tables)."""
    paths = tf_export.export(MIXED)
    with open(paths["signature"]) as f:
        sig = json.load(f)
    mod, params, _ = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"],
                                               outputs=[sig["outputs"]["score"], embedding_output(paths["pb"])])
    opt = recom_tvm.optimize(mod)
    cols = {c.name.replace("_bucketized_embedding", "").replace("_embedding", ""): c for c in identify_columns(opt)}
    tables = {c.name: cols[c.name].table for c in MIXED.columns if c.kind != "numeric"}
    tail = reference.extract_tail(paths["pb"], embedding_output(paths["pb"]), sig["outputs"]["score"], params,
                                  sig["inputs"])
    return {"opt": opt, "params": params, "tables": tables, "tail": tail, "ref": tf_export.TFReference(MIXED, paths)}


def _quantized(params: dict, tables: dict, dtype) -> dict:
    """{column: the float32 values the kernel reads} of each column's table stored in `dtype`."""
    out = {}
    for col, t in tables.items():
        dt = dtype if isinstance(dtype, str) else dtype.get(col, dtype["default"])
        out[col] = compact.decode(compact.encode(params[t], dt), dt, params[t].shape[1])
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_reads_every_table_dtype(mixed_emb, dtype):
    """Scores and embedding stage against the numpy reference of the quantized model (float32 accumulation, so
    equal up to summation order), and the score within SCORE_ATOL of TensorFlow; every column kind and input
    format, ordinary and hostile inputs."""
    m = mixed_emb
    model = recom_tvm.build(m["opt"], "llvm", m["params"], table_dtype=dtype)
    assert set(model.table_dtypes(TABLES).values()) == {dtype}
    assert not fused_meta(m["opt"])[:, META.index("tdtype")].any()  # the optimized module itself is unchanged
    q = _quantized(m["params"], m["tables"], dtype)
    for batch, hostile in ((1, False), (7, True), (96, False), (130, True)):
        feeds = MIXED.sample(batch, rng=batch, hostile=hostile)
        out = model.run(feeds)
        score, emb = (out[o["name"]] for o in model.spec.outputs)
        exp_emb = reference.embedding_stage(MIXED, q, feeds)
        np.testing.assert_allclose(emb, exp_emb, rtol=1e-5, atol=1e-6, err_msg=f"{dtype} B={batch}")
        exp_score = reference.eval_tail(m["tail"], m["params"], exp_emb, feeds)
        np.testing.assert_allclose(score, exp_score, rtol=1e-5, atol=2e-6, err_msg=f"{dtype} B={batch}")
        tf = m["ref"](feeds)
        assert np.abs(score - tf).max() <= SCORE_ATOL[dtype], (dtype, batch, float(np.abs(score - tf).max()))


def test_per_table_overrides(compiled):
    """A default dtype, one column and one table param overridden; unknown names, conflicting columns of a
    shared table, bad dtypes and unoptimized modules are refused with the name in the message."""
    c = compiled(DEMO, optimized=True)
    cols = {col.name: col for col in identify_columns(c.mod)}
    item_table = cols["item_ids_embedding"].table
    choice = {"default": "int8", "age_bucketized_embedding": "float32", item_table: "float16"}
    model = recom_tvm.build(c.mod, "llvm", c.params, table_dtype=choice)
    dts = model.table_dtypes(TABLES)
    assert dts[cols["age_bucketized_embedding"].table] == "float32" and dts[item_table] == "float16"
    assert sorted(dts.values()).count("int8") == len(dts) - 2
    codes = {row[META.index("tdtype")] for row in model.spec.fused["meta"]}
    assert codes == {0, 1, 3}
    ref = {col.name.replace("_bucketized_embedding", "").replace("_embedding", ""): c.params[col.table]
           for col in identify_columns(c.mod)}
    per_col = {"default": "int8", "age": "float32", "item_ids": "float16"}
    q = _quantized(ref, {k: k for k in ref}, per_col)
    tail = _demo_tail(c)
    for batch in (3, 50):
        feeds = DEMO.sample(batch, rng=batch, hostile=True)
        exp = reference.eval_tail(tail, c.params, reference.embedding_stage(DEMO, q, feeds), feeds)
        np.testing.assert_allclose(model.run(feeds)["score"], exp, rtol=1e-5, atol=2e-6)
        assert np.abs(model.run(feeds)["score"] - c.ref(feeds)).max() <= SCORE_ATOL["int8"]
    with pytest.raises(ValueError, match="'nope' is neither a table nor a column"):
        recom_tvm.build(c.mod, "llvm", c.params, table_dtype={"nope": "int8"})
    with pytest.raises(ValueError, match="not a table dtype"):
        recom_tvm.build(c.mod, "llvm", c.params, table_dtype="fp8")
    with pytest.warns(UserWarning, match="has none .* every table stays float32"):
        plain = recom_tvm.build(compiled(DEMO).mod, "llvm", compiled(DEMO).params, table_dtype="float16")
    np.testing.assert_array_equal(plain.run(DEMO.sample(5, rng=5))["score"],
                                  compiled(DEMO).model.run(DEMO.sample(5, rng=5))["score"])
    with pytest.raises(ValueError, match="overflows float16"):
        big = dict(c.params, **{item_table: np.full(c.params[item_table].shape, 1e5, np.float32)})
        recom_tvm.build(c.mod, "llvm", big, table_dtype="float16")


def _demo_tail(c):
    with open(c.paths["signature"]) as f:
        sig = json.load(f)
    return reference.extract_tail(c.paths["pb"], embedding_output(c.paths["pb"]), sig["outputs"]["score"], c.params,
                                  sig["inputs"])


def test_shared_table_columns_must_agree():
    from recom_tvm.passes.compact_tables import resolve_dtypes
    from recom_tvm.runtime.spec import InputSpec

    columns = [{"name": "a", "table": "T"}, {"name": "b", "table": "T"}, {"name": "c", "table": "U"}]
    spec = InputSpec([], {}, [], [], [], {}, fused={"columns": columns},
                     param_recipes={TABLES: {"concat_flat": ["T", "U"]}})
    assert resolve_dtypes(spec, {"default": "float16", "a": "int8", "b": "int8"}) == {"T": "int8", "U": "float16"}
    with pytest.raises(ValueError, match="columns sharing a table share its dtype"):
        resolve_dtypes(spec, {"a": "int8", "b": "bfloat16"})


# ------------------------------------------------------------------------- set_params, export, load, memory
def test_set_params_export_and_runtime_only_load(compiled, tmp_path):
    """Tables given at set_params (numpy, or device tensors) are quantized again; the export carries the compact
    flat table, not the float32 sources; a runtime-only process loads it, runs it and re-encodes a table."""
    c = compiled(DEMO, optimized=True)
    cols = {col.name: col.table for col in identify_columns(c.mod)}
    model = recom_tvm.build(c.mod, "llvm", c.params, table_dtype="int8")
    rng = np.random.default_rng(5)
    new = {t: rng.standard_normal(c.params[t].shape).astype(np.float32) for t in cols.values()}
    t_user, t_tags = cols["user_id_embedding"], cols["tags_embedding"]
    model.set_params({t_user: new[t_user], t_tags: tvm.runtime.tensor(new[t_tags])})  # numpy and a device tensor
    want_model = recom_tvm.build(c.mod, "llvm", dict(c.params, **{t_user: new[t_user], t_tags: new[t_tags]}),
                                 table_dtype="int8")
    feeds = DEMO.sample(40, rng=2, hostile=True)
    want = want_model.run(feeds)["score"]
    np.testing.assert_array_equal(model.run(feeds)["score"], want)

    lib = str(tmp_path / "demo_int8.so")
    model.export_library(lib)
    with np.load(lib + ".params.npz") as z:
        assert TABLES in z.files and not set(cols.values()) & set(z.files)  # compact, not the float32 sources
        fp32_floats = sum(c.params[t].size for t in set(cols.values()))
        assert z[TABLES].size < 0.6 * fp32_floats
    loaded = recom_tvm.load(lib)
    np.testing.assert_array_equal(loaded.run(feeds)["score"], want)
    assert loaded.table_layout(TABLES) == model.table_layout(TABLES)  # from the recipe: no float32 sources here
    loaded.set_params({t_user: c.params[t_user]})  # one table back: re-encoded into the loaded flat table
    back = recom_tvm.build(c.mod, "llvm", dict(c.params, **{t_tags: new[t_tags]}), table_dtype="int8")
    np.testing.assert_array_equal(loaded.run(feeds)["score"], back.run(feeds)["score"])

    model.export_library(str(tmp_path / "bare.so"), include_params=False)  # no weights: every table set at load
    bare = recom_tvm.load(str(tmp_path / "bare.so"))
    bare.set_params({n: c.params[n] for n in bare.param_names() if n != TABLES})
    bare.set_params({t: (dict(c.params, **{t_tags: new[t_tags]}))[t] for t in set(cols.values())})
    np.testing.assert_array_equal(bare.run(feeds)["score"], back.run(feeds)["score"])

    np.save(tmp_path / "want.npy", back.run(feeds)["score"])
    np.save(tmp_path / "user.npy", c.params[t_user])
    script = BLOCK_IMPORTS + textwrap.dedent(f"""
        import numpy as np
        from recom_tvm.runtime import load
        from recom_tvm.models import zoo
        model = load({lib!r})
        assert set(model.table_dtypes("{TABLES}").values()) == {{"int8"}}
        model.set_params({{{t_user!r}: np.load({str(tmp_path / 'user.npy')!r})}})
        got = model.run(zoo.demo().sample(40, rng=2, hostile=True))["score"]
        np.testing.assert_array_equal(got, np.load({str(tmp_path / 'want.npy')!r}))
        assert model.memory_usage()["tables"] > 0
        loaded = [m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in blocked)]
        assert not loaded, loaded
        print("OK runtime-only")
    """)
    res = run_runtime_only("-c", script)
    assert res.returncode == 0 and "OK runtime-only" in res.stdout, res.stdout[-2000:] + res.stderr[-3000:]


def test_memory_report_per_dtype(compiled):
    c = compiled(DEMO, optimized=True)
    feeds = {b: DEMO.sample(b, rng=b) for b in (16, 512)}
    usage = {d: recom_tvm.build(c.mod, "llvm", c.params, table_dtype=d).memory_usage(feeds[512])
             for d in ("float32",) + DTYPES}
    floats = sum(int(np.prod(s)) for s in c.model.spec.param_recipes[TABLES]["shapes"].values())
    assert usage["float32"]["tables"] == 4 * floats and usage["float32"]["tables_by_dtype"] == {
        "float32": 4 * floats}
    # DEMO's dims are 8 and 16: half the bytes in fp16 / bf16; int8 rows (codes + scale + bias, 16-byte units)
    # are no smaller than fp16's at these dims
    assert usage["float16"]["tables"] == usage["bfloat16"]["tables"] == usage["float32"]["tables"] // 2
    assert usage["int8"]["tables"] == usage["float16"]["tables"]
    assert len({u["weights"] for u in usage.values()}) == 1 and usage["float32"]["weights"] > 0
    width = c.model.spec.fused["width"]  # the fused kernel's output alone is [B, width] floats
    assert all(u["batch"] == 512 and u["workspace"] > 512 * width * 4 for u in usage.values())
    small = c.model.memory_usage(feeds[16])
    assert small["workspace"] < usage["float32"]["workspace"] and small["batch"] == 16
    assert usage["int8"]["total"] == usage["int8"]["tables"] + usage["int8"]["weights"] + usage["int8"]["workspace"]
    assert "workspace" not in c.model.memory_usage()


def test_tables_larger_than_free_memory_fail_clearly(compiled, tmp_path, monkeypatch):
    """A device with less free memory than the parameters: DeviceMemoryError at the first run and at load,
    naming both sizes (a fake free-memory figure: this host has no GPU)."""
    from recom_tvm.runtime import memory
    from recom_tvm.runtime.compiled_model import _translate

    c = compiled(DEMO, optimized=True)
    model = recom_tvm.build(c.mod, "llvm", c.params, table_dtype="float16")
    need = model.memory_usage()["tables"] + model.memory_usage()["weights"]
    lib = str(tmp_path / "m.so")
    model.export_library(lib)
    monkeypatch.setattr(memory, "free_memory", lambda device: need - 1)
    sizes = rf"needs .*\({need:,} bytes\).* has .*\({need - 1:,} bytes\) free"
    with pytest.raises(recom_tvm.DeviceMemoryError, match=sizes):
        model.run(DEMO.sample(4, rng=1))
    with pytest.raises(recom_tvm.DeviceMemoryError, match="table_dtype"):
        recom_tvm.load(lib)
    monkeypatch.setattr(memory, "free_memory", lambda device: need)
    np.testing.assert_array_equal(recom_tvm.load(lib).run(DEMO.sample(4, rng=1))["score"],
                                  model.run(DEMO.sample(4, rng=1))["score"])
    err = _translate(RuntimeError("CUDA: out of memory\n  cudaMalloc failed"))
    assert isinstance(err, recom_tvm.DeviceMemoryError) and "memory_usage" in str(err)
