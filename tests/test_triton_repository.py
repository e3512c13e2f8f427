"""The Triton repository without a server: config.pbtxt from the serving spec, the request format, and merging the
requests of a dynamic batch (answers equal to one run per request; a bad request never spoils its neighbours).
The real server runs in test_triton.py."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import recom_tvm
from recom_tvm.models import zoo
from recom_tvm.serving import batching, wire
from recom_tvm.serving.executor import Executor
from recom_tvm.serving.repository import config_pbtxt, export_triton
from test_tf1_graphs import defaults_saved_model


def _inputs(text: str) -> dict[str, tuple[str, str]]:
    return {m[0]: (m[1], m[2]) for m in re.findall(r'name: "([^"]+)", data_type: (\w+), dims: \[ ([^\]]*) \]', text)}


def test_config_from_the_serving_spec(compiled, tmp_path):
    c = compiled(zoo.demo(), optimized=True)
    model_dir = export_triton(c.model, str(tmp_path / "repo"), "demo")
    text = open(os.path.join(model_dir, "config.pbtxt")).read()
    ins = _inputs(text.split("output [")[0])
    # every feed: sparse features as their components, strings as BYTES, dense padded ids with a free width
    assert ins["tags.indices"] == ("TYPE_INT64", "-1, 2") and ins["tags.values"] == ("TYPE_STRING", "-1")
    assert ins["tags.dense_shape"] == ("TYPE_INT64", "2") and ins["user_id.values"] == ("TYPE_INT64", "-1")
    assert ins["item_ids"] == ("TYPE_INT64", "-1, -1") and ins["dense"] == ("TYPE_FP32", "-1, 4")
    assert len(ins) == len(wire.inputs(c.model.spec)) == 16
    outs = _inputs(text.split("output [")[1])  # the suite's models return their embedding stage too (conftest)
    assert outs["score"] == ("TYPE_FP32", "-1, 1") and set(outs) == {"score", "embedding"}
    assert "max_batch_size: 16" in text and "preferred_batch_size: [ 4, 8 ]" in text
    assert "max_queue_delay_microseconds: 1000" in text and "kind: KIND_CPU, count: 1" in text
    files = set(os.listdir(os.path.join(model_dir, "1")))
    assert {"model.py", "recom_model.so", "recom_model.so.spec.json", "recom_model.so.params.npz", "python"} <= files
    bundled = os.path.join(model_dir, "1", "python", "recom_tvm")
    assert os.path.exists(os.path.join(bundled, "runtime", "compiled_model.py"))
    assert not os.path.exists(os.path.join(bundled, "frontend"))  # the runtime only


def test_config_for_cuda_and_for_tf_examples(compiled):
    demo = compiled(zoo.demo(), optimized=True).model.spec
    text = config_pbtxt(demo, "cuda", "demo", instances=3, gpus=[0, 1], preferred_batch_sizes=(2, 8),
                        max_batch_requests=8, merge_requests=False)
    assert "kind: KIND_GPU, count: 3, gpus: [ 0, 1 ]" in text and "preferred_batch_size: [ 2, 8 ]" in text
    assert 'key: "recom_tvm_merge_requests" value: { string_value: "false" }' in text
    assert "kind: KIND_GPU, count: 2 }" in config_pbtxt(demo, "cuda", "demo")  # default: 2 per GPU
    ex = compiled(zoo.example_mix(), optimized=True).model.spec
    assert _inputs(config_pbtxt(ex, "llvm", "ex").split("output [")[0]) == {"examples": ("TYPE_STRING", "-1")}
    with pytest.raises(ValueError, match="preferred batch sizes"):
        config_pbtxt(demo, "llvm", "demo", preferred_batch_sizes=(32,))


def test_wire_round_trip_and_names():
    spec = zoo.demo()
    feeds = spec.sample(4, rng=3)
    features = [{"name": c.name, "kind": "dense" if c.kind in ("numeric", "bucketized") or c.input == "dense"
                 else "sparse"} for c in spec.columns] + [{"name": "dense", "kind": "dense"}]
    arrays = wire.to_wire(features, feeds)
    assert arrays["tags.values"].dtype == object and arrays["tags.values"].shape[0] == 1
    back = wire.from_wire(features, arrays)
    for name, value in feeds.items():
        for a, b in zip(value if isinstance(value, tuple) else (value,),
                        back[name] if isinstance(back[name], tuple) else (back[name],)):
            assert np.array_equal(np.asarray(a).astype(b.dtype) if b.dtype != object else
                                  np.array([x.encode() for x in np.asarray(a).ravel()], dtype=object), b.ravel()
                                  if b.dtype == object else b)
    assert sorted(map(str, wire.features_from_names(list(arrays)))) == sorted(map(str, features))
    with pytest.raises(ValueError, match="leading request dimension"):
        wire.from_wire(features, {k: v[0] for k, v in arrays.items()})


def _requests(spec, batches, hostile=False):
    return [spec.sample(b, rng=100 + i, hostile=hostile) for i, b in enumerate(batches)]


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-6)


def test_merged_batch_equals_one_run_per_request(compiled):
    c = compiled(zoo.demo(), optimized=True)
    spec = zoo.demo()
    reqs = _requests(spec, [8, 8, 8, 3, 8, 0]) + _requests(spec, [8, 8], hostile=True)
    ex = Executor(c.model)
    got = ex.run(reqs)
    for feeds, out in zip(reqs, got):
        _same(out, c.model.run(feeds))
        np.testing.assert_allclose(out["score"], c.ref(feeds), rtol=1e-5, atol=2e-5)
    assert ex.counters.merged_runs >= 1 and ex.counters.merged_requests >= 3 and ex.counters.errors == 0


def test_a_bad_request_in_a_batch_gets_its_own_error(compiled):
    c = compiled(zoo.demo(), optimized=True)
    spec = zoo.demo()
    good = _requests(spec, [6, 6, 6, 6])
    out_of_range = dict(good[0])
    idx, vals, shape = out_of_range["category"]
    out_of_range["category"] = (idx, np.where(np.arange(vals.size) == 0, 50, vals), shape)  # table has 50 rows
    shifted = dict(good[1])  # a row index past dense_shape: merging must not move it into a neighbour's rows
    idx, vals, shape = shifted["tags"]
    shifted["tags"] = (np.where(np.arange(idx.size).reshape(idx.shape) == 0, 7, idx), vals, shape)
    ragged_batch = dict(good[2], age=np.zeros((5, 1), np.float32))  # inconsistent batch sizes
    assert batching.Merger(c.model.spec).inspect(shifted) is None
    assert batching.Merger(c.model.spec).inspect(ragged_batch) is None
    batch = [good[0], out_of_range, good[1], shifted, good[2], ragged_batch, good[3]]
    ex = Executor(c.model)
    got = ex.run(batch)
    for i in (0, 2, 4, 6):
        _same(got[i], c.model.run(batch[i]))
    assert isinstance(got[1], recom_tvm.InvalidArgumentError) and "is not in [0, 50)" in str(got[1])
    assert isinstance(got[3], recom_tvm.InvalidArgumentError) and "out of bounds" in str(got[3])
    assert isinstance(got[5], recom_tvm.InvalidArgumentError) and "dimension 0 must be equal" in str(got[5])
    assert ex.counters.fallbacks >= 1 and ex.counters.errors == 3
    for feeds in (out_of_range, shifted, ragged_batch):  # TF rejects each too
        with pytest.raises(Exception):  # noqa: B017 - TF's own error types
            c.ref(feeds)


def test_merging_only_for_row_wise_models_and_equal_padding(compiled):
    c = compiled(zoo.demo(), optimized=True)
    m = batching.Merger(c.model.spec)
    assert m.reason is None
    a, b = _requests(zoo.demo(), [4, 4])
    b = dict(b, item_ids=np.pad(b["item_ids"], ((0, 0), (0, 1)), constant_values=-1))
    assert m.inspect(a)[1] != m.inspect(b)[1]  # different padded width: never merged together
    assert batching.plan([m.inspect(a)[1], m.inspect(b)[1], m.inspect(a)[1]], [4, 4, 4], 100) == [[0, 2], [1]]
    assert batching.plan([("k",)] * 3, [4, 4, 4], 8) == [[0, 1], [2]]  # at most max_rows rows per run

    class NotRowWise:
        features = c.model.spec.features
        placeholders = c.model.spec.placeholders
        symbols = c.model.spec.symbols
        outputs = [{"name": "total", "shape": ["1"]}]

    assert "not row-wise" in batching.Merger(NotRowWise).reason
    assert Executor(type("M", (), {"spec": NotRowWise})()).merge is False


def test_export_command(compiled, tmp_path):
    from recom_tvm.__main__ import main

    c = compiled(zoo.demo(), optimized=True)
    lib = str(tmp_path / "demo.so")
    c.model.export_library(lib)
    assert main(["export", lib, "--triton", str(tmp_path / "repo"), "--instances", "2", "--no-merge"]) == 0
    text = open(tmp_path / "repo" / "demo" / "config.pbtxt").read()
    assert "kind: KIND_CPU, count: 2" in text and '"recom_tvm_merge_requests" value: { string_value: "false"' in text


def defaults_model(path: str):
    """test_tf1_graphs' SavedModel with two placeholder_with_default inputs (a scalar score scale, a per-column id
    offset [2]) beside the ids -> (optimized CompiledModel, reference(feeds) -> {"emb", "score"} from TF)."""
    _, reference = defaults_saved_model(path)
    mod, params, _ = recom_tvm.from_tensorflow(path)
    return recom_tvm.build(recom_tvm.optimize(mod), "llvm", params), reference


def defaults_requests(rng) -> list[dict]:
    """Requests leaving the defaults out, feeding the scale (two equal, one other) or the offset, B = 0 included."""
    ids = lambda b: rng.integers(0, 12, (b, 2))  # noqa: E731
    return [{"ids": ids(2)}, {"ids": ids(3)}, {"ids": ids(0)}, {"ids": ids(4)},
            {"ids": ids(3), "scale": np.float32(-0.5)}, {"ids": ids(2), "scale": np.float32(-0.5)},
            {"ids": ids(2), "scale": np.float32(3.0), "offset": np.array([1, 1])},
            {"ids": np.array([[1, 2]]), "offset": np.array([20, 0])}]


def test_inputs_with_defaults_are_optional_and_merge(tmp_path):
    """Inputs with a default (placeholder_with_default) are optional Triton inputs: config.pbtxt says so, a client
    may leave them out, the backend takes the default (as Session.run). Requests that leave out the same ones, or
    feed equal values of a feature without a batch dim (the scalar scale, the [2] offset), merge into one run;
    each answer equals TF's and run()'s. An input without a default is still required, naming it."""
    model, reference = defaults_model(str(tmp_path / "sm"))
    text = config_pbtxt(model.spec, "llvm", "defaults")
    lines = {m[0]: m[1] for m in re.findall(r'\{ name: "([^"]+)",([^}]*)\}', text.split("output [")[0])}
    assert set(lines) == {"ids", "scale", "offset"}
    assert "optional: true" in lines["scale"] and "optional: true" in lines["offset"]
    assert "optional" not in lines["ids"]
    features = wire.features_json(model.spec)
    assert {f["name"]: f.get("optional", False) for f in features} == {"ids": False, "scale": True, "offset": True}
    assert [f["name"] for f in features if f.get("scalar")] == ["scale"]
    arrays = wire.to_wire(features, {"ids": np.zeros((3, 2), np.int64)})
    assert set(arrays) == {"ids"} and wire.from_wire(features, arrays).keys() == {"ids"}
    assert "dims: [ 1 ]" in lines["scale"]  # a scalar travels as [1] (Triton's dims may not be empty)
    arrays = wire.to_wire(features, {"ids": np.zeros((3, 2), np.int64), "scale": np.float32(0.5)})
    assert arrays["scale"].shape == (1, 1) and wire.from_wire(features, arrays)["scale"].shape == ()
    with pytest.raises(KeyError, match="missing feed for feature 'ids'"):
        wire.to_wire(features, {"scale": np.float32(1)})
    with pytest.raises(KeyError, match="missing input 'ids' .feature 'ids' has no default"):
        wire.from_wire(features, {"scale": np.ones((1,), np.float32)})
    merger = batching.Merger(model.spec)
    assert merger.reason is None
    reqs = defaults_requests(np.random.default_rng(0))
    keys = [merger.inspect(r)[1] for r in reqs]
    assert keys[0] == keys[1] == keys[2] == keys[3] and keys[4] == keys[5] and len(set(keys)) == 4
    ex = Executor(model)
    got = ex.run(reqs)
    for i, (feeds, out) in enumerate(zip(reqs, got)):
        exp = reference(feeds)
        _same(out, model.run(feeds))
        for name in ("emb", "score"):
            np.testing.assert_allclose(out[name], exp[name], rtol=1e-5, atol=2e-5, err_msg=f"request {i} {name}")
    assert ex.counters.merged_runs == 2 and ex.counters.merged_requests == 6 and ex.counters.errors == 0


def test_feeds_not_aligned_with_the_outputs_rows_merge_only_by_value():
    """In a graph without feature columns the batch is the outputs' dim 0 where it is a feed's dim 0. A dense feed
    with a dim 0 of its own (ids looked up as a set, a 1-row context) is not known to be row-aligned: requests
    merge only where its value is equal; a sparse one of its own rows stops merging."""

    class Raw:
        features = [{"name": "ids", "kind": "dense", "tensors": {"value": "ids:0"}},
                    {"name": "pool", "kind": "dense", "tensors": {"value": "pool:0"}}]
        placeholders = {"ids:0": {"dtype": "int64", "shape": [-1, 2]}, "pool:0": {"dtype": "int64", "shape": [-1]}}
        symbols = {"ids_dim0": "dim 0 of feed ids", "pool_dim0": "dim 0 of feed pool"}
        feed_symbols = {"ids_dim0": ["ids:0", 0, "shape"], "pool_dim0": ["pool:0", 0, "shape"]}
        outputs = [{"name": "score", "shape": ["ids_dim0"]}]

    m = batching.Merger(Raw)
    assert m.reason is None and [f["shared"] for f in m.features] == [False, True]
    a = {"ids": np.zeros((3, 2), np.int64), "pool": np.array([1, 2, 3])}
    b = {"ids": np.ones((3, 2), np.int64), "pool": np.array([1, 2, 3])}
    c = {"ids": np.ones((3, 2), np.int64), "pool": np.array([1, 2, 4])}
    assert m.inspect(a) == (3, m.inspect(b)[1]) and m.inspect(a)[1] != m.inspect(c)[1]
    merged = m.merge([a, b], [3, 3])
    assert merged["ids"].shape == (6, 2) and merged["pool"].tolist() == [1, 2, 3]

    class RawSparse(Raw):
        features = Raw.features + [{"name": "tags", "kind": "sparse", "tensors": {
            "indices": "t_i:0", "values": "t_v:0", "dense_shape": "t_s:0"}}]
        feed_symbols = {**Raw.feed_symbols, "t_dim0": ["t_s:0", 0, "value"]}

    assert "sparse feature 'tags'" in batching.Merger(RawSparse).reason
