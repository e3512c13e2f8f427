"""Tuning the fused embedding kernel: the design space, every schedule computing the same function, MetaSchedule
through a real RPC tracker, the offline round trip, and a database changing what build generates."""

from __future__ import annotations

import json
import os
import signal
import random
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tvm
import tvm_ffi

import recom_tvm
from recom_tvm.models import zoo
from recom_tvm.ops import LegalizeRecomOps
from recom_tvm.ops.fused_kernel import DEFAULT, KernelConfig, check_config, column_classes
from recom_tvm.schedules import KNOBS, offline
from recom_tvm.schedules.apply import schedules_from_database
from recom_tvm.schedules.fused_space import FEATURES, KnobMutator, config_of, features, sample_knobs, task_info
from recom_tvm.schedules.tasks import buckets_for, extract_tasks
from recom_tvm.schedules.tune import open_database, scheduled
from recom_tvm.serving.server import free_port

from conftest import assert_matches_tf, run_runtime_only
from test_runtime_only import BLOCK_IMPORTS

DEMO = zoo.demo()
MIXED = zoo.mixed(24, seed=3)  # every column kind and input format, dims 1..16


@pytest.fixture(scope="module")
def demo(compiled):
    return compiled(DEMO, optimized=True)


@pytest.fixture(scope="module")
def mixed(compiled):
    return compiled(MIXED, optimized=True)


def cycled_configs(n: int, seed: int) -> list[KernelConfig]:
    """n points of the space in which every value of every knob appears (values cycled in shuffled order)."""
    rng = random.Random(seed)
    pools: dict[str, list] = {k: [] for k in KNOBS}

    def draw(k):
        if not pools[k]:
            pools[k] = list(KNOBS[k])
            rng.shuffle(pools[k])
        v = pools[k].pop()
        return bool(v) if isinstance(getattr(DEFAULT, k), bool) else v

    return [KernelConfig(**{k: draw(k) for k in KNOBS}) for _ in range(n)]


def test_design_space_samples_every_knob_and_holds_the_default(demo):
    (task,) = extract_tasks(demo.mod, "cuda", batches=(64,))
    seen = {k: set() for k in KNOBS}
    for seed in range(1, 401, 10):  # consecutive small seeds correlate in TVM's LCG: knob 9 came out the same
        sch = tvm.s_tir.Schedule(task.mod, seed=seed)
        sample_knobs(sch, "cuda")
        cfg = config_of(sch.mod)
        for k in KNOBS:
            seen[k].add(int(getattr(cfg, k)))
    assert all(seen[k] == set(v) for k, v in KNOBS.items()), seen
    assert config_of(scheduled(task, DEFAULT, "cuda").mod) == DEFAULT
    # llvm: GPU-only knobs are fixed, so no two candidates build the same kernel
    sch = tvm.s_tir.Schedule(task.mod, seed=1)
    sample_knobs(sch, "llvm")
    assert config_of(sch.mod).smem_bounds == DEFAULT.smem_bounds


def test_mutator_changes_exactly_one_knob(demo):
    (task,) = extract_tasks(demo.mod, "cuda", batches=(64,))
    trace = scheduled(task, DEFAULT, "cuda").trace
    mut = KnobMutator(seed=3)
    for _ in range(10):
        new = mut.apply(trace)
        sch = tvm.s_tir.Schedule(task.mod)
        new.apply_to_schedule(sch, remove_postproc=False)
        changed = [k for k in KNOBS if getattr(config_of(sch.mod), k) != getattr(DEFAULT, k)]
        assert len(changed) == 1, changed


def test_invalid_configs_are_rejected():
    meta = np.zeros((2, 12), np.int64)
    meta[:, 1] = [8, 2048]  # a 2048-wide column needs 512 float4 lanes
    classes = column_classes(meta)
    assert check_config(KernelConfig(threads=512), classes, 1, gpu=True) is None
    assert "lanes" in check_config(KernelConfig(threads=256), classes, 1, gpu=True)
    assert "shared memory" in check_config(KernelConfig(smem_bounds=True), column_classes(meta[:1]), 20000, True)
    # staged per block: the bucket ids of 1024 x 8 bags (32 KB) and 4 columns' boundaries (4 x 8 KB) do not fit
    staged = KernelConfig(threads=1024, rows=8, search_once=True, smem_bounds=True, group=4)
    assert "shared memory staged per block" in check_config(staged, classes, 2048, gpu=True)
    assert check_config(staged, classes, 2048, gpu=False) is None  # llvm stages into per-unit scratch
    assert "group" in check_config(KernelConfig(group=3), classes, 1, gpu=True)
    assert "vec 16" in check_config(KernelConfig(vec=16), classes, 1, gpu=True)
    with pytest.raises(ValueError, match="kernel config"):
        recom_tvm.ops.fused_kernel.fused_embedding(meta, 2056, True, ((None, KernelConfig(threads=64)),))


def test_features_describe_the_task(demo):
    tasks = extract_tasks(demo.mod, "cuda", batches=(8, 2048))
    rows = [features(DEFAULT, task_info(t.mod)) for t in tasks]
    assert all(r.shape == (len(FEATURES),) and np.isfinite(r).all() for r in rows)
    blocks = FEATURES.index("log2_blocks")
    assert rows[1][blocks] > rows[0][blocks]  # more bags, more blocks
    assert not np.array_equal(features(KernelConfig(threads=64), task_info(tasks[0].mod)), rows[0])


def test_every_schedule_computes_the_same(mixed):
    """Points of the space in which every value of every knob appears (three batch buckets per build, one build
    per table dtype) give that dtype's default-schedule outputs bit for bit (and float32's, TF's). The
    VectorizeLoop miscompile of TVM 0.27 (tvm-0.27.md) would show here."""
    feeds = [MIXED.sample(b, rng=b, hostile=b % 2 == 1) for b in (1, 5, 40, 130)]
    want = {"float32": [mixed.model.run(f)["score"] for f in feeds]}
    assert_matches_tf(want["float32"][-1], mixed.ref(feeds[-1]), "default schedule")
    cfgs = cycled_configs(12, seed=7)
    for k, dtype in enumerate(("float32", "float16", "bfloat16", "int8")):
        if dtype not in want:
            default = recom_tvm.build(mixed.mod, "llvm", mixed.params, table_dtype=dtype)
            want[dtype] = [default.run(f)["score"] for f in feeds]
        buckets = ((4, cfgs[3 * k]), (40, cfgs[3 * k + 1]), (None, cfgs[3 * k + 2]))
        model = recom_tvm.build(mixed.mod, "llvm", mixed.params, kernel_schedules=buckets, table_dtype=dtype)
        for f, w in zip(feeds, want[dtype]):
            np.testing.assert_array_equal(model.run(f)["score"], w, err_msg=f"{dtype} {buckets}")


def test_int32_packed_input_computes_the_same(mixed):
    """The kernel reading an int32 packed input (fused_embedding(..., packed_dtype="int32"): offsets and ids in
    31 bits, float features as their 32-bit patterns) writes what it writes from the int64 one, bit for bit,
    under the default schedule and points of the space with every staging knob."""
    from recom_tvm.ops.fused_kernel import fused_embedding
    from recom_tvm.runtime.synthetic import synthetic_packed
    from recom_tvm.schedules.tasks import find_fused_call

    call = find_fused_call(mixed.mod)
    tables = np.random.default_rng(0).standard_normal(call.table_floats).astype(np.float32)
    cfgs = [DEFAULT, KernelConfig(stage_meta=True, search_once=True, group=2)] + cycled_configs(1, seed=11)
    libs = {(i, dt): tvm.compile(tvm.IRModule({"k": fused_embedding(call.meta, call.width, False, ((None, c),),
                                                                    packed_dtype=dt).with_attr("global_symbol", "k")}),
                                 target="llvm")
            for i, c in enumerate(cfgs) for dt in ("int64", "int32")}
    for batch in (5, 130):
        p64 = synthetic_packed(call.meta, call.bounds, batch, seed=batch)
        p32 = p64.astype(np.int32)  # float patterns wrap to the same 32 bits
        assert np.array_equal(p32[p64 < 2**31], p64[p64 < 2**31])
        for i, cfg in enumerate(cfgs):
            outs = []
            for dt, p in (("int64", p64), ("int32", p32)):
                out = tvm.runtime.empty((batch, call.width), "float32")
                libs[i, dt]["k"](tvm.runtime.tensor(p), tvm.runtime.tensor(call.meta),
                                 tvm.runtime.tensor(call.bounds), tvm.runtime.tensor(tables), out)
                outs.append(out.numpy())
            assert np.abs(outs[0]).sum() > 0
            np.testing.assert_array_equal(outs[1], outs[0], err_msg=f"{cfg} B={batch}")
    with pytest.raises(ValueError, match="packed_dtype"):
        fused_embedding(call.meta, call.width, False, packed_dtype="int16")


def test_cycled_configs_cover_every_knob_value():
    cfgs = cycled_configs(12, seed=7)
    for k, values in KNOBS.items():
        assert {int(getattr(c, k)) for c in cfgs} == set(values), k


def test_batch_buckets_dispatch_at_their_edges(demo):
    assert buckets_for((256, 32, 2048)) == [(90, 32), (724, 256), (None, 2048)]
    a, b = KernelConfig(threads=64, rows=2), KernelConfig(threads=128, vec=2, interleave=True)
    model = recom_tvm.build(demo.mod, "llvm", demo.params, kernel_schedules=((45, a), (None, b)))
    assert model.kernel_schedules == [[45, a.to_json()], [None, b.to_json()]]
    for batch in (1, 45, 46, 200):
        f = DEMO.sample(batch, rng=batch)
        np.testing.assert_array_equal(model.run(f)["score"], demo.model.run(f)["score"])


def _fused_primfunc(mod):
    return next(f for g, f in mod.functions_items() if g.name_hint.startswith("recom_fused_embedding"))


def test_a_database_changes_the_generated_kernel(demo, tmp_path):
    """Records of a non-default schedule at two batches: build picks each bucket's best, the kernel it generates
    differs from the default's, the answers do not."""
    tasks = extract_tasks(demo.mod, "llvm", batches=(16, 512))
    db = open_database(str(tmp_path))
    target = recom_tvm.build_module.make_target("llvm")
    picks = {16: KernelConfig(threads=64, rows=4), 512: KernelConfig(threads=512, unroll=2, heavy_first=False)}
    for t in tasks:
        for cfg, secs in ((DEFAULT, 2e-3), (picks[t.batch], 1e-3), (KernelConfig(vec=1), 3e-3)):
            sch = scheduled(t, cfg, "llvm")
            db.commit_tuning_record(tvm.s_tir.meta_schedule.database.TuningRecord(
                sch.trace, db.commit_workload(t.mod), [secs], target,
                tvm.s_tir.meta_schedule.arg_info.ArgInfo.from_prim_func(t.mod["main"])))
    got = schedules_from_database(demo.mod, target, str(tmp_path))
    assert got == ((90, picks[16]), (None, picks[512]))
    with target:
        tuned = _fused_primfunc(LegalizeRecomOps(got)(demo.mod))
        default = _fused_primfunc(LegalizeRecomOps()(demo.mod))
    assert not tvm_ffi.structural_equal(tuned, default)
    assert json.loads(str(tuned.attrs["recom_tvm.fused"]))["buckets"] == [[90, picks[16].to_json()],
                                                                          [None, picks[512].to_json()]]
    model = recom_tvm.build(demo.mod, "llvm", demo.params, database=str(tmp_path))
    assert model.kernel_schedules == [[90, picks[16].to_json()], [None, picks[512].to_json()]]
    for batch in (3, 300):
        f = DEMO.sample(batch, rng=batch)
        np.testing.assert_array_equal(model.run(f)["score"], demo.model.run(f)["score"])
    with pytest.warns(UserWarning, match="no records"):
        assert schedules_from_database(demo.mod, recom_tvm.build_module.make_target("cuda"), str(tmp_path)) is None


@pytest.fixture
def rpc_cluster(tmp_path):
    """A TVM RPC tracker and two runtime-only RPC servers on loopback (key recom-test)."""
    port = free_port()
    env = dict(os.environ)
    # each in its own process group: the servers fork popen workers, which must go down with them
    procs = [subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port",
                               str(port), "--port-end", str(port + 1)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT, env=env, start_new_session=True)]
    logs = []
    try:
        _wait_for_port(port)
        for i in range(2):
            sport = free_port()
            log = open(tmp_path / f"server{i}.log", "w")
            logs.append(tmp_path / f"server{i}.log")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "tvm.exec.rpc_server", "--tracker", f"127.0.0.1:{port}", "--key",
                 "recom-test", "--host", "127.0.0.1", "--port", str(sport), "--port-end", str(sport + 20)],
                stdout=log, stderr=subprocess.STDOUT, env={**env, "TVM_USE_RUNTIME_LIB": "1"},
                start_new_session=True))
        tracker = tvm.rpc.connect_tracker("127.0.0.1", port)
        for _ in range(600):
            if "recom-test" in tracker.text_summary() and tracker.summary()["queue_info"].get(
                    "recom-test", {}).get("free", 0) == 2:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"RPC servers did not register: {tracker.text_summary()}")
        yield f"127.0.0.1:{port}", logs
    finally:
        for p in procs[::-1]:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(timeout=20)
        for p in procs:  # no worker of theirs is left behind
            for _ in range(100):
                try:
                    os.killpg(p.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.killpg(p.pid, signal.SIGKILL)
                raise AssertionError(f"process group {p.pid} ({p.args[2]}) outlived SIGTERM")


def _wait_for_port(port: int) -> None:
    for _ in range(600):  # importing tvm takes seconds on a loaded 2-core machine
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def test_tuning_through_an_rpc_tracker_with_two_servers(demo, rpc_cluster, tmp_path):
    tracker, logs = rpc_cluster
    work = str(tmp_path / "tune")
    runner = recom_tvm.schedules.rpc_runner(work, tracker, "recom-test", max_workers=2)
    db = recom_tvm.tune(demo.mod, "llvm", work, trials=6, batches=(32,), runner=runner, trials_per_iter=3,
                        quiet=True)
    trials = [json.loads(x) for x in open(os.path.join(work, "trials.jsonl"))]
    assert len(trials) == 7 and trials[0]["source"] == "default"  # the default, then 6 searched
    assert all(t["ms"] is not None and t["ms"] > 0 for t in trials), trials
    assert len(db.get_all_tuning_records()) == 7
    served = [open(p).read().count("load_module") for p in logs]
    assert sum(served) == 7 and min(served) >= 1, served  # both servers measured candidates
    summary = json.load(open(os.path.join(work, "summary.json")))["tasks"][0]
    assert summary["best_ms"] <= summary["default_ms"] and summary["trials"] == 7
    model = recom_tvm.build(demo.mod, "llvm", demo.params, database=db)
    f = DEMO.sample(32, rng=5)
    np.testing.assert_array_equal(model.run(f)["score"], demo.model.run(f)["score"])


RUNTIME_ONLY_MEASURE = BLOCK_IMPORTS + """
import recom_tvm.runtime.measure as m
rc = m.main(sys.argv[1:])
assert not [x for x in sys.modules if any(x == b or x.startswith(b + ".") for b in blocked)]
sys.exit(rc)
"""


def test_round_of_given_configs_round_trip(compiled, tmp_path):
    """export_configs with a work dir (a seeded round: given schedules, not searched; the default first, repeats
    measured once) -> measure with the runtime only -> import as the database's next round; build applies it."""
    demo = compiled(zoo.demo(), optimized=True)
    work, out = str(tmp_path / "work"), str(tmp_path / "seeded")
    fast = KernelConfig(threads=64, rows=2, linear_search=16)
    offline.export_configs(demo.mod, "llvm", out, {16: [fast, DEFAULT, fast]}, batches=(16,), work_dir=work)
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert manifest["round"] == 1
    assert [c["config"] for c in manifest["candidates"]] == [DEFAULT.to_json(), fast.to_json()]
    assert [c["default"] for c in manifest["candidates"]] == [True, False]
    res = run_runtime_only("-c", RUNTIME_ONLY_MEASURE, out, "--number", "2", "--repeat", "2", timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    results = json.load(open(os.path.join(out, "results.json")))
    for r in results["candidates"]:  # the default is fastest: only `fast` (made the fastest) decides
        r["ms"] = 2.0 if r["func"] == "cand_0" else 1.0
        r["runs_ms"] = [r["ms"]]
    json.dump(results, open(os.path.join(out, "results.json"), "w"))
    best = offline.import_round(demo.mod, "llvm", work, os.path.join(out, "results.json"), batches=(16,))
    assert list(best.values()) == [1.0]
    assert [t["source"] for t in map(json.loads, open(os.path.join(work, "trials.jsonl")))] == \
        ["default", "offline round 1"]
    assert schedules_from_database(demo.mod, recom_tvm.build_module.make_target("llvm"), work) == ((None, fast),)
    again = str(tmp_path / "again")  # the task has trials now: no default baseline, round 2
    offline.export_configs(demo.mod, "llvm", again, {16: [fast]}, batches=(16,), work_dir=work)
    manifest = json.load(open(os.path.join(again, "manifest.json")))
    assert manifest["round"] == 2 and not any(c["default"] for c in manifest["candidates"])


def test_offline_rounds_round_trip(demo, tmp_path):
    """export -> measure with the runtime only (a process that cannot load TVM's compiler) -> import, twice; the
    second round's cost model learns from the first; build applies the records."""
    from recom_tvm.__main__ import main

    work = str(tmp_path / "work")
    model = f"{demo.paths['pb']}"
    args = ["tune", model, "--signature", demo.paths["signature"], "--target", "llvm", "--work-dir", work,
            "--batches", "16,256", "--trials", "4"]
    for rnd in (1, 2):
        out = str(tmp_path / f"round{rnd}")
        assert main(args + ["--offline-export", out]) == 0
        manifest = json.load(open(os.path.join(out, "manifest.json")))
        assert manifest["round"] == rnd and len(manifest["candidates"]) == 2 * 4 + (2 if rnd == 1 else 0)
        res = run_runtime_only("-c", RUNTIME_ONLY_MEASURE, out, "--number", "2", "--repeat", "2", timeout=600)
        assert res.returncode == 0, res.stdout + res.stderr
        results = json.load(open(os.path.join(out, "results.json")))
        assert all(r["ok"] and r["ms"] > 0 for r in results["candidates"]), results
        assert main(args + ["--offline-import", os.path.join(out, "results.json")]) == 0
    trials = [json.loads(x) for x in open(os.path.join(work, "trials.jsonl"))]
    assert [t["source"] for t in trials].count("default") == 2 and len(trials) == 2 * (1 + 4 + 4)
    configs = {}
    for t in trials:  # no candidate measured twice
        key = (t["task"], json.dumps(t["config"], sort_keys=True))
        assert key not in configs
        configs[key] = t
    db = open_database(work)
    assert len(db.get_all_tuning_records()) == 18
    tasks = extract_tasks(demo.mod, "llvm", batches=(16, 256))
    tgt = recom_tvm.build_module.make_target("llvm")
    cm = offline.trained_cost_model(db, tasks, [recom_tvm.schedules.tune.make_context(t, tgt) for t in tasks], tgt)
    assert cm.data_size == 18
    built = recom_tvm.build(demo.mod, "llvm", demo.params, database=work)
    # build applies the records: each tuned batch runs its best record's config; two different winners meet at the
    # bucket edge 64 between the tuned batches, one winner for both is one bucket (which it is depends on the
    # timings: this assertion was flaky when it expected two)
    from recom_tvm.schedules.apply import tuned_configs
    from recom_tvm.schedules.tasks import find_fused_call

    best = tuned_configs(db, find_fused_call(demo.mod), tgt)
    assert sorted(best) == [16, 256]
    for b in (16, 256):
        cfg = next(c for lim, c in built.kernel_schedules if lim is None or b <= lim)
        assert cfg == best[b][0].to_json(), (b, cfg, best[b][0].to_json())
    edges = [lim for lim, _ in built.kernel_schedules]
    assert edges == ([64, None] if best[16][0] != best[256][0] else [None]), (edges, best)
    for batch in (5, 100, 400):
        f = DEMO.sample(batch, rng=batch)
        np.testing.assert_array_equal(built.run(f)["score"], demo.model.run(f)["score"])


def test_synthetic_requests_are_deterministic_and_in_range(mixed):
    """The request a GPU node regenerates from (layout, seed) is the tuning host's, bit for bit; its ids lie in
    their tables; bags hold 1-10 ids."""
    from recom_tvm.runtime.fused_layout import KIND, META
    from recom_tvm.runtime.synthetic import Distribution, fingerprint, synthetic_env, synthetic_packed
    from recom_tvm.schedules.tasks import find_fused_call

    call = find_fused_call(mixed.mod)
    a = synthetic_packed(call.meta, call.bounds, 64, seed=5)
    b = synthetic_packed(call.meta, call.bounds, 64, seed=5)
    assert fingerprint(a) == fingerprint(b) and fingerprint(a) != fingerprint(
        synthetic_packed(call.meta, call.bounds, 64, seed=6))
    for zipf in (0.0, 1.2):
        fused, env = synthetic_env(call.meta, call.bounds, 64, seed=1, dist=Distribution(zipf=zipf))
        for row, col in zip(call.meta.tolist(), fused["columns"]):
            rows = row[META.index("rows")]
            if row[0] == KIND["csr"]:
                ids = env[col["tensors"]["ids"]]
                counts = np.bincount(env[col["tensors"]["indices"]][:, 0], minlength=64)
                assert counts.min() >= 1 and counts.max() <= 10
                assert ids.min() >= 0 and ids.max() < rows
            elif row[0] == KIND["one"]:
                assert 0 <= env[col["tensors"]["ids"]].min() and env[col["tensors"]["ids"]].max() < rows
    (task,) = extract_tasks(mixed.mod, "llvm", batches=(64,))
    assert task.source["synthetic"]["seed"] == 64 and task.source["fingerprint"] == fingerprint(task.packed)
