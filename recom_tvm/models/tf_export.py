"""ModelSpec -> TensorFlow models (tf_keras DenseFeatures), exported and cached; and TF as the reference.

Artifacts per spec, under `config.cache_dir/models/<name>-<hash>/`:
  saved_model/       TF2 SavedModel, signature "serving_default" (feature dict -> {"score"}); the serving
                     function only, without tf_keras's layer traces (save_serving)
  model.pb           the same, frozen (variables -> constants), importable without TensorFlow
  signature.json     feature -> placeholder names of model.pb, and its outputs
  tf1/               (on request) an Estimator-style TF1 SavedModel built in graph mode
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil

import numpy as np

from .. import config
from .spec import ColumnSpec, ModelSpec

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _tf():
    import tensorflow as tf

    quiet_tensorflow(tf)
    return tf


def quiet_tensorflow(tf) -> None:
    """The generator writes feature columns on purpose (they are what production models hold): TF's deprecation
    notices about them (two lines per column) are noise on a user's first screen."""
    from tensorflow.python.util import deprecation

    deprecation._PRINT_DEPRECATION_WARNINGS = False
    tf.get_logger().setLevel("ERROR")


def _tf_dtype(tf, c: ColumnSpec):
    return tf.string if c.strings else tf.int64


def input_signature(spec: ModelSpec) -> dict:
    tf = _tf()
    sig = {}
    for c in spec.columns:
        if c.kind == "crossed":
            continue  # reads the crossed columns' features
        if c.kind == "numeric":
            sig[c.name] = tf.TensorSpec([None, c.dim], tf.float32)
        elif c.kind == "bucketized":
            sig[c.name] = tf.TensorSpec([None, 1], tf.float32)
        elif c.input == "sparse":
            sig[c.name] = tf.SparseTensorSpec([None, None], _tf_dtype(tf, c))
        else:
            sig[c.name] = tf.TensorSpec([None, None], _tf_dtype(tf, c))
        if c.weighted:
            sig[c.weight_feature] = tf.SparseTensorSpec([None, None], tf.float32)
    if spec.dense_width:
        sig["dense"] = tf.TensorSpec([None, spec.dense_width], tf.float32)
    return sig


def normalizer_fn(name: str):
    """A numeric column's normalizer_fn in TF (spec.NORMALIZERS has the numpy forms)."""
    tf = _tf()
    return {"div100": lambda v: v / 100.0, "shift3": lambda v: v + 3.0, "relu": tf.nn.relu, "log": tf.math.log,
            "clip": lambda v: tf.clip_by_value(v, -0.5, 0.5), "affine": lambda v: v * 2.0 + 1.0}[name]


def _vocab_file(c: ColumnSpec, vocab_dir: str) -> str:
    """Write the column's vocabulary file (one entry per line) and return its path."""
    os.makedirs(vocab_dir, exist_ok=True)
    path = os.path.join(vocab_dir, f"{c.name}_vocab.txt")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write("".join(f"{v}\n" for v in c.vocabulary()))
    return path


@dataclasses.dataclass
class _Shared:
    key: str
    cat: object


def feature_columns(spec: ModelSpec, fc=None, vocab_dir: str | None = None) -> list:
    tf = _tf()
    fc = fc or tf.feature_column
    vocab_dir = vocab_dir or os.path.join(artifact_dir(spec), "saved_model", "assets")
    cols = []
    for c in spec.columns:
        if c.kind == "numeric":
            cols.append(fc.numeric_column(c.name, shape=(c.dim,),
                                          normalizer_fn=normalizer_fn(c.normalizer) if c.normalizer else None))
            continue
        if c.kind == "bucketized":
            cat = fc.bucketized_column(fc.numeric_column(c.name), list(c.boundaries))
        elif c.kind == "hash_string":
            cat = fc.categorical_column_with_hash_bucket(c.name, c.buckets, dtype=tf.string)
        elif c.kind == "hash_int":
            cat = fc.categorical_column_with_hash_bucket(c.name, c.buckets, dtype=tf.int64)
        elif c.kind in ("vocab_string", "vocab_int"):
            dflt = -1 if c.default_value is None else c.default_value
            cat = fc.categorical_column_with_vocabulary_list(c.name, c.vocabulary(), dtype=_tf_dtype(tf, c),
                                                             default_value=dflt, num_oov_buckets=c.oov_buckets)
        elif c.kind == "crossed":
            cat = fc.crossed_column(list(c.cross), c.buckets)
        elif c.kind == "vocab_file":
            dflt = None if c.default_value is None else c.default_value
            cat = fc.categorical_column_with_vocabulary_file(c.name, _vocab_file(c, vocab_dir), c.buckets,
                                                             num_oov_buckets=c.oov_buckets, default_value=dflt,
                                                             dtype=tf.string)
        else:
            cat = fc.categorical_column_with_identity(c.name, c.buckets, default_value=c.default_value)
        if c.weighted:
            cat = fc.weighted_categorical_column(cat, c.weight_feature)
        if c.indicator:
            cols.append(fc.indicator_column(cat))
            continue
        if c.shared:  # placed below, once the group's categorical columns are known
            cols.append(_Shared(c.shared, cat))
            continue
        cols.append(fc.embedding_column(cat, c.dim, combiner=c.combiner))
    groups: dict[str, list] = {}
    for item in cols:
        if isinstance(item, _Shared):
            groups.setdefault(item.key, []).append(item.cat)
    if groups:
        v1fc = tf.compat.v1.feature_column
        built = {}
        for key, cats in groups.items():
            first = next(c for c in spec.columns if c.shared == key)
            built[key] = iter(v1fc.shared_embedding_columns(cats, first.dim, combiner=first.combiner,
                                                            shared_embedding_collection_name=f"shared_{key}"))
        cols = [next(built[item.key]) if isinstance(item, _Shared) else item for item in cols]
    return cols


def build_keras(spec: ModelSpec, vocab_dir: str | None = None):
    """The tf_keras model: DenseFeatures(columns) (+ bottom MLP on "dense") -> top MLP -> sigmoid."""
    tf = _tf()
    import tf_keras

    tf.random.set_seed(spec.seed)
    sig = input_signature(spec)
    inputs = {k: tf_keras.Input(type_spec=s, name=f"input_{k}") for k, s in sig.items()}
    feats = {k: v for k, v in inputs.items() if k != "dense"}
    x = tf_keras.layers.DenseFeatures(feature_columns(spec, vocab_dir=vocab_dir))(feats)
    parts = [x]
    if spec.dense_width:
        d = inputs["dense"]
        for w in spec.bottom_mlp:
            d = tf_keras.layers.Dense(w, activation="relu")(d)
        parts.append(d)
    x = tf_keras.layers.Concatenate()(parts) if len(parts) > 1 else x
    for w in spec.top_mlp:
        x = tf_keras.layers.Dense(w, activation="relu")(x)
    out = tf_keras.layers.Dense(1, activation="sigmoid")(x)
    return tf_keras.Model(inputs, out), sig


def to_tf_feeds(spec: ModelSpec, feeds: dict) -> dict | object:
    """Our numpy feeds -> TF tensors (SparseTensor for sparse features; the examples tensor)."""
    tf = _tf()
    if spec.example_input:
        return tf.constant(np.asarray(feeds["examples"], dtype=object), tf.string)
    sig = input_signature(spec)
    out = {}
    for k, s in sig.items():
        v = feeds[k]
        if isinstance(s, tf.SparseTensorSpec):
            idx, vals, shape = v
            vals = np.asarray(vals)
            if s.dtype == tf.string:
                vals = np.array([x if isinstance(x, bytes) else str(x).encode() for x in vals.reshape(-1)],
                                dtype=object)
            out[k] = tf.SparseTensor(tf.constant(idx, tf.int64), tf.constant(vals, s.dtype),
                                     tf.constant(shape, tf.int64))
        else:
            out[k] = tf.constant(v, s.dtype)
    return out


def parse_spec(spec: ModelSpec, columns: list) -> dict:
    """tf.io.parse_example's spec of an example_input model: the columns' features (+ "dense")."""
    tf = _tf()
    make = tf.compat.v1.feature_column.make_parse_example_spec if spec.tf1_only else \
        tf.feature_column.make_parse_example_spec  # v1 shared embedding columns are not v2 FeatureColumns
    out = make(columns)
    if spec.dense_width:
        out["dense"] = tf.io.FixedLenFeature([spec.dense_width], tf.float32)
    return out


def _serve_module(model, sig, spec: ModelSpec | None = None, columns: list | None = None):
    """A tf.Module holding the model and its serving function (nested feature dict, or serialized tf.Examples
    for an example_input spec -> {"score"})."""
    tf = _tf()
    mod = tf.Module()
    mod.model = model
    if spec is not None and spec.example_input:
        pspec = parse_spec(spec, columns)
        mod.serve = tf.function(lambda examples: {"score": model(tf.io.parse_example(examples, pspec))},
                                input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    else:
        mod.serve = tf.function(lambda features: {"score": model(features)}, input_signature=[sig])
    return mod


# Bumped whenever what export() writes changes for the same spec, so that caches of the old form are not reused.
# 2: the SavedModel holds the serving function only, without tf_keras's traces of every layer (see save_serving).
EXPORT_FORMAT = 2


def artifact_dir(spec: ModelSpec) -> str:
    key = spec.key() if EXPORT_FORMAT == 1 else f"{spec.key()}-x{EXPORT_FORMAT}"
    return os.path.join(config.cache_dir, "models", f"{spec.name}-{key}")


def save_serving(mod, path: str, concrete) -> None:
    """tf.saved_model.save of the serving module with tf_keras's own layer traces off.

    A tf_keras model reached by tf.saved_model.save re-traces, for its own loader (tf_keras.models.load_model),
    the call functions of the model and of every layer (call, __call__, call_and_return_conditional_losses,
    ...; DenseFeatures over all columns several times) and keeps those graphs in memory while writing: linear in
    the columns, but ~10x the serving function's own trace (model F, 1,200 columns: ~13 GB and most of the
    export's time). Nothing here loads the export with tf_keras (TFReference, from_tensorflow and the tests load
    it with tf.saved_model.load and call `serve` or the serving signature), so the traces are skipped, as
    tf_keras's `model.save(..., save_traces=False)` does; the variables, tables, assets and the serving function
    are saved as before."""
    tf = _tf()
    from tf_keras.src.saving.legacy.saved_model import utils as keras_saved_model_utils

    with keras_saved_model_utils.keras_option_scope(save_traces=False, in_tf_saved_model_scope=False):
        tf.saved_model.save(mod, path, signatures={"serving_default": concrete})


def export(spec: ModelSpec, tf1: bool = False) -> dict[str, str]:
    """Build and export (or reuse the cached) artifacts of `spec`; returns their paths."""
    root = artifact_dir(spec)
    paths = {"saved_model": os.path.join(root, "saved_model"), "pb": os.path.join(root, "model.pb"),
             "signature": os.path.join(root, "signature.json"), "root": root}
    if spec.tf1_only and not tf1:
        raise ValueError(f"model {spec.name}: shared embedding columns exist in TF1 graphs only "
                         "(TF2's shared_embeddings refuses eager mode); export with tf1=True")
    if tf1:
        paths["tf1"] = os.path.join(root, "tf1")
    done = [] if spec.tf1_only else [os.path.join(root, "DONE")]
    done += [os.path.join(root, "tf1", "DONE")] if tf1 else []
    if all(os.path.exists(d) for d in done):
        return paths
    # Exports are written in place (see _export_tf2): processes sharing the cache (pytest-xdist workers, two
    # benchmark scripts) take turns on a model's directory, and the one that waited finds it DONE.
    with _export_lock(root):
        if spec.tf1_only:
            os.makedirs(root, exist_ok=True)
        elif not os.path.exists(os.path.join(root, "DONE")):
            config.log(f"generating TF model {spec.name} ({len(spec.columns)} columns) into {root}")
            _export_tf2(spec, root)
        if tf1 and not os.path.exists(os.path.join(root, "tf1", "DONE")):
            _export_tf1(spec, paths["tf1"])
    return paths


@contextlib.contextmanager
def _export_lock(root: str):
    """An exclusive lock on `root`'s export (a lock file beside it), held for the block."""
    os.makedirs(os.path.dirname(root), exist_ok=True)
    with open(root + ".lock", "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _export_tf2(spec: ModelSpec, root: str) -> None:
    tf = _tf()
    from ..frontend.loader import freeze_with_tables

    # Written in place (DONE marks a finished export): a vocabulary file's path is baked into the TF2 graph
    # (tf_keras builds tables in graph mode, so they are not tracked as assets); it must stay valid and lie
    # inside the SavedModel's directory, hence saved_model/assets/ from the start.
    if os.path.exists(root):
        shutil.rmtree(root)
    tmp = root
    os.makedirs(os.path.join(tmp, "saved_model", "assets"))
    vocab_dir = os.path.join(tmp, "saved_model", "assets")
    model, sig = build_keras(spec, vocab_dir=vocab_dir)
    mod = _serve_module(model, sig, spec, feature_columns(spec, vocab_dir=vocab_dir))
    concrete = mod.serve.get_concrete_function()
    save_serving(mod, os.path.join(tmp, "saved_model"), concrete)
    # frozen with its lookup tables as constants (TF2 freezing alone leaves them as resource inputs)
    graph_def, frozen = freeze_with_tables(concrete)
    with open(os.path.join(tmp, "model.pb"), "wb") as f:
        f.write(graph_def.SerializeToString())
    flat = [t.name for t in frozen.inputs[: len(tf.nest.flatten(sig, expand_composites=True))]]
    inputs, i = {}, 0
    if spec.example_input:
        sig, inputs = {}, {"examples": frozen.inputs[0].name}
    for k in sorted(sig):
        if isinstance(sig[k], tf.SparseTensorSpec):
            inputs[k] = dict(zip(("indices", "values", "dense_shape"), flat[i:i + 3]))
            i += 3
        else:
            inputs[k] = flat[i]
            i += 1
    with open(os.path.join(tmp, "signature.json"), "w") as f:
        json.dump({"inputs": inputs, "outputs": {"score": frozen.outputs[0].name}}, f, indent=1)
    open(os.path.join(tmp, "DONE"), "w").close()


def _export_tf1(spec: ModelSpec, out: str) -> None:
    """Estimator-style: graph mode, v1 feature columns, sparse placeholders, session freeze-able."""
    tf = _tf()
    v1 = tf.compat.v1
    if os.path.exists(out):
        shutil.rmtree(out)
    sig = input_signature(spec)
    with tf.Graph().as_default() as g:
        v1.set_random_seed(spec.seed)
        columns = feature_columns(spec, vocab_dir=os.path.join(os.path.dirname(out), "saved_model", "assets"))
        feats = {}
        if spec.example_input:  # Estimator-style serving: parse serialized tf.Examples in the graph
            examples = v1.placeholder(tf.string, shape=[None], name="examples")
            feats = v1.io.parse_example(examples, parse_spec(spec, columns))
        for k, s in sig.items():
            if spec.example_input:
                break
            if isinstance(s, tf.SparseTensorSpec):
                feats[k] = v1.sparse_placeholder(s.dtype, shape=[None, None], name=k)
            else:
                feats[k] = v1.placeholder(s.dtype, shape=s.shape, name=k)
        cat_feats = {k: v for k, v in feats.items() if k != "dense"}
        x = v1.feature_column.input_layer(cat_feats, columns)
        parts = [x]
        if spec.dense_width:
            d = feats["dense"]
            for j, w in enumerate(spec.bottom_mlp):
                d = _v1_dense(v1, tf, d, w, f"bottom{j}", "relu")
            parts.append(d)
        x = tf.concat(parts, axis=1) if len(parts) > 1 else x
        for j, w in enumerate(spec.top_mlp):
            x = _v1_dense(v1, tf, x, w, f"top{j}", "relu")
        score = _v1_dense(v1, tf, x, 1, "out", "sigmoid")
        with v1.Session(graph=g) as sess:
            sess.run([v1.global_variables_initializer(), v1.tables_initializer()])
            builder = v1.saved_model.Builder(out)
            served = {"examples": examples} if spec.example_input else feats
            sig_def = v1.saved_model.build_signature_def(
                inputs={k: v1.saved_model.build_tensor_info(v) for k, v in served.items()},
                outputs={"score": v1.saved_model.build_tensor_info(score)},
                method_name="tensorflow/serving/predict")
            builder.add_meta_graph_and_variables(sess, [v1.saved_model.tag_constants.SERVING],
                                                 signature_def_map={"serving_default": sig_def},
                                                 main_op=v1.tables_initializer(),
                                                 assets_collection=v1.get_collection(
                                                     v1.GraphKeys.ASSET_FILEPATHS))
            builder.save()
    open(os.path.join(out, "DONE"), "w").close()


def _v1_dense(v1, tf, x, width, name, act):
    w = v1.get_variable(f"{name}/kernel", [x.shape[1], width], initializer=v1.glorot_uniform_initializer())
    b = v1.get_variable(f"{name}/bias", [width], initializer=v1.zeros_initializer())
    y = tf.matmul(x, w) + b
    return tf.nn.relu(y) if act == "relu" else tf.sigmoid(y)


class TFReference:
    """TensorFlow running the exported model: the reference every test compares against."""

    def __init__(self, spec: ModelSpec, paths: dict | None = None, tf1: bool = False) -> None:
        self.spec = spec
        self.paths = paths or export(spec, tf1=tf1)
        self.tf1 = tf1
        self._fn = None

    def __call__(self, feeds: dict) -> np.ndarray:
        if self.tf1:
            return self._run_tf1(feeds)
        return self.run_tf(to_tf_feeds(self.spec, feeds))

    def run_tf(self, tf_feeds: dict) -> np.ndarray:
        """TF on feeds already converted with `to_tf_feeds` (what benchmarks time)."""
        if self._fn is None:
            self._loaded = _tf().saved_model.load(self.paths["saved_model"])
            self._fn = self._loaded.serve
        return self._fn(tf_feeds)["score"].numpy()

    def _run_tf1(self, feeds: dict) -> np.ndarray:
        tf = _tf()
        v1 = tf.compat.v1
        with tf.Graph().as_default() as g, v1.Session(graph=g) as sess:
            meta = v1.saved_model.loader.load(sess, [v1.saved_model.tag_constants.SERVING], self.paths["tf1"])
            sig = meta.signature_def["serving_default"]
            fd = {}
            for k, info in sig.inputs.items():
                v = feeds[k]
                if info.WhichOneof("encoding") == "coo_sparse":
                    c = info.coo_sparse
                    fd[c.indices_tensor_name], fd[c.values_tensor_name], fd[c.dense_shape_tensor_name] = v
                else:
                    fd[info.name] = v
            return sess.run(sig.outputs["score"].name, feed_dict=fd)
