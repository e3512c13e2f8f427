"""Regression tests for issue 13's failure classes in tables, strings and tf.sparse (the corpus in
tests/corpus/ runs the whole graphs; these pin each failure down on its own)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import recom_tvm
from conftest import assert_matches_tf
from corpus import ENTRIES, harness

tf = pytest.importorskip("tensorflow")


def _sig_outputs(entry) -> dict:
    return harness.artifact(entry)[1]["signature"]


# --------------------------------------------------------------------------- LookupTableImportV2 "unsupported"
def test_default_outputs_leave_out_table_initializers():
    """A TF1 freeze keeps the table initializers for init_all_tables; nothing reads them, so without the
    signature's outputs they were taken for outputs ('unsupported op LookupTableImportV2'). Now the outputs are
    the real sinks, and every user-style import names the score."""
    from recom_tvm.frontend.graph import Graph
    from recom_tvm.frontend.loader import _default_outputs

    entry = ENTRIES["tf1_vocab_list_indicator"]
    root, art = harness.artifact(entry)
    graph = Graph.from_bytes(open(os.path.join(root, art["pb"]), "rb").read())
    assert any(n.op == "LookupTableImportV2" for n in graph.nodes.values())
    outs = _default_outputs(graph)
    assert [t for _, t in outs] == [art["signature"]["outputs"]["score"]], outs
    for how in ("inputs_only", "no_signature", "outputs_only"):
        _, _, spec = harness.imported(entry, how)
        assert art["signature"]["outputs"]["score"] in [o["tensor"] for o in spec.outputs]


# ------------------------------------------------------------------- vocabulary files of a frozen graph (assets)
def _vocab_entry():
    entry = ENTRIES["tf1_vocab_file"]
    root, art = harness.artifact(entry)
    return entry, root, art


def test_vocabulary_file_path_refused_then_mapped(tmp_path):
    """The frozen graph names its vocabulary files by absolute paths that are not where the model is used: the
    import says how to map them; assets= and assets_dir= map them; results equal TF's on the mapped files."""
    entry, root, art = _vocab_entry()
    pb = os.path.join(root, art["pb"])
    with pytest.raises(recom_tvm.ModelFormatError, match=r"assets=.*assets_dir="):
        recom_tvm.from_tensorflow(pb, signature=art["signature"])
    by_map = recom_tvm.from_tensorflow(pb, signature=art["signature"], assets=harness.assets(entry))
    by_dir = recom_tvm.from_tensorflow(pb, signature=art["signature"], assets_dir=os.path.join(root, "vocab"))
    by_name = recom_tvm.from_tensorflow(pb, signature=art["signature"], assets={
        os.path.basename(k): v for k, v in harness.assets(entry).items()})
    for other in (by_dir, by_name):
        assert sorted(other[1]) == sorted(by_map[1])
        for k in by_map[1]:
            np.testing.assert_array_equal(other[1][k], by_map[1][k])
    model = recom_tvm.build(by_dir[0], "llvm", by_dir[1])
    feeds = entry.feeds(np.random.default_rng(3), 7, True)
    exp = harness.reference(entry)(feeds)
    got = model.run(feeds)
    for key in exp:
        assert_matches_tf(got[key], exp[key], key)


def test_vocabulary_file_outside_the_model(tmp_path, monkeypatch):
    """The issue's case: the path exists but lies outside the .pb's folder. Refused by default (the message
    names assets= / assets_dir= / allow_unsafe_paths); with allow_unsafe_paths the text-file initializer
    imports (it was 'unsupported op InitializeTableFromTextFileV2'); a mapping to a file inside wins."""
    entry, root, art = _vocab_entry()
    outside = tmp_path / "elsewhere"
    shutil.copytree(os.path.join(root, "vocab"), outside)
    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(open(os.path.join(root, art["pb"]), "rb").read())
    for node in gd.node:
        vals = node.attr["value"].tensor.string_val if node.op == "Const" else []
        for i, v in enumerate(vals):
            if v.decode() in art["assets"]:
                vals[i] = str(outside / os.path.basename(v.decode())).encode()
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    pb = model_dir / "model.pb"
    pb.write_bytes(gd.SerializeToString())
    with pytest.raises(recom_tvm.ModelFormatError, match="outside the model's directory.*assets="):
        recom_tvm.from_tensorflow(str(pb), signature=art["signature"])
    with pytest.raises(recom_tvm.ModelFormatError, match="not a file"):
        recom_tvm.from_tensorflow(str(pb), signature=art["signature"], assets={"x": str(tmp_path / "missing")})
    with pytest.raises(recom_tvm.ModelFormatError, match="not a directory"):
        recom_tvm.from_tensorflow(str(pb), signature=art["signature"], assets_dir=str(tmp_path / "missing"))
    monkeypatch.setattr(recom_tvm.config, "allow_unsafe_paths", True)
    mod, params, spec = recom_tvm.from_tensorflow(str(pb), signature=art["signature"])
    assert not any(n["op"].startswith("Initialize") for n in spec.host_plan)
    monkeypatch.setattr(recom_tvm.config, "allow_unsafe_paths", False)
    recom_tvm.from_tensorflow(str(pb), signature=art["signature"], assets_dir=str(outside))


def test_assets_are_for_frozen_graphs():
    entry = ENTRIES["tf2_lookup_tables_saved_model"]
    root, art = harness.artifact(entry)
    with pytest.raises(recom_tvm.ModelFormatError, match="frozen GraphDef"):
        recom_tvm.from_tensorflow(os.path.join(root, art["saved_model"]), assets={"a": __file__})


# ------------------------------------------------------------------------------------- tf.strings errors
def test_string_to_number_bad_text_raises_like_tf():
    """tf.strings.to_number of text that is not a number: TF's InvalidArgumentError, from the compiled model too."""
    from corpus.tf_strings import _bad_numbers

    entry = ENTRIES["tf2_string_preprocessing"]
    model, _ = harness.built(entry, True)
    feeds = _bad_numbers(np.random.default_rng(5), 7, True)
    got, exp = harness.run_both(entry, model, feeds)
    assert isinstance(exp, Exception) and "could not correctly convert" in str(exp)
    assert isinstance(got, recom_tvm.InvalidArgumentError) and "could not correctly convert" in str(got)


def _frozen_pb(tmp_path, fn, *specs):
    cf = tf.function(fn).get_concrete_function(*specs)
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(cf)
    path = tmp_path / "m.pb"
    path.write_bytes(frozen.graph.as_graph_def().SerializeToString())
    return cf, str(path)


def test_unsupported_regex_is_refused_at_import(tmp_path):
    """A pattern outside the RE2 subset: ConversionError naming the node and the construct (never a silently
    different match)."""
    _, pb = _frozen_pb(tmp_path, lambda x: tf.strings.to_hash_bucket_fast(
        tf.strings.regex_replace(x, r"\p{Greek}+", "g"), 10), tf.TensorSpec([None], tf.string))
    with pytest.raises(recom_tvm.ConversionError, match=r"StaticRegexReplace.*Unicode classes"):
        recom_tvm.from_tensorflow(pb)


def test_regex_and_strings_match_tf_through_a_model(tmp_path):
    """A small preprocessing graph end to end, on hostile text (unicode, empty, separators only, long)."""
    def fn(x):
        s = tf.strings
        y = s.regex_replace(s.lower(s.strip(x), encoding="utf-8"), r"(\d+)", r"<\1>")
        toks = s.split(y, sep=",")
        n = s.length(y, unit="UTF8_CHAR")
        return tf.cast(n, tf.float32) + tf.cast(tf.reduce_sum(s.to_hash_bucket_fast(toks, 50), axis=1), tf.float32)

    cf, pb = _frozen_pb(tmp_path, fn, tf.TensorSpec([None], tf.string))
    mod, params, spec = recom_tvm.from_tensorflow(pb)
    model = recom_tvm.build(mod, "llvm", params)
    from corpus.registry import HOSTILE_STRINGS

    x = np.array(list(HOSTILE_STRINGS) + ["A1,b22,,C333", "ÀÉ 42 , x"], dtype=object)
    exp = cf(tf.constant([v.encode() for v in x])).numpy()
    got = model.run({spec.features[0]["name"]: x})
    assert_matches_tf(list(got.values())[0], exp, "strings")


# ------------------------------------------------------------------------------ float Maximum / Minimum
def test_clip_by_value_keeps_nan_and_signed_zeros(tmp_path):
    """TF's Maximum / Minimum return NaN when either operand is NaN (tf.clip_by_value(nan) is nan; TVM's max / min
    dropped the NaN). Which zero max(0.0, -0.0) returns differs between TF's own scalar and vectorized kernels,
    so signed zeros are compared as zeros."""
    cf, pb = _frozen_pb(tmp_path, lambda a, b: tf.concat([tf.maximum(a, b), tf.minimum(a, b),
                                                          tf.clip_by_value(a, -1.0, 1.0)], 1),
                        tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None, 4], tf.float32))
    mod, params, spec = recom_tvm.from_tensorflow(pb)
    model = recom_tvm.build(mod, "llvm", params)
    nan, inf = np.nan, np.inf
    a = np.array([[nan, 1.0, nan, 0.0], [-0.0, inf, -inf, 2.0]], np.float32)
    b = np.array([[1.0, nan, nan, -0.0], [0.0, nan, 3.0, 2.0]], np.float32)
    exp = cf(tf.constant(a), tf.constant(b)).numpy()
    got = list(model.run({spec.features[0]["name"]: a, spec.features[1]["name"]: b}).values())[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(exp))
    np.testing.assert_array_equal(np.nan_to_num(got), np.nan_to_num(exp))


# ----------------------------------------------------------------------------------------------- tf.sparse
def _sparse_model(tmp_path, fn):
    spec = tf.SparseTensorSpec([None, None], tf.int64)
    cf = tf.function(fn).get_concrete_function(spec)
    sm = tmp_path / "sm"
    mod = tf.Module()
    mod.f = tf.function(fn, input_signature=[spec])
    tf.saved_model.save(mod, str(sm), signatures={"serving_default": mod.f})
    mod_, params, ispec = recom_tvm.from_tensorflow(str(sm))
    return cf, recom_tvm.build(mod_, "llvm", params), ispec


def _check_sparse_model(tmp_path, fn, values: np.ndarray, what: str) -> None:
    """fn on a [3, 2] SparseTensor of `values` at (0, 0), (0, 1), (2, 0): the same answer or error as TF."""
    cf, model, spec = _sparse_model(tmp_path, fn)
    feed = (np.array([[0, 0], [0, 1], [2, 0]], np.int64), values, np.array([3, 2], np.int64))
    try:
        exp = cf(tf.SparseTensor(*feed)).numpy()
    except tf.errors.InvalidArgumentError as err:
        exp = err
    try:
        got = list(model.run({spec.features[0]["name"]: feed}).values())[0]
    except recom_tvm.RecomError as err:
        got = err
    assert_matches_tf(got, exp, what)


@pytest.mark.parametrize("ids", [[1, 3, 9], [1, 3, 10], [-1, 0, 2]])
def test_sparse_dense_matmul_range_errors(tmp_path, ids):
    """sparse_dense_matmul over ids used as columns: a column outside the dense operand raises like TF."""
    w = tf.constant(np.arange(20, dtype=np.float32).reshape(10, 2))

    def fn(sp):
        onehot = tf.SparseTensor(sp.indices, tf.ones_like(sp.values, tf.float32), sp.dense_shape)
        return tf.sparse.sparse_dense_matmul(tf.SparseTensor(
            tf.stack([sp.indices[:, 0], sp.values], 1), onehot.values, tf.stack([sp.dense_shape[0], 10])), w)

    _check_sparse_model(tmp_path, fn, np.array(ids, np.int64), f"ids {ids}")


@pytest.mark.parametrize("order", [[0, 1, 2], [1, 0, 2], [0, 0, 2]])
def test_to_dense_of_computed_indices_validates(tmp_path, order):
    """tf.sparse.to_dense of indices computed in the graph: unordered or repeated indices raise as in TF."""
    def fn(sp):
        idx = tf.gather(sp.indices, tf.constant(order))
        return tf.sparse.to_dense(tf.SparseTensor(idx, tf.gather(sp.values, tf.constant(order)), sp.dense_shape))

    _check_sparse_model(tmp_path, fn, np.array([4, 5, 6], np.int64), f"order {order}")


# -------------------------------------------------------------------------------- value ranges of host results
def test_host_value_ranges_of_oov_vocabularies_and_buckets():
    """A vocabulary with OOV buckets computes SelectV2(ids != -1, ids, hash + size) on the host: the -1 default
    never reaches the output (its id filter is proven); Bucketize run on the host (a crossed column reads it)
    ranges over [0, len(boundaries)]."""
    from types import SimpleNamespace

    from tvm import relax

    from recom_tvm.passes.value_ranges import ValueRanges

    plan = [
        {"name": "find", "op": "LookupTableFind", "inputs": [{"tensor": "x:0"}],
         "attrs": {"keys": ["a", "b"], "values": [0, 1], "value_dtype": "int64", "default": -1},
         "outputs": ["find:0"]},
        {"name": "ne", "op": "NotEqual", "inputs": [{"tensor": "find:0"}, {"const": -1, "dtype": "int64"}],
         "attrs": {}, "outputs": ["ne:0"]},
        {"name": "hash", "op": "StringToHashBucketFast", "inputs": [{"tensor": "x:0"}], "attrs": {"num_buckets": 3},
         "outputs": ["hash:0"]},
        {"name": "add", "op": "AddV2", "inputs": [{"tensor": "hash:0"}, {"const": 2, "dtype": "int64"}], "attrs": {},
         "outputs": ["add:0"]},
        {"name": "sel", "op": "SelectV2", "inputs": [{"tensor": "ne:0"}, {"tensor": "find:0"}, {"tensor": "add:0"}],
         "attrs": {}, "outputs": ["sel:0"]},
        {"name": "bkt", "op": "Bucketize", "inputs": [{"tensor": "age:0"}], "attrs": {"boundaries": [0.0, 1.0, 2.0]},
         "outputs": ["bkt:0"]},
        {"name": "cast", "op": "Cast", "inputs": [{"tensor": "bkt:0"}], "attrs": {"DstT": "int64"},
         "outputs": ["cast:0"]}]
    inputs = [{"name": n, "source": "host", "ref": f"{n}:0", "kind": "tensor"} for n in ("find", "sel", "cast")]
    spec = SimpleNamespace(host_plan=plan, module_inputs=inputs)
    bb = relax.BlockBuilder()
    with bb.function("main", []):
        bb.emit_func_output(relax.const(0, "int32"))
    ranges = ValueRanges(bb.finalize()["main"], spec).input_ranges
    assert ranges == {"find": (-1, 1), "sel": (0, 4), "cast": (0, 3)}, ranges
