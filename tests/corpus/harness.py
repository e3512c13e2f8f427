"""Build (once, cached), run in TensorFlow, import, optimize, build and compare one corpus entry.

Artifacts live under `$RECOM_TVM_CACHE/corpus/<entry>-<key>/` (key: the entry's module source and TF's version),
written to a temporary directory first and renamed into place, so concurrent test workers never see half a model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

# TF's reference is its own kernels, not oneDNN's fused MatMul + Relu, which maps NaN to 0 (tests/conftest.py says
# why); set before TensorFlow is first imported in this process
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from recom_tvm import config  # noqa: E402
from recom_tvm.models.tf_graph import FrozenGraphRunner  # noqa: E402

from .registry import Entry  # noqa: E402

_ARTIFACTS: dict[str, tuple[str, dict]] = {}
_REFS: dict[str, object] = {}
_BUILT: dict[tuple[str, bool], tuple] = {}
_IMPORTED: dict[tuple[str, str], tuple] = {}


def _tf():
    import tensorflow as tf

    return tf


def artifact(entry: Entry) -> tuple[str, dict]:
    """(directory, artifact dict) of the entry's model, built on first use and cached on disk."""
    if entry.name in _ARTIFACTS:
        return _ARTIFACTS[entry.name]
    tf = _tf()
    key = hashlib.sha1((entry.source_key() + entry.name + tf.__version__).encode()).hexdigest()[:12]
    root = os.path.join(config.cache_dir, "corpus")
    final = os.path.join(root, f"{entry.name}-{key}")
    if not os.path.exists(os.path.join(final, "artifact.json")):
        os.makedirs(root, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{entry.name}-", dir=root)
        try:
            art = entry.build(tmp)
            with open(os.path.join(tmp, "artifact.json"), "w") as f:
                json.dump(art, f, indent=1)
            # a model may bake its own directory into the graph (vocabulary files): build where it will live
            try:
                os.rename(tmp, final)
            except OSError:  # another process (an xdist worker) renamed its build there first
                if not os.path.exists(os.path.join(final, "artifact.json")):
                    raise
                shutil.rmtree(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    with open(os.path.join(final, "artifact.json")) as f:
        art = json.load(f)
    _ARTIFACTS[entry.name] = (final, art)
    return final, art


# ------------------------------------------------------------------------------------------- TF references
class SavedModelReference:
    """A SavedModel's restored function (`call`, structured inputs) or its serving signature."""

    def __init__(self, path: str, call: str | None) -> None:
        tf = _tf()
        self.tf = tf
        self.loaded = tf.saved_model.load(path)
        self.fn = getattr(self.loaded, call) if call else self.loaded.signatures["serving_default"]

    def __call__(self, feeds: dict) -> dict:
        tf = self.tf
        fn = self.fn
        cf = fn.concrete_functions[0] if hasattr(fn, "concrete_functions") and fn.concrete_functions else fn
        args, kwargs = cf.structured_input_signature
        if len(args) == 1 and isinstance(args[0], dict):
            out = fn({k: _to_tf(tf, s, feeds[k]) for k, s in args[0].items()})
        elif args:
            names = [str(p) for p in cf.function_type.parameters][:len(args)]
            out = fn(*[_to_tf(tf, s, feeds[n]) for n, s in zip(names, args)])
        else:
            out = fn(**{k: _to_tf(tf, s, feeds[k]) for k, s in kwargs.items()})
        if not isinstance(out, dict):
            out = {"output_0": out}
        return {k: np.asarray(v) for k, v in out.items()}


class BadCorpusFeed(Exception):
    """An entry's feed generator made a value the model's input cannot hold (a bug of the entry, not a result)."""


def _to_tf(tf, spec, value):
    if isinstance(spec, tf.SparseTensorSpec):
        i, v, s = value
        return tf.SparseTensor(tf.constant(i, tf.int64), _const(tf, v, spec.dtype), tf.constant(s, tf.int64))
    if isinstance(spec, tf.RaggedTensorSpec):
        v, splits = value
        return tf.RaggedTensor.from_row_splits(_const(tf, v, spec.dtype), tf.constant(splits, spec.row_splits_dtype))
    return _const(tf, value, spec.dtype)


def _const(tf, value, dtype):
    """tf.constant, refusing feeds that do not fit the model's dtype (tf.constant would wrap them silently and
    the comparison would test the feed generator, not recom_tvm)."""
    arr = np.asarray(value)
    if dtype != tf.string and arr.dtype.kind in "iub" and np.dtype(dtype.as_numpy_dtype) != arr.dtype:
        if not np.array_equal(arr.astype(dtype.as_numpy_dtype).astype(arr.dtype), arr):
            raise BadCorpusFeed(f"corpus feed of {arr.dtype} values that do not fit the model's {dtype.name}: fix the "
                             "entry's feed generator")
    return tf.constant(value, dtype)


def reference(entry: Entry):
    """TF's own run of the entry's model: feeds -> {output: array}."""
    if entry.name not in _REFS:
        root, art = artifact(entry)
        if "pb" in art:
            _REFS[entry.name] = FrozenGraphRunner(os.path.join(root, art["pb"]), art["signature"],
                                                  assets=assets(entry))
        else:
            _REFS[entry.name] = SavedModelReference(os.path.join(root, art["saved_model"]), art.get("call"))
    return _REFS[entry.name]


# ------------------------------------------------------------------------------------------------ recom_tvm
def assets(entry: Entry) -> dict:
    """{path baked into the graph: local file} of the entry's vocabulary files (see registry)."""
    root, art = artifact(entry)
    return {k: os.path.join(root, v) for k, v in art.get("assets", {}).items()}


def imported(entry: Entry, how: str = "signature"):
    """(mod, params, spec) of the entry's model through recom_tvm's importer (host fallback off), imported once
    per session and way (a SavedModel's import loads and freezes it in TensorFlow: seconds).

    how (frozen graphs): "signature" (inputs and outputs given), or as users often import a .pb:
    "inputs_only" (the signature's inputs; outputs: the graph's sinks), "no_signature" (features found from
    the placeholders, outputs the sinks), "outputs_only" (outputs=[...] only)."""
    key = (entry.name, how)
    if key not in _IMPORTED:
        _IMPORTED[key] = _import(entry, how)
    return _IMPORTED[key]


def _import(entry: Entry, how: str):
    import recom_tvm

    root, art = artifact(entry)
    if "pb" not in art:
        return recom_tvm.from_tensorflow(os.path.join(root, art["saved_model"]))
    pb, sig = os.path.join(root, art["pb"]), art["signature"]
    kw = {"assets": assets(entry)} if art.get("assets") and art.get("import_assets", True) else {}
    if how == "signature":
        return recom_tvm.from_tensorflow(pb, signature=sig, **kw)
    if how == "inputs_only":
        return recom_tvm.from_tensorflow(pb, signature={"inputs": sig["inputs"]}, **kw)
    if how == "no_signature":
        return recom_tvm.from_tensorflow(pb, **kw)
    if how == "outputs_only":
        return recom_tvm.from_tensorflow(pb, outputs=[sig["outputs"][k] for k in sorted(sig["outputs"])], **kw)
    raise ValueError(how)


def built(entry: Entry, optimized: bool):
    """(CompiledModel for llvm, the Relax module it was built from), built once per session."""
    import recom_tvm

    key = (entry.name, optimized)
    if key not in _BUILT:
        mod, params, _ = imported(entry)
        if optimized:
            mod = recom_tvm.optimize(mod)
        _BUILT[key] = (recom_tvm.build(mod, "llvm", params), mod)
    return _BUILT[key]


def run_both(entry: Entry, model, feeds: dict):
    """(ours, TF's): output dicts, or the exception each raised."""
    try:
        exp = reference(entry)(feeds)
    except BadCorpusFeed:
        raise
    except Exception as err:  # noqa: BLE001
        exp = err
    try:
        got = model.run(feeds)
    except Exception as err:  # noqa: BLE001
        got = err
    from conftest import assert_host_paths_agree

    assert_host_paths_agree(model, feeds)  # the native host stage gives the reference's arguments / errors
    return got, exp
