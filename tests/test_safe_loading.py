"""Safe model loading: a SavedModel is screened (with recom_tvm's own protobuf schema) before TensorFlow may run any
of it; corrupt or truncated models give ModelFormatError."""

from __future__ import annotations

import os
import shutil

import pytest

import recom_tvm
from recom_tvm import tfproto as proto
from recom_tvm.frontend.screen import screen_saved_model
from recom_tvm.models import tf_export, zoo


def _save(tmp_path, module, name="sm"):
    import tensorflow as tf

    path = str(tmp_path / name)
    tf.saved_model.save(module, path, signatures=module.__call__.get_concrete_function())
    return path


def test_python_calling_ops_are_refused(tmp_path):
    import tensorflow as tf

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def __call__(self, x):
            return tf.py_function(lambda t: t * 2.0, [x], tf.float32)

    path = _save(tmp_path, M())
    with pytest.raises(recom_tvm.ModelFormatError, match="EagerPyFunc node .* runs Python code"):
        recom_tvm.from_tensorflow(path)


def test_file_reading_ops_are_refused_unless_allowed(tmp_path, monkeypatch):
    import tensorflow as tf

    secret = tmp_path / "secret.txt"
    secret.write_text("42")

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
        def __call__(self, name):
            return tf.strings.length(tf.io.read_file(name))

    path = _save(tmp_path, M())
    with pytest.raises(recom_tvm.ModelFormatError, match="ReadFile node .* opens a file"):
        recom_tvm.from_tensorflow(path)
    monkeypatch.setattr(recom_tvm.config, "allow_unsafe_paths", True)
    sm = proto.SavedModel()
    sm.ParseFromString(open(os.path.join(path, "saved_model.pb"), "rb").read())
    screen_saved_model(path, sm)  # allowed explicitly: the screen passes


def _vocab_model(tmp_path):
    import tensorflow as tf

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("a\nb\nc\n")

    class M(tf.Module):
        def __init__(self):
            super().__init__()
            init = tf.lookup.TextFileInitializer(str(vocab), tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                                                 tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER)
            self.table = tf.lookup.StaticHashTable(init, -1)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, x):
            return self.table.lookup(x)

    return _save(tmp_path, M(), "vocab_sm")


def _rewrite_asset(path: str, filename: str) -> None:
    pb = os.path.join(path, "saved_model.pb")
    sm = proto.SavedModel()
    sm.ParseFromString(open(pb, "rb").read())
    assert len(sm.meta_graphs[0].asset_file_def) == 1
    sm.meta_graphs[0].asset_file_def[0].filename = filename
    open(pb, "wb").write(sm.SerializeToString())


@pytest.mark.parametrize("escape", ["../../outside.txt", "/etc/hostname"])
def test_assets_outside_the_model_are_refused(tmp_path, escape):
    path = _vocab_model(tmp_path)
    _rewrite_asset(path, escape)
    with pytest.raises(recom_tvm.ModelFormatError, match="outside the model's directory"):
        recom_tvm.from_tensorflow(path)


def test_asset_symlink_out_of_the_model_is_refused(tmp_path):
    path = _vocab_model(tmp_path)
    (tmp_path / "elsewhere.txt").write_text("x\n")
    os.symlink(tmp_path / "elsewhere.txt", os.path.join(path, "assets", "link.txt"))
    _rewrite_asset(path, "link.txt")
    with pytest.raises(recom_tvm.ModelFormatError, match="'link.txt' lies outside"):
        recom_tvm.from_tensorflow(path)


def test_asset_inside_the_model_passes_the_screen(tmp_path):
    path = _vocab_model(tmp_path)
    sm = proto.SavedModel()
    sm.ParseFromString(open(os.path.join(path, "saved_model.pb"), "rb").read())
    screen_saved_model(path, sm)


@pytest.mark.parametrize("tf1", [False, True], ids=["tf2", "tf1"])
def test_truncated_saved_model_files(tmp_path, tf1):
    paths = tf_export.export(zoo.per_column_type()["hash_int"], tf1=tf1)
    src = paths["tf1" if tf1 else "saved_model"]
    path = str(tmp_path / "sm")
    shutil.copytree(src, path)
    data_file = next(os.path.join(path, "variables", f) for f in os.listdir(os.path.join(path, "variables"))
                     if f.startswith("variables.data"))
    with open(data_file, "r+b") as f:
        f.truncate(max(1, os.path.getsize(data_file) // 3))
    with pytest.raises(recom_tvm.ModelFormatError):
        recom_tvm.from_tensorflow(path)
    pb = os.path.join(path, "saved_model.pb")
    data = open(pb, "rb").read()
    open(pb, "wb").write(data[: len(data) // 2])
    with pytest.raises(recom_tvm.ModelFormatError, match="saved_model.pb"):
        recom_tvm.from_tensorflow(path)
