"""Vocabulary columns (categorical_column_with_vocabulary_list / _file) from every source: the tables' contents
are recovered at import (TF1 initializers, TF2 captured tables, vocabulary files inside the model), string keys
looked up in the host stage, integer keys in the compiled module; all against TensorFlow."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import recom_tvm
from recom_tvm.models import tf_export, zoo

from conftest import assert_matches_tf

TYPES = {k: v for k, v in zoo.per_column_type().items() if k.startswith("vocab")}


@pytest.mark.parametrize("source", ["saved_model", "tf1"])
@pytest.mark.parametrize("name", sorted(TYPES))
def test_vocabulary_columns_from_saved_models(compiled, name, source):
    for optimized in (False, True):
        c = compiled(TYPES[name], source=source, optimized=optimized)
        for batch in (1, 64):
            for hostile in (False, True):
                got, exp = c.run_both(c.spec.sample(batch, rng=batch + hostile, hostile=hostile))
                assert_matches_tf(got, exp, f"{name} {source} optimized={optimized} batch={batch}")


def test_integer_keys_are_looked_up_in_the_compiled_module(compiled):
    from recom_tvm import report

    c = compiled(TYPES["vocab_int_default"], optimized=True)
    assert report.relax_op_counts(c.mod)["recom.table_find"] == 1
    assert not any(n["op"] == "LookupTableFind" for n in c.ispec.host_plan)
    s = compiled(TYPES["vocab_string"], optimized=True)
    assert [n["op"] for n in s.ispec.host_plan] == ["LookupTableFind"]
    assert report.device_syncs(c.mod) == 0 and report.device_syncs(s.mod) == 0


def test_keys_outside_the_vocabulary(compiled):
    """Unknown keys: dropped (default -1), the default id, or an OOV hash bucket, as TF."""
    for name in ("vocab_string", "vocab_int_default", "vocab_string_oov"):
        c = compiled(TYPES[name], optimized=True)
        spec = c.spec
        col = spec.columns[0]
        unknown = ["nope", "", "v30", "v-1"] if col.strings else [-7, 0, 10**12, 4]
        feeds = spec.sample(2, rng=0)
        feeds["x"] = (np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.int64), np.array(unknown, dtype=object if
                      col.strings else np.int64), np.array([2, 2], np.int64))
        got, exp = c.run_both(feeds)
        assert_matches_tf(got, exp, name)


def test_tf2_frozen_graph_without_its_tables_is_a_clear_error(tmp_path):
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = TYPES["vocab_string"]
    paths = tf_export.export(spec)
    loaded = tf.saved_model.load(paths["saved_model"])
    frozen = convert_variables_to_constants_v2(loaded.serve.get_concrete_function())
    pb = tmp_path / "bare.pb"
    pb.write_bytes(frozen.graph.as_graph_def().SerializeToString())
    with pytest.raises(recom_tvm.ConversionError, match="Import the SavedModel instead.*freeze_with_tables"):
        recom_tvm.from_tensorflow(str(pb), signature=paths["signature"])


def test_vocabulary_file_must_be_inside_the_model(tmp_path, monkeypatch):
    """A TF1 SavedModel's vocabulary is read from its assets/; a frozen graph's vocabulary path is resolved in
    the graph's directory, and one outside it is refused unless allowed."""
    spec = TYPES["vocab_file_oov"]
    src = tf_export.export(spec, tf1=True)["tf1"]
    path = str(tmp_path / "tf1")
    shutil.copytree(src, path)
    os.remove(os.path.join(path, "assets", "x_vocab.txt"))
    with pytest.raises(recom_tvm.ModelFormatError):
        recom_tvm.from_tensorflow(path)
    from recom_tvm.frontend.tables import resolve_vocab_path

    outside = tmp_path / "elsewhere" / "v.txt"
    outside.parent.mkdir()
    outside.write_text("a\n")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    with pytest.raises(recom_tvm.ModelFormatError, match="outside the model's directory"):
        resolve_vocab_path(str(outside), str(model_dir), "test")
    (model_dir / "assets").mkdir()
    (model_dir / "assets" / "v.txt").write_text("a\n")
    assert resolve_vocab_path(str(outside), str(model_dir), "test") == str(model_dir / "assets" / "v.txt")
    monkeypatch.setattr(recom_tvm.config, "allow_unsafe_paths", True)
    assert resolve_vocab_path(str(outside), str(tmp_path / "other"), "test") == str(outside)


def test_vocabulary_mix_fuses_around_the_integer_lookup(compiled):
    """String-key columns fuse (their ids come from the host stage); the int-key column keeps its compiled
    lookup and bag and is written into its slice of the fused output: one fused kernel, no concat of columns."""
    from recom_tvm import report
    from recom_tvm.passes import identify_columns

    spec = zoo.vocab_mix()
    c = compiled(spec, optimized=True)
    ops = {col.name: col.op for col in identify_columns(c.mod)}
    assert ops.pop("e_embedding") == "recom.embedding_bag"
    assert set(ops.values()) == {"recom.fused_embedding"} and len(ops) == 5
    counts = report.relax_op_counts(c.mod)
    assert counts["recom.fused_embedding"] == 1 and counts["recom.write_slice"] == 1
    assert report.device_syncs(c.mod) == 0
    slots = sorted(col.concat_slot for col in identify_columns(c.mod))
    assert slots == [(0, 8), (8, 8), (16, 4), (20, 8), (28, 8), (36, 8)]
    for batch in (1, 7, 512):
        for hostile in (False, True):
            got, exp = c.run_both(spec.sample(batch, rng=batch + hostile, hostile=hostile))
            assert_matches_tf(got, exp, f"vocab_mix batch={batch} hostile={hostile}")
