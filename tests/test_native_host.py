"""The native host stage (runtime/native) against the numpy reference and TensorFlow.

Every differential test of the suite already runs both host paths on its requests (conftest.run_both). This file
adds: Fingerprint64 and the bucket modulo against TF on every length class and random unicode; string feeds in
every form numpy has; bad feeds (same error, same message, on both paths); host-plan ops forced to their numpy
fallback one by one; tf.Example and keyed-jagged ingress against TF; threads; export and load carrying the library.
"""

from __future__ import annotations


import numpy as np
import pytest

import recom_tvm
from recom_tvm import config
from recom_tvm.models import zoo
from recom_tvm.native_build import library_path
from recom_tvm.runtime import KeyedJagged
from recom_tvm.runtime.native import NativeHost, load_library

from conftest import assert_host_paths_agree, assert_matches_tf, in_threads

DEMO = zoo.demo()


def _lib():
    return load_library(library_path())


def _buffers(strings: list[bytes]):
    return b"".join(strings), np.array([len(s) for s in strings], np.int64)


def _random_strings(rng, n: int) -> list[bytes]:
    """Every length class of Fingerprint64 (0, 1-3, 4-7, 8-16, 17-32, 33-64, > 64, multiples of 64 and around)
    as random bytes, plus random unicode (CJK, emoji, combining marks) encoded as UTF-8."""
    out = [rng.integers(0, 256, size=length, dtype=np.uint8).tobytes() for length in range(0, 200)]
    out += [rng.integers(0, 256, size=int(length), dtype=np.uint8).tobytes() for length in (255, 256, 257, 1000)]
    alphabet = [chr(c) for c in list(range(32, 127)) + list(range(0x4E00, 0x4E40)) + [0x1F600, 0x1F680, 0x0301, 0xE9]]
    for _ in range(n):
        k = int(rng.integers(0, 90))
        out.append("".join(alphabet[i] for i in rng.integers(0, len(alphabet), size=k)).encode("utf-8"))
    return out


def test_fingerprint64_matches_tf_every_length_class():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    strings = _random_strings(rng, 300)
    data, lens = _buffers(strings)
    fp = np.frombuffer(_lib().fingerprint64(data, lens), np.uint64)
    for n in (2**63 - 1, 1000, 7, 1):
        exp = tf.strings.to_hash_bucket_fast(tf.constant(strings, dtype=tf.string), n).numpy()
        np.testing.assert_array_equal(fp % np.uint64(n), exp.astype(np.uint64), err_msg=f"mod {n}")
        got = np.frombuffer(_lib().fingerprint64(data, lens, n), np.uint64)  # the op's division-free modulo
        np.testing.assert_array_equal(got, exp.astype(np.uint64), err_msg=f"fastmod {n}")


def test_bucket_modulo_is_exact_for_every_divisor_size():
    rng = np.random.default_rng(1)
    strings = [rng.integers(0, 256, size=int(k), dtype=np.uint8).tobytes() for k in rng.integers(0, 80, 2000)]
    data, lens = _buffers(strings)
    fp = np.frombuffer(_lib().fingerprint64(data, lens), np.uint64)
    for n in [1, 2, 3, 10, 2**31 - 1, 2**32, 2**32 + 1, 2**40 + 7, 2**62 + 3, 2**63 - 1, 2**63, 2**64 - 1,
              *rng.integers(1, 2**63, 20, dtype=np.int64).tolist()]:
        got = np.frombuffer(_lib().fingerprint64(data, lens, int(n)), np.uint64)
        np.testing.assert_array_equal(got, fp % np.uint64(n), err_msg=f"mod {n}")


def test_string_feeds_in_every_numpy_form(demo):
    """object arrays of str / bytes (incl. non-ASCII and trailing NULs), 'S' and 'U' arrays, lists: the same
    arguments as the reference, and TF's answer."""
    feeds = DEMO.sample(6, rng=5)
    idx, vals, shape = feeds["tags"]
    words = ["caf\u00e9", "\u4e2d\u6587", "\U0001F600x", "", "a\x00b", "plain"] * (len(vals) // 6 + 1)
    forms = {
        "str objects": np.array(words[:len(vals)], dtype=object),
        "bytes objects": np.array([w.encode() for w in words[:len(vals)]], dtype=object),
        "bytes with a trailing NUL": np.array([w.encode() + b"\0" for w in words[:len(vals)]], dtype=object),
        "'U' array": np.array(words[:len(vals)]),
        "'S' array": np.array([w.encode() for w in words[:len(vals)]]),
        "list": [w for w in words[:len(vals)]],
    }
    for what, v in forms.items():
        f = dict(feeds, tags=(idx, v, shape))
        got, exp = demo.run_both(f)
        assert_matches_tf(got, exp, what)


BAD_FEEDS = {
    "missing feed": lambda f: f.pop("tags"),
    "unknown feed": lambda f: f.__setitem__("nope", np.zeros(3)),
    "float values for ints": lambda f: f.__setitem__("category", (f["category"][0], f["category"][1] + 0.5,
                                                                  f["category"][2])),
    "strings for floats": lambda f: f.__setitem__("age", f["age"].astype(str)),
    "ints for strings": lambda f: f.__setitem__("country", (f["country"][0], np.arange(len(f["country"][1])),
                                                            f["country"][2])),
    "wrong rank": lambda f: f.__setitem__("age", f["age"].reshape(-1)),
    "wrong static dim": lambda f: f.__setitem__("dense", np.zeros((3, 5), np.float32)),
    "index outside dense_shape": lambda f: f["tags"][0].__setitem__((0, 0), 3),
    "negative index": lambda f: f["tags"][0].__setitem__((0, 0), -1),
    "negative dense_shape": lambda f: f.__setitem__("tags", (f["tags"][0], f["tags"][1], np.array([-3, 6]))),
    "nnz mismatch": lambda f: f.__setitem__("tags", (f["tags"][0], f["tags"][1][:-1], f["tags"][2])),
    "batch mismatch": lambda f: f.__setitem__("age", DEMO.sample(5, rng=2)["age"]),
    "sparse feed not a triple": lambda f: f.__setitem__("tags", np.zeros((3, 2))),
    "sparse dict lacking a part": lambda f: f.__setitem__("tags", {"indices": f["tags"][0], "values": f["tags"][1]}),
    "lone surrogate": lambda f: f.__setitem__("country", (f["country"][0],
                                                          np.array(["\ud800"] * len(f["country"][1]), object),
                                                          f["country"][2])),
    "non-string objects": lambda f: f.__setitem__("country", (f["country"][0],
                                                              np.array([1.5] * len(f["country"][1]), object),
                                                              f["country"][2])),
    "identity id out of range": lambda f: f.__setitem__("category", (f["category"][0],
                                                                     f["category"][1] * 0 + 50, f["category"][2])),
    "not a dict": lambda f: [f.clear()],
}


def _error(fn, feeds):
    try:
        fn(feeds)
    except Exception as err:  # noqa: BLE001
        return err
    return None


@pytest.mark.parametrize("case", sorted(BAD_FEEDS))
def test_bad_feeds_give_the_references_error(demo, monkeypatch, case):
    feeds = DEMO.sample(3, rng=1)
    feeds = {k: tuple(np.array(x, copy=True) for x in v) if isinstance(v, tuple) else v for k, v in feeds.items()}
    if isinstance(BAD_FEEDS[case](feeds), list):
        feeds = [1, 2]
    native = demo.model.native_host()
    refusals = native.refusals
    exp = _error(demo.model.prepare_reference, feeds)
    if exp is not None:  # rejected before launch: the native path refuses, the reference names the error
        assert isinstance(exp, recom_tvm.RecomError) or case == "lone surrogate", exp
        assert demo.model.prepare_native(feeds) is None, "the native path took a request the reference rejects"
        assert native.refusals == refusals + 1
    got = _error(demo.model.run, feeds)
    monkeypatch.setattr(config, "host_stage", "numpy")
    ref = _error(demo.model.run, feeds)
    assert got is not None and type(got) is type(ref) and str(got) == str(ref), (got, ref)


def test_feeds_dicts_in_any_key_order_and_with_any_key_objects(demo):
    """The core reads a feeds dict in its own order and matches a key to its feature by identity with the last
    request's key at the same position, else by name: dicts of the same key objects, of the same keys in another
    order (identity misses at every position), of fresh key objects, and with one key unknown all give the
    reference's packed arguments (conftest) or its error, and answers as the numpy host stage."""
    base = DEMO.sample(4, rng=3)
    fresh = {"".join(list(k)): v for k, v in base.items()}  # equal keys, other objects
    assert all(a is not b for a, b in zip(fresh, base))
    orders = [base, dict(reversed(base.items())), fresh, base, dict(sorted(base.items())), fresh]
    for feeds in orders:
        got = demo.model.run(feeds)
        want = demo.model.run(dict(base))
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    unknown = dict(base)
    unknown["nope"] = unknown.pop(next(iter(unknown)))
    err = _error(demo.model.run, unknown)
    assert isinstance(err, recom_tvm.FeedError) and str(err) == str(_error(demo.model.prepare_reference, unknown))
    got = demo.model.run(base)  # the cache of positions, after a refusal
    np.testing.assert_array_equal(got["score"], demo.model.run(dict(base))["score"])


def test_arrays_read_directly_and_through_the_buffer_protocol_agree(demo):
    """Feed arrays are read through numpy's ABI-stable fields (checked once per dtype against the buffer protocol);
    views the direct path does not take (strided, Fortran order, non-native byte order, a negative stride) go
    through the buffer protocol or the reference's conversion: the same arguments and answers either way."""
    feeds = DEMO.sample(5, rng=7)
    assert_host_paths_agree(demo.model, feeds)
    on, checked = demo.model.native_host().lib.direct_numpy()
    assert on == 1 and checked >= 3, (on, checked)  # int64 indices, float32 values, object strings at least
    age = feeds["age"]
    idx, vals, shape = feeds["tags"]
    wide = np.zeros((age.shape[0], 2 * age.shape[1]), age.dtype)
    wide[:, ::2] = age
    forms = {"strided": dict(feeds, age=wide[:, ::2]),
             "Fortran order": dict(feeds, tags=(np.asfortranarray(idx), vals, shape)),
             "big-endian": dict(feeds, tags=(idx.astype(">i8"), vals, shape)),
             "reversed": dict(feeds, age=age[::-1][::-1]),
             "negative stride": dict(feeds, tags=(idx, vals[::-1].copy()[::-1], shape))}
    for what, f in forms.items():
        assert_host_paths_agree(demo.model, f)
        got, exp = demo.run_both(f)
        assert_matches_tf(got, exp, what)
    assert demo.model.native_host().lib.direct_numpy()[0] == 1


class _Word(str):
    """A str subclass: read with the GIL (not exactly str), like bytes and non-ASCII str."""


@pytest.mark.parametrize("parallel_min,outside", [(0, True), (1 << 40, True), (0, False)])
def test_string_elements_read_outside_the_gil_agree(demo, monkeypatch, parallel_min, outside):
    """Compact ASCII str elements of object arrays are read from CPython's string fields on the host stage's pool,
    outside the GIL (checked at import: STRINGS_OUTSIDE_GIL), the others with it; requests of several 16,384-element
    chunks mixing ASCII, non-ASCII, bytes and str subclasses give the reference's arguments bit for bit, and a
    non-string element in the last chunk the reference's error. Run on the pool and on the caller alone, and with
    the knob off (config.native_strings_outside_gil: every element with the GIL, as before)."""
    monkeypatch.setattr(config, "native_threads", 2)
    monkeypatch.setattr(config, "native_parallel_min", parallel_min)
    monkeypatch.setattr(config, "native_strings_outside_gil", outside)
    native = demo.model.native_host()
    assert native.lib.STRINGS_OUTSIDE_GIL == 1
    feeds = DEMO.sample(40, rng=9)
    n = 3 * 16384 + 123
    rows = np.sort(np.random.default_rng(1).integers(0, 40, n))
    idx = np.stack([rows, np.zeros(n, np.int64)], axis=1)
    idx[:, 1] = np.arange(n) - np.searchsorted(rows, rows)  # position within the row
    shape = np.array([40, int(idx[:, 1].max()) + 1])
    plain = np.array([f"w{i % 97}" for i in range(n)], dtype=object)
    mixed = plain.copy()
    mixed[5::1000] = "caf\u00e9"
    mixed[7::1500] = b"bytes"
    mixed[16384 + 3] = _Word("sub")
    mixed[-1] = "\U0001F600"
    bad = mixed.copy()
    bad[-2] = 7
    for what, vals in {"ASCII": plain, "mixed": mixed}.items():
        f = dict(feeds, tags=(idx, vals, shape))
        assert_host_paths_agree(demo.model, f)
        got, exp = demo.run_both(f)
        assert_matches_tf(got, exp, what)
    assert_host_paths_agree(demo.model, dict(feeds, tags=(idx, bad, shape)))  # the reference's error, natively
    with pytest.raises(recom_tvm.FeedError):
        demo.model.run(dict(feeds, tags=(idx, bad, shape)))
    assert native.lib.strings_outside_gil() is outside  # the request path applied the knob


def _packed(native, ctx, feeds) -> tuple:
    """native.request on `ctx` -> (argument layout, the staging buffer's bytes)."""
    staging = np.zeros(1 << 20, np.uint8)
    res = native.request(ctx, feeds, lambda n: (staging.ctypes.data, staging.size))
    assert res is not None, native.last_refusal
    return res[0], staging[:res[1]].tobytes()


def test_feeds_read_without_the_gil_in_the_usual_form(demo, monkeypatch):
    """A feeds dict in the usual form (each key the same object as the last request's at its position, exact numpy
    arrays, sparse features as tuples) is read with the GIL released (ingest_unlocked); any other form is read with
    the GIL as before, and after k misses in a row the next 2^k - 1 requests skip the attempt. Every request packs
    the same bytes as with the knob off (config.native_feeds_outside_gil), which the reference checks (conftest)."""
    monkeypatch.setattr(config, "native_threads", 1)
    native = demo.model.native_host()
    assert native.lib.FEEDS_OUTSIDE_GIL == 1
    base = DEMO.sample(6, rng=11)
    idx, vals, shape = base["tags"]
    mixed = vals.copy()
    mixed[::3] = "caf\u00e9"  # non-ASCII elements: read with the GIL after the stretch, still this path
    wide = np.zeros((6, 2), np.float32)
    wide[:, ::2] = base["price"]
    forms = [  # (feeds, read without the GIL?)
        (base, False),  # the context's first request: keys not yet known
        (base, True),
        (dict(base), True),  # another dict of the same key objects, in the same order
        (dict(base, tags=(idx, mixed, shape)), True),
        (dict(base, tags={"indices": idx, "values": vals, "dense_shape": shape}), False),  # a miss ...
        (base, False),  # ... so the next request skips the attempt
        (base, True),
        (dict(base, price=wide[:, ::2]), False),  # a strided view
        (dict(base, age=base["age"].tolist()), False),  # a list (the reference's conversion)
        (dict(reversed(base.items())), False),  # keys at other positions
        (base, False),  # (the first key now differs: read with the GIL, the positions learned again)
        (base, True),
        ({"".join(k): v for k, v in base.items()}, False),  # fresh key objects
    ]
    ctx = native.context()
    monkeypatch.setattr(config, "native_feeds_outside_gil", False)
    off = native.context()
    expected = [_packed(native, off, f) for f, _ in forms]
    assert native.lib.unlocked_reads(off) == (0, 0)
    monkeypatch.setattr(config, "native_feeds_outside_gil", True)
    for i, ((feeds, unlocked), want) in enumerate(zip(forms, expected)):
        hits = native.lib.unlocked_reads(ctx)[0]
        assert _packed(native, ctx, feeds) == want, i
        assert native.lib.unlocked_reads(ctx)[0] == hits + unlocked, i
    assert native.lib.feeds_outside_gil() is True
    for feeds, _ in forms:
        assert_host_paths_agree(demo.model, feeds)


def test_lossless_casts_and_odd_forms_stay_native(demo):
    """int32 indices, a SparseTensor-like object, a tuple of lists: converted by the reference's own conversion,
    then the rest of the request runs natively."""

    class ST:
        def __init__(self, triple):
            self.indices, self.values, self.dense_shape = triple

    feeds = DEMO.sample(4, rng=3)
    idx, vals, shape = feeds["category"]
    feeds["category"] = (idx.astype(np.int32), vals.astype(np.int32), shape.astype(np.int32))
    feeds["tags"] = ST(feeds["tags"])
    feeds["country"] = (feeds["country"][0].tolist(), feeds["country"][1].tolist(), feeds["country"][2].tolist())
    native = demo.model.native_host()
    refusals = native.refusals
    assert_host_paths_agree(demo.model, feeds)
    assert native.refusals == refusals


FALLBACK_MODELS = {"demo": zoo.demo(), "vocab": zoo.vocab_mix(), "crossed": zoo.crossed_mix(),
                   "hash_string_dense": zoo.per_column_type()["hash_string_dense"],
                   "indicator_vocab_string": zoo.per_column_type()["indicator_vocab_string"]}


@pytest.mark.parametrize("name", sorted(FALLBACK_MODELS))
def test_each_host_op_falls_back_to_numpy_cleanly(compiled, monkeypatch, name):
    """Each host-plan op type in turn runs in numpy (as an op the native core does not have would): the same
    arguments as the all-native and the reference paths."""
    spec = FALLBACK_MODELS[name]
    c = compiled(spec, optimized=True)
    ops = sorted({n["op"] for n in c.model.spec.host_plan})
    assert ops
    feeds = [spec.sample(b, rng=b, hostile=True) for b in (1, 9)]
    lib = load_library(c.model.host_library)
    for op in ops + [",".join(ops)]:
        monkeypatch.setattr(config, "native_fallback_ops", op)
        native = NativeHost(lib, c.model.spec)
        assert set(native.program.fallback_ops) == set(op.split(",")) & set(native.program.fallback_ops)
        for f in feeds:
            got = c.model.prepare_native(f, native)
            exp = c.model.prepare_reference(f)
            assert got is not None, native.last_refusal
            for a, b in zip(got, exp):
                assert (a.tobytes() == b.tobytes()) if isinstance(b, np.ndarray) else tuple(a) == tuple(b), op
        assert native.op_fallbacks >= len(feeds), op


def test_tf_examples_parse_natively(compiled):
    """Serialized tf.Examples straight into the packed buffer: TF's answers, no refusals; malformed examples give
    the reference's (TF's) errors."""
    spec = zoo.example_mix()
    c = compiled(spec, optimized=True)
    native = c.model.native_host()
    assert "ParseExampleV2" not in native.program.fallback_ops
    for batch in (1, 13, 200):
        feeds = spec.sample(batch, rng=batch)
        refusals = native.refusals
        got, exp = c.run_both(feeds)
        assert_matches_tf(got, exp, f"batch {batch}")
        assert native.refusals == refusals
    good = spec.sample(4, rng=7)["examples"]
    bad = {"truncated": good[1][:-3], "garbage": b"\xff\xff\xff", "empty": b""}
    for what, ser in bad.items():
        examples = np.array(list(good[:2]) + [ser] + list(good[3:]), dtype=object)
        got, exp = c.run_both({"examples": examples})
        assert_matches_tf(got, exp, what)


@pytest.mark.parametrize("parallel_min", [1 << 40, 0], ids=["caller", "pool"])
def test_keyed_jagged_requests(compiled, monkeypatch, parallel_min):
    """A keyed-jagged request gives the answer of the feeds it stands for (TF's), natively (its lengths counted on
    the calling thread or on the pool, outside the GIL); malformed ones give clear errors on both paths."""
    monkeypatch.setattr(config, "native_threads", 2)
    monkeypatch.setattr(config, "native_parallel_min", parallel_min)
    for spec in (DEMO, zoo.weighted_mix(), zoo.crossed_mix()):
        c = compiled(spec, optimized=True)
        native = c.model.native_host()
        for batch in (0, 1, 9, 64):
            feeds = spec.sample(batch, rng=batch, hostile=batch % 2 == 1)
            kjt = KeyedJagged.from_feeds(c.model.spec, feeds)
            refusals = native.refusals
            got = c.model.run(kjt)["score"]
            assert native.refusals == refusals, native.last_refusal
            np.testing.assert_array_equal(got, c.model.run(kjt.to_feeds(c.model.spec))["score"])
            _, exp = c.run_both(feeds)
            assert_matches_tf(got, exp, f"{spec.name} batch {batch}")
    c = compiled(DEMO, optimized=True)
    kjt = KeyedJagged.from_feeds(c.model.spec, DEMO.sample(5, rng=1))
    broken = {
        "lengths too short": dict(lengths=kjt.lengths[:-1]),
        "values short": dict(values={**kjt.values, "int64": kjt.values["int64"][:-1]}),
        "unknown key": dict(keys=("nope",) + kjt.keys[1:]),
    }
    first_dense = next(i for i, k in enumerate(kjt.keys) if c.model.spec.feature(k)["kind"] == "dense")
    longer = kjt.lengths.copy()
    longer[first_dense * kjt.batch] += 1
    broken["dense row of the wrong length"] = dict(lengths=longer)
    negative = kjt.lengths.copy()
    negative[0], negative[1] = -1, negative[1] + 1  # the values still add up
    broken["a negative length"] = dict(lengths=negative)
    if kjt.strings is not None:
        data, offsets = kjt.strings
        bad_offsets = offsets.copy()
        bad_offsets[1] = bad_offsets[-1] + 5  # past the bytes
        broken["string offsets past the bytes"] = dict(strings=(data, bad_offsets))
    for what, change in broken.items():
        bad = KeyedJagged(**{**kjt.__dict__, **change})
        with pytest.raises(recom_tvm.FeedError) as exp:
            c.model.prepare_reference(bad)
        with pytest.raises(recom_tvm.FeedError) as got:
            c.model.run(bad)
        assert str(got.value) == str(exp.value), what


@pytest.mark.parametrize("parallel_min,spin_us", [(0, 50), (0, 0), (1 << 40, 50)])
def test_threads_on_the_native_path(compiled, monkeypatch, parallel_min, spin_us):
    """8 threads, each with its own VM and staging buffer from the pool, native host stage in parallel (every
    request on the host stage's thread pool, or each on its serving thread alone: config.native_parallel_min; the
    pool's idle threads polling between stages or sleeping at once: config.native_spin_us): the single-threaded
    answers bit for bit, no refusal."""
    monkeypatch.setattr(config, "native_threads", 2)
    monkeypatch.setattr(config, "native_parallel_min", parallel_min)
    monkeypatch.setattr(config, "native_spin_us", spin_us)
    c = compiled(DEMO, optimized=True)
    native = c.model.native_host()
    native.lib.set_threads(2, parallel_min, spin_us)  # the library takes the knob (no fallback to two arguments)
    requests = [DEMO.sample(1 + 11 * k % 200, rng=50 + k) for k in range(24)]
    expected = [c.model.run(f)["score"] for f in requests]
    refusals = native.refusals
    bad = []

    def serve(t: int) -> None:
        for i in range(60):
            k = (i * 5 + t) % len(requests)
            if not np.array_equal(c.model.run(requests[k])["score"], expected[k]):
                bad.append((t, k))

    errors = in_threads(serve)
    assert not errors and not bad, (errors[:2], bad[:4])
    assert native.refusals == refusals


@pytest.mark.parametrize("name", sorted(FALLBACK_MODELS) + ["weighted", "mixed12"])
def test_task_graph_agrees_with_the_staged_run(compiled, monkeypatch, name):
    """A request's checks and host ops as one job of dependent tasks (config.native_task_graph, on two threads
    for every request) give the stage-by-stage run's arguments and the reference's, on hostile requests too (a
    feed that fails its check, ops whose input failed), and with each op type in numpy (the graph then goes on
    level by level from the op)."""
    spec = {**FALLBACK_MODELS, "weighted": zoo.weighted_mix(), "mixed12": zoo.mixed(12, seed=3)}[name]
    c = compiled(spec, optimized=True)
    monkeypatch.setattr(config, "native_threads", 2)
    monkeypatch.setattr(config, "native_parallel_min", 0)
    requests = [spec.sample(b, rng=7 * b + k, hostile=k % 2 == 1) for k, b in enumerate((1, 9, 300, 300))]
    lib = load_library(c.model.host_library)
    for fallback in [""] + sorted({n["op"] for n in c.model.spec.host_plan}):
        monkeypatch.setattr(config, "native_fallback_ops", fallback)
        native = NativeHost(lib, c.model.spec)
        for f in requests:
            outcomes = []
            for graph in (True, False):
                monkeypatch.setattr(config, "native_task_graph", graph)
                try:
                    outcomes.append(("ok", c.model.prepare_native(f, native)))
                except Exception as e:  # noqa: BLE001 - a hostile request's error, compared below
                    outcomes.append(("error", f"{type(e).__name__}: {e}"))
            (k1, a), (k2, b) = outcomes
            assert k1 == k2, (fallback, outcomes)
            if k1 == "error" or a is None or b is None:
                assert a == b, (fallback, a, b)
                continue
            for x, y in zip(a, b):
                assert (x.tobytes() == y.tobytes()) if isinstance(y, np.ndarray) else tuple(x) == tuple(y), fallback
            assert_host_paths_agree(c.model, f)


def test_numpy_host_stage_knob(compiled, monkeypatch):
    c = compiled(DEMO, optimized=True)
    monkeypatch.setattr(config, "host_stage", "numpy")
    assert c.model.native_host() is None
    feeds = DEMO.sample(5, rng=4)
    a = c.model.run(feeds)["score"]
    monkeypatch.setattr(config, "host_stage", "native")
    np.testing.assert_array_equal(c.model.run(feeds)["score"], a)


def test_prepare_reuses_its_buffer_only_once_the_caller_dropped_it(compiled):
    """prepare() writes into this thread's last buffer again (no fresh pages per request) only when no array it
    handed out of it is alive: arrays the caller keeps are never overwritten by later requests."""
    c = compiled(DEMO, optimized=True)
    model = c.model
    feeds = [DEMO.sample(b, rng=b) for b in (40, 41, 39, 40)]

    def data(args):
        return [x for x in args if isinstance(x, np.ndarray)]

    kept = model.prepare(feeds[0])
    copies = [x.copy() for x in data(kept)]
    later = model.prepare(feeds[1])  # `kept` alive: another buffer
    assert data(later)[0].ctypes.data != data(kept)[0].ctypes.data
    for x, y in zip(data(kept), copies):
        np.testing.assert_array_equal(x, y)
    where = data(later)[0].ctypes.data
    del later
    again = model.prepare(feeds[2])  # dropped (and a request no larger): its buffer again
    assert data(again)[0].ctypes.data == where
    for x, y in zip(data(kept), copies):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(data(again), data(model.prepare_reference(feeds[2]))):
        np.testing.assert_array_equal(x, y)


def test_export_carries_the_native_library(compiled, tmp_path):
    c = compiled(DEMO, optimized=True)
    lib = str(tmp_path / "m.so")
    c.model.export_library(lib)
    loaded = recom_tvm.load(lib)
    assert loaded.host_library == lib + ".host.so"
    native = loaded.native_host()
    assert native is not None, loaded.native_error
    feeds = DEMO.sample(17, rng=9)
    np.testing.assert_array_equal(loaded.run(feeds)["score"], c.model.run(feeds)["score"])
    assert native.refusals == 0


def test_cuda_model_host_side(compiled, tmp_path):
    """A CUDA build carries the same native host stage (its host side runs here without a GPU: the arguments are
    the reference's); running it, with the pinned staging buffer, is benchmarks/serving.py on the GPU machine."""
    from recom_tvm.cuda_support import nvcc_path

    if nvcc_path() is None:
        pytest.skip("nvcc (CUDA toolkit) is not installed on this host")
    c = compiled(DEMO, optimized=True)
    model = recom_tvm.build(c.mod, "cuda", c.params)
    assert model.native_host() is not None, model.native_error
    for batch in (1, 33):
        assert_host_paths_agree(model, DEMO.sample(batch, rng=batch, hostile=True))
    lib = str(tmp_path / "demo_cuda.so")
    model.export_library(lib)
    with open(lib + ".host.so", "rb") as a, open(model.host_library, "rb") as b:
        assert a.read() == b.read()


def test_integer_hashing_at_the_extremes(compiled):
    """AsString + StringToHashBucketFast of int64 extremes (the decimal text TF hashes), against TF."""
    spec = zoo.per_column_type()["hash_int"]
    c = compiled(spec, optimized=True)
    feeds = spec.sample(4, rng=0)
    vals = np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max, -1, 0, 10**18, -10**18, 99, -100],
                    np.int64)
    idx = np.array([[r, k] for r in range(4) for k in range(2)], np.int64)
    feeds["x"] = (idx, vals, np.array([4, 2], np.int64))
    got, exp = c.run_both(feeds)
    assert_matches_tf(got, exp, "int64 extremes")
