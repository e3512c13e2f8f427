"""The fused kernel's int32 packed input (config.packed_dtype "auto": int32 where every table and id range of the
kernel is below 2^31 rows): ids narrowed saturating, so ids far outside every table give TF's answers (and TF's
errors) as the int64 layout did; the dtype choice; the packed-length limit; tuning keyed on the dtype."""

from __future__ import annotations

import numpy as np
import pytest

import recom_tvm
from recom_tvm import config
from recom_tvm.models import zoo
from recom_tvm.runtime import packer
from recom_tvm.runtime.fused_layout import INT32_MAX, INT32_MIN, KIND, META, PRE, choose_packed_dtype, int32_blockers

from conftest import assert_matches_tf

# ids a wrapping int64 -> int32 cast turns into valid rows (2^32 + 5 -> 5, -2^32 + 7 -> 7) or into the dense
# input's "missing" marker (2^32 - 1 -> -1); saturated, each keeps its comparisons with the table's rows
HOSTILE_IDS = [2**32 + 5, 2**32 - 1, -2**32 + 7, 2**31, 2**31 - 1, -2**31 - 1, 2**40 + 3, 2**63 - 1, -2**63, 300, 299]


def _meta_row(**kw) -> list[int]:
    row = dict(kind=KIND["csr"], dim=8, stride4=2, out_off=0, table_base=0, rows=100, mode=0, pre=PRE["none"],
               pre_a=0, pre_b=0, filter=0, weighted=0, tdtype=0)
    row.update(kw)
    return [row[k] for k in META]


def test_packed_dtype_choice():
    small = [_meta_row(), _meta_row(kind=KIND["one"], rows=2**31 - 1),
             _meta_row(kind=KIND["dense"], pre=PRE["identity_default"], pre_a=50, pre_b=3)]
    assert choose_packed_dtype(small) == "int32"
    assert choose_packed_dtype(small, "int64") == "int64"
    assert choose_packed_dtype(small, "int32") == "int32"
    # a table of 2^31 rows (no allocation: the decision reads the kernel's static layout)
    big = small + [_meta_row(kind=KIND["one"], rows=2**31)]
    assert int32_blockers(big) == [(3, "rows", 2**31)]
    assert choose_packed_dtype(big) == "int64"
    with pytest.raises(ValueError, match=r"'wide'.*rows is 2147483648"):
        choose_packed_dtype(big, "int32", names=["a", "b", "c", "wide"])
    # an identity range (or Keras' wrap) of 2^31 ids compares ids with 2^31: int64 too
    assert choose_packed_dtype(small + [_meta_row(pre=PRE["identity_default"], pre_a=2**31, pre_b=0)]) == "int64"
    assert choose_packed_dtype(small + [_meta_row(pre=PRE["wrap_negative"], pre_a=2**33)]) == "int64"
    # bucketized / numeric columns pack floats: their pre_a is an offset into the boundaries, not an id range
    assert choose_packed_dtype(small + [_meta_row(kind=KIND["bucket"], pre_a=2**40, pre_b=3)]) == "int32"
    with pytest.raises(ValueError, match="packed_dtype"):
        choose_packed_dtype(small, "int16")


def _fused_and_env(ids):
    n = len(ids)
    env = {"i": np.stack([np.arange(n) % 3, np.zeros(n, np.int64)], axis=1).astype(np.int64),
           "v": np.asarray(ids), "w": np.linspace(-1, 1, n).astype(np.float32),
           "d": np.asarray(ids[:6]).reshape(3, 2), "o": np.asarray(ids[:3]),
           "x": np.array([[np.nan], [-0.0], [1e-42]], np.float32), "num": np.arange(6, dtype=np.float32).reshape(3, 2)}
    cols = [{"kind": "csr", "tensors": {"indices": "i", "ids": "v", "weights": "w"}},
            {"kind": "dense", "tensors": {"x": "d"}}, {"kind": "one", "tensors": {"ids": "o"}},
            {"kind": "bucket", "tensors": {"x": "x"}}, {"kind": "numeric", "tensors": {"x": "num"}}]
    return cols, env


@pytest.mark.parametrize("dtype", ["int64", "uint64", "int32", "uint32"])
def test_int32_packing_saturates_ids_and_keeps_everything_else(dtype):
    """packer.pack with int32: the int64 layout's words, ids clipped to int32 (never wrapped), float bit patterns
    and offsets as they are."""
    ids = np.array(HOSTILE_IDS + [-1, 0, 7, -5], np.int64)
    if dtype != "int64":
        info = np.iinfo(dtype)
        ids = ids[(ids >= info.min) & (ids <= info.max)]
    cols, env = _fused_and_env(ids.astype(dtype))
    p64 = packer.pack({"columns": cols}, env, 3)
    p32 = packer.pack({"columns": cols, "packed_dtype": "int32"}, env, 3)
    assert p64.dtype == np.int64 and p32.dtype == np.int32 and p32.size == p64.size
    np.testing.assert_array_equal(p32, np.clip(p64, INT32_MIN, INT32_MAX))
    # every comparison the kernel makes of an id keeps its truth value
    for limit in (0, 299, 300, 2**31 - 1):
        np.testing.assert_array_equal(p32 >= limit, p64 >= limit)
    np.testing.assert_array_equal(p32 == -1, p64 == -1)
    np.testing.assert_array_equal(p32 < 0, p64 < 0)


def test_packed_length_limit_is_a_clear_error(monkeypatch):
    cols, env = _fused_and_env(list(range(10)))
    fused = {"columns": [dict(c, name=f"col{i}") for i, c in enumerate(cols)], "packed_dtype": "int32"}
    packer.check_packed_length(fused, 100, np.array([50, 6, 3, 3, 6]), limit=100)
    with pytest.raises(recom_tvm.RequestTooLargeError, match=r"101 int32 words.*limit of 100.*'col0'.*'i'"):
        packer.check_packed_length(fused, 101, np.array([50, 6, 3, 3, 6]), limit=100)
    monkeypatch.setattr(packer, "PACKED_INT32_LIMIT", 20)
    with pytest.raises(recom_tvm.RequestTooLargeError, match="above the int32 layout's limit of 20"):
        packer.pack(fused, env, 3)
    assert packer.pack(dict(fused, packed_dtype="int64"), env, 3).size > 20  # int64 has no such limit


@pytest.fixture(scope="module")
def demo_both(compiled):
    """The demo optimized as the default builds it (int32 packing) and forced to int64."""
    c = compiled(zoo.demo(), optimized=True)
    assert c.model.spec.fused["packed_dtype"] == "int32"
    old = config.packed_dtype
    config.packed_dtype = "int64"
    try:
        opt64 = recom_tvm.optimize(c.variants["imported"][0])
    finally:
        config.packed_dtype = old
    m64 = recom_tvm.build(opt64, "llvm", c.params)
    assert m64.spec.fused["packed_dtype"] == "int64"
    return c, opt64, m64


def test_hostile_ids_with_int32_packing_match_tf(demo_both):
    """item_ids (identity with default 0, 300 buckets, dense input with -1 = missing): ids far outside the table
    take the default as in TF (a wrapping cast would read rows 5 and 7, or drop 2^32 - 1 as missing), on both host
    paths (the suite's fixture compares their packed bytes), bit-identical to the int64 layout."""
    c, _, m64 = demo_both
    batch = 8
    feeds = zoo.demo().sample(batch, rng=5)
    ids = np.array(HOSTILE_IDS + [-1] * 5, np.int64)
    feeds["item_ids"] = np.resize(ids, (batch, 4))
    got, exp = c.run_both(feeds)  # scores and embedding stages of both variants against TF
    assert_matches_tf(got, exp, "demo, hostile item_ids")
    out32, out64 = c.model.run(feeds), m64.run(feeds)
    for k in out64:
        assert out32[k].tobytes() == out64[k].tobytes(), k
    p32 = next(a for a in c.model.prepare(feeds) if getattr(a, "dtype", None) == np.int32)
    p64 = next(a for a in m64.prepare(feeds) if getattr(a, "dtype", None) == np.int64 and a.ndim == 1)
    assert p32.nbytes * 2 == p64.nbytes
    np.testing.assert_array_equal(p32, np.clip(p64, INT32_MIN, INT32_MAX))


def test_out_of_range_ids_with_int32_packing_raise_tf_errors(demo_both):
    """category (identity, no default): an id above the table that a wrapping cast would make valid (2^32 + 1 ->
    1) is TF's error, on the int32 model as on the int64 one; a negative one that would wrap to a valid row
    (-2^32 + 3 -> 3) is dropped as TF drops negative ids."""
    c, _, m64 = demo_both
    for bad in (2**32 + 1, 50, -2**32 + 3):
        feeds = zoo.demo().sample(4, rng=6)
        idx, vals, shape = feeds["category"]
        feeds["category"] = (idx, np.where(np.arange(vals.size) == 0, bad, vals).astype(np.int64), shape)
        got, exp = c.run_both(feeds)
        assert_matches_tf(got, exp, f"category id {bad}")
        if bad >= 0:
            assert isinstance(exp, BaseException) and isinstance(got, BaseException), (bad, got, exp)
            with pytest.raises(type(got)):
                m64.run(feeds)
        else:
            assert c.model.run(feeds)["score"].tobytes() == m64.run(feeds)["score"].tobytes()


def test_tuning_follows_the_packed_dtype(demo_both):
    """Tuning records are keyed on the packed dtype (an int64 record never applies to the int32 kernel); the
    task of an int32 model measures on an int32 request and builds the int32 kernel."""
    from recom_tvm.schedules.builder import instantiate
    from recom_tvm.schedules.tasks import extract_tasks, find_fused_call, kernel_key, signature_of

    c, opt64, _ = demo_both
    import tvm

    target = tvm.target.Target("llvm")
    call32, call64 = find_fused_call(c.mod), find_fused_call(opt64)
    assert (call32.packed_dtype, call64.packed_dtype) == ("int32", "int64")
    assert kernel_key(call32, target) != kernel_key(call64, target)
    (task,) = extract_tasks(c.mod, target, batches=(16,))
    assert task.packed.dtype == np.int32 and task.signature() == signature_of(task.packed.size, 16, call32.width,
                                                                              "int32")
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    for func in (task.mod["main"], instantiate(task.mod, target)):
        assert str(ArgInfo.from_prim_func(func)[0].as_json()[1]) == "int32"


def test_int64_records_reach_an_int32_build_only_with_a_warning(demo_both, tmp_path):
    """A database tuned on the int64 layout (e.g. benchmarks/tuning/ of E and F, made before int32 packing): the
    int32 build uses its knobs (every config computes the same on either layout) and says so; records of the
    int32 kernel itself win without a warning."""
    import warnings

    import tvm

    from recom_tvm.schedules import KernelConfig
    from recom_tvm.schedules.apply import schedules_from_database
    from recom_tvm.schedules.tasks import extract_tasks
    from recom_tvm.schedules.tune import open_database, scheduled

    c, opt64, _ = demo_both
    target = recom_tvm.build_module.make_target("llvm")
    db = open_database(str(tmp_path))
    pick64, pick32 = KernelConfig(threads=64, rows=4), KernelConfig(threads=128, unroll=2)

    def commit(mod, cfg):
        (t,) = extract_tasks(mod, target, batches=(16,))
        sch = scheduled(t, cfg, "llvm")
        db.commit_tuning_record(tvm.s_tir.meta_schedule.database.TuningRecord(
            sch.trace, db.commit_workload(t.mod), [1e-3], target,
            tvm.s_tir.meta_schedule.arg_info.ArgInfo.from_prim_func(t.mod["main"])))

    commit(opt64, pick64)
    assert schedules_from_database(opt64, target, db) == ((None, pick64),)
    with pytest.warns(UserWarning, match="int64 packed input only"):
        assert schedules_from_database(c.mod, target, db) == ((None, pick64),)
    commit(c.mod, pick32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert schedules_from_database(c.mod, target, db) == ((None, pick32),)
        assert schedules_from_database(opt64, target, db) == ((None, pick64),)


def test_a_native_library_without_int32_packing_is_not_used_for_an_int32_model(demo_both):
    """A host library built before int32 packing would write int64 words into an int32 model's buffer: refused
    (the model then serves on the numpy reference)."""
    from recom_tvm.runtime.native import NativeHost

    c, _, m64 = demo_both
    lib = c.model.native_host().lib

    class OldLibrary:  # the same functions, without the PACKED_INT32 marker
        def __getattr__(self, name):
            if name == "PACKED_INT32":
                raise AttributeError(name)
            return getattr(lib, name)

    with pytest.raises(ValueError, match="predates int32 packing"):
        NativeHost(OldLibrary(), c.model.spec)
    assert NativeHost(OldLibrary(), m64.spec).program.module_args  # int64 models still use it
