"""Shared fixtures: generated TF models (cached on disk), their TF references, and compiled recom_tvm models.

How the differential tests compare with TensorFlow (issue 14, "no silent wrong answers"):
- Every model is imported once and built twice: as imported (TF's graph op by op) and optimized (the pass
  pipeline: one fused llvm kernel where the columns fuse). `Compiled.run_both` runs both on every request, so a
  test that asks for one variant checks the other too.
- Both builds return the embedding stage (DenseFeatures' / input_layer's concat) beside the score, compared with
  TF's value of that tensor in the graph we import: a small ReLU head hides errors in rows where every unit is
  inactive.
- "Both raised" counts only when our error is the class `expected_error` maps TF's to.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TF's reference is its own kernels: on CPUs where TF turns oneDNN on by default (AVX-512 VNNI / BF16 hosts), the
# grappler-fused MatMul + BiasAdd + Relu runs in oneDNN, whose Relu maps NaN to 0 while TF's Relu kernel (and eager
# tf.nn.relu) keeps NaN: hostile NaN inputs then gave 0.5 or NaN by machine (keras3_feature_space, 2026-12-05).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# our tests must really convert every op: host co-run (TF fallback) only where a test turns it on
os.environ.setdefault("RECOM_TVM_HOST_FALLBACK", "0")
os.environ.setdefault("RECOM_TVM_CACHE", os.path.join(os.path.dirname(os.path.dirname(__file__)), ".cache"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import recom_tvm  # noqa: E402
from recom_tvm.models import tf_export, zoo  # noqa: E402

# Float tolerance: only summation order differs from TF (segment sums, matmuls).
ATOL = 2e-5
VARIANTS = ("imported", "optimized")


def expected_error(tf_err: BaseException) -> type:
    """The recom_tvm error class that stands for the error TF raised (the one place this mapping lives):
    TF's run-time InvalidArgumentError -> our InvalidArgumentError; a feed TF refuses before running anything
    (its conversion or signature check raises TypeError / ValueError) -> our FeedError."""
    import tensorflow as tf

    if isinstance(tf_err, tf.errors.InvalidArgumentError) or _op_error_not_decoded(tf_err):
        return recom_tvm.InvalidArgumentError
    if isinstance(tf_err, (TypeError, ValueError)) and not isinstance(tf_err, tf.errors.OpError):
        return recom_tvm.FeedError
    raise AssertionError(f"TF raised {type(tf_err).__name__}, which no recom_tvm error class stands for: "
                         f"{_first_line(tf_err)}")


def _op_error_not_decoded(err: BaseException) -> bool:
    """TF's eager runtime raises UnicodeDecodeError instead of an op's error when the message quotes bytes that
    are not UTF-8 (ParseExample quoting a malformed tf.Example): that stands for the op's InvalidArgumentError."""
    import traceback

    return isinstance(err, UnicodeDecodeError) and any(
        f.filename.replace(os.sep, "/").endswith("tensorflow/python/eager/execute.py")
        for f in traceback.extract_tb(err.__traceback__))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


@pytest.fixture(autouse=True, scope="session")
def _every_run_checks_both_host_paths():
    """Every CompiledModel.run of the suite (differential tests that call run() directly included) also checks
    that the native host stage and the numpy reference agree on its feeds (assert_host_paths_agree), wherever
    the native path is on (config.host_stage, a model built with its host library)."""
    from recom_tvm import config
    from recom_tvm.runtime.compiled_model import CompiledModel

    plain = CompiledModel.run
    checked: dict = {}  # (model, feeds) checked already -> the feeds, held so that their id is not reused

    def run(self, feeds):
        try:
            return plain(self, feeds)
        finally:
            key = (id(self), id(feeds))
            if config.host_stage == "native" and self.host_library and key not in checked:
                assert_host_paths_agree(self, feeds, documented_refusals_ok=True)
                if len(checked) < 4096:  # a request served many times (the threads tests) is checked once
                    checked[key] = (self, feeds)

    CompiledModel.run = CompiledModel.__call__ = run
    yield
    CompiledModel.run = CompiledModel.__call__ = plain


def _outcome(fn, feeds):
    try:
        return fn(feeds), None
    except Exception as err:  # noqa: BLE001
        return None, err


# refusals of valid feeds that are by design (NATIVE_HOST.md): the reference serves these forms
DOCUMENTED_REFUSALS = ("feeds other than one per feature, by feature name",)


def assert_host_paths_agree(model, feeds, documented_refusals_ok: bool = False) -> None:
    """The native host stage takes the request whenever the numpy reference accepts it, and gives the same packed
    buffer and arguments; where the reference raises, model.prepare raises the same error.
    documented_refusals_ok: a feed form the core hands to the reference by design (DOCUMENTED_REFUSALS) passes."""
    native = model.native_host()
    assert native is not None, f"the native host stage is off: {model.native_error}"
    refusals = native.refusals
    got, got_err = _outcome(model.prepare, feeds)
    exp, exp_err = _outcome(model.prepare_reference, feeds)
    if exp_err is not None:
        assert type(got_err) is type(exp_err) and str(got_err) == str(exp_err), (got_err, exp_err)
        return
    assert got_err is None, f"native raised {got_err!r}, the reference accepted the feeds"
    if native.refusals != refusals and documented_refusals_ok and \
            str(native.last_refusal).startswith(DOCUMENTED_REFUSALS):
        return
    assert native.refusals == refusals, f"the native host stage refused valid feeds: {native.last_refusal}"
    assert len(got) == len(exp)
    for i, (a, b) in enumerate(zip(got, exp)):
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape, (i, a.dtype, a.shape, b.dtype, b.shape)
            assert a.tobytes() == b.tobytes(), f"argument {i} differs from the reference"
        else:
            assert tuple(a) == tuple(b), (i, a, b)


def assert_matches_tf(got, exp, what: str = "") -> None:
    """Both raise (ours the error class `expected_error` maps TF's to) or both answer with the same values."""
    if isinstance(exp, BaseException):
        want = expected_error(exp)
        assert isinstance(got, want), (f"{what}: TF raised {type(exp).__name__} ({_first_line(exp)}), so recom_tvm "
                                       f"must raise {want.__name__}; it gave {got!r}")
        return
    if isinstance(got, BaseException):
        raise AssertionError(f"{what}: recom_tvm raised but TF answered") from got
    assert got.shape == exp.shape, f"{what}: shape {got.shape} vs TF {exp.shape}"
    np.testing.assert_allclose(got, exp, rtol=1e-5, atol=ATOL, err_msg=what)


def outcome(fn):
    """fn()'s result, or the exception it raised (for comparing outcomes)."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - compared by the caller
        return err


class TFGraph:
    """TensorFlow running a graph we import (session over a frozen GraphDef, or a TF1 SavedModel), fetching any
    of its tensors: the reference for outputs the serving signature does not return (the embedding stage)."""

    def __init__(self, graph_def=None, saved_model: str | None = None, inputs: dict | None = None) -> None:
        import tensorflow as tf

        v1 = tf.compat.v1
        self.graph = tf.Graph()
        self.sess = v1.Session(graph=self.graph)
        with self.graph.as_default():
            if saved_model is not None:
                meta = v1.saved_model.loader.load(self.sess, [v1.saved_model.tag_constants.SERVING], saved_model)
                sig = meta.signature_def["serving_default"]
                self.inputs = {}
                for k, info in sig.inputs.items():
                    if info.WhichOneof("encoding") == "coo_sparse":
                        c = info.coo_sparse
                        self.inputs[k] = {"indices": c.indices_tensor_name, "values": c.values_tensor_name,
                                          "dense_shape": c.dense_shape_tensor_name}
                    else:
                        self.inputs[k] = info.name
                self.score = sig.outputs["score"].name
                names = {op.name for op in self.graph.get_operations()}
                self.embedding = next(f"input_layer/{t}:0" for t in ("concat", "concat/concat")
                                      if f"input_layer/{t}" in names)
            else:
                v1.import_graph_def(graph_def, name="")
                self.inputs = inputs
                inits = [op for op in self.graph.get_operations()
                         if op.type in ("LookupTableImportV2", "InitializeTableV2", "InitializeTableFromTextFileV2")]
                if inits:
                    self.sess.run(inits)

    def feed_dict(self, feeds: dict) -> dict:
        out = {}
        for name, t in self.inputs.items():
            v = feeds[name]
            if isinstance(t, dict):
                if isinstance(v, dict):
                    v = tuple(v[p] for p in ("indices", "values", "dense_shape"))
                elif not isinstance(v, (tuple, list)):
                    v = tuple(np.asarray(getattr(v, p)) for p in ("indices", "values", "dense_shape"))
                for part, val in zip(("indices", "values", "dense_shape"), v):
                    out[t[part]] = val
            else:
                out[t] = v
        return out

    def __call__(self, feeds: dict, fetch: str):
        return self.sess.run(fetch, self.feed_dict(feeds))


class Compiled:
    """A spec exported to TF, imported from `source` with its embedding stage as a second output ("embedding"),
    and built for llvm as imported and as optimized; TF as reference. `mod`, `ispec` and `model` are the
    `primary` variant's (what the test asked for); `run_both` runs every variant."""

    def __init__(self, spec, source: str = "pb", tf1: bool = False) -> None:
        from recom_tvm.frontend.loader import load
        from recom_tvm.models.resize import embedding_output, embedding_tensor

        self.spec = spec
        self.source = source
        self.paths = tf_export.export(spec, tf1=tf1)
        self.ref = tf_export.TFReference(spec, self.paths, tf1=tf1)
        if source == "tf1":
            self.tf_graph = TFGraph(saved_model=self.paths["tf1"])
            self.embedding = self.tf_graph.embedding
            outputs = {"score": self.tf_graph.score, "embedding": self.embedding}
            self.mod, self.params, self.ispec = recom_tvm.from_tensorflow(self.paths["tf1"], outputs=outputs)
        else:
            import tensorflow as tf

            with open(self.paths["signature"]) as f:
                sig = json.load(f)
            graph_def = tf.compat.v1.GraphDef()
            with open(self.paths["pb"], "rb") as f:
                graph_def.ParseFromString(f.read())
            self.tf_graph = TFGraph(graph_def, inputs=sig["inputs"])
            self.embedding = embedding_output(self.paths["pb"])  # TF's value: from the graph we import
            if source == "pb":
                outputs = {"score": sig["outputs"]["score"], "embedding": self.embedding}
                self.mod, self.params, self.ispec = recom_tvm.from_tensorflow(
                    self.paths["pb"], signature=self.paths["signature"], outputs=outputs)
            else:  # the SavedModel's own graph names its tensors differently
                loaded = load(self.paths[source])
                outputs = {"score": dict(loaded.outputs)["score"], "embedding": embedding_tensor(loaded.graph)}
                self.mod, self.params, self.ispec = recom_tvm.from_tensorflow(self.paths[source], outputs=outputs)
        self.variants = {"imported": (self.mod, self.ispec, recom_tvm.build(self.mod, "llvm", self.params))}
        opt = recom_tvm.optimize(self.mod)
        built = recom_tvm.build(opt, "llvm", self.params)
        self.variants["optimized"] = (opt, built.spec, built)
        self.primary = "imported"
        self.model = self.variants["imported"][2]

    def close(self) -> None:
        """Free TF's session (models kept for the whole test session are never closed)."""
        self.tf_graph.sess.close()
        self.variants.clear()

    def view(self, variant: str) -> "Compiled":
        """This model with `variant` as the primary one (shares the builds)."""
        out = copy.copy(self)
        out.primary = variant
        out.mod, out.ispec, out.model = self.variants[variant]
        return out

    def tf_embedding(self, feeds):
        """TF's embedding stage for `feeds` (or the exception TF raised)."""
        return outcome(lambda: self.tf_graph(feeds, self.embedding))

    def run_both(self, feeds):
        """(ours, TF's) scores of the primary variant, or the exceptions each raised. On the way, every other
        variant's score and every variant's embedding stage are checked against TF (assertions)."""
        exp = outcome(lambda: self.ref(feeds))
        exp_emb = self.tf_embedding(feeds)
        primary = None
        for name, (_, _, model) in self.variants.items():
            got = outcome(lambda: model.run(feeds))
            what = f"{self.spec.name} ({self.source}, {name})"
            score = got["score"] if isinstance(got, dict) else got
            if isinstance(got, dict) and not isinstance(exp_emb, BaseException):
                assert_matches_tf(got["embedding"], exp_emb, f"{what}: embedding stage")
            elif isinstance(exp_emb, BaseException) and not isinstance(exp, BaseException):
                assert_matches_tf(got, exp_emb, f"{what}: embedding stage")
            if name == self.primary:
                primary = score
            else:
                assert_matches_tf(score, exp, f"{what}: score")
        return primary, exp


_COMPILED: dict = {}


def run_runtime_only(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python *args` (e.g. "-c", script) as a serving host runs it: TVM's runtime library only, recom_tvm told
    that no compiler is there; output captured as text."""
    env = dict(os.environ, TVM_USE_RUNTIME_LIB="1", RECOM_TVM_RUNTIME_ONLY="1")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout)


def in_threads(serve, n: int = 8) -> list[BaseException]:
    """serve(t) for t in range(n) on n threads at once -> the exceptions they raised."""
    errors: list[BaseException] = []

    def guarded(t: int) -> None:
        try:
            serve(t)
        except Exception as err:  # noqa: BLE001 - returned to the test
            errors.append(err)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return errors


@pytest.fixture(scope="session")
def compiled():
    """compiled(spec, source="pb"|"saved_model"|"tf1", optimized=False) -> Compiled, built once per session;
    `optimized` picks the primary variant (both are built and run)."""

    def get(spec, source: str = "pb", optimized: bool = False) -> Compiled:
        key = (spec.key(), source)
        if key not in _COMPILED:
            _COMPILED[key] = Compiled(spec, source, tf1=source == "tf1")
        return _COMPILED[key].view("optimized" if optimized else "imported")

    return get


@pytest.fixture(scope="module", params=[False, True], ids=["imported", "optimized"])
def demo(compiled, request):
    """The demo as imported (TF's graph op by op) and optimized (one fused kernel, packed inputs)."""
    return compiled(zoo.demo(), optimized=request.param)


class FunctionModel:
    """A tf.function's ConcreteFunction (returning a dict: let it return its embedding stage too) imported and
    built three ways: imported, "passes" (optimized without FuseColumns: the rewritten columns as separate
    kernels) and optimized (the fused kernel); `check` compares every variant's outputs (or error class) with
    TF's."""

    def __init__(self, cf, passes: bool = True) -> None:
        self.cf = cf
        self.mod, self.params, self.ispec = recom_tvm.from_tensorflow(cf)
        self.names = [f["name"] for f in self.ispec.features]
        self.variants = {"imported": recom_tvm.build(self.mod, "llvm", self.params)}
        if passes:  # (graphs without embedding columns: the same as "optimized")
            self.passes = recom_tvm.optimize(self.mod, disable=["fuse_columns"])
            self.variants["passes"] = recom_tvm.build(self.passes, "llvm", self.params)
        self.opt = recom_tvm.optimize(self.mod)
        self.variants["optimized"] = recom_tvm.build(self.opt, "llvm", self.params)

    def tf(self, *args):
        import tensorflow as tf

        res = self.cf(*[a if isinstance(a, (tf.Tensor, tf.SparseTensor, tf.RaggedTensor)) else tf.constant(a)
                        for a in args])
        return {k: v.numpy() for k, v in res.items()} if isinstance(res, dict) else {"output_0": res.numpy()}

    def check(self, feeds: dict, tf_args: tuple, what: str = "") -> dict:
        """Run TF on tf_args and every variant on feeds; assert they agree. -> {variant: outputs or error}."""
        exp = outcome(lambda: self.tf(*tf_args))
        results = {}
        for name, model in self.variants.items():
            got = outcome(lambda: model.run(feeds))
            results[name] = got
            if isinstance(exp, BaseException) or isinstance(got, BaseException):
                assert_matches_tf(got, exp, f"{what} [{name}]")
                continue
            for k, v in got.items():
                assert k in exp, f"{what} [{name}]: output {k!r} not returned by TF ({sorted(exp)})"
                assert_matches_tf(v, exp[k], f"{what} [{name}] output {k!r}")
        return results


def _freeze_tf1(build, init_collection: str | None = None):
    """(frozen GraphDef, TF session over it) of the TF1 graph `build()` makes in a fresh graph; build returns
    {output name: tensor} and the feeds are its placeholders. init_collection: ops run after the variables'
    initializers (e.g. assigning random weights where the initial zeros would hide errors)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        outputs = build()
        with v1.Session(graph=g) as sess:
            sess.run(v1.global_variables_initializer())
            if init_collection:
                sess.run(v1.get_collection(init_collection))
            gd = v1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(),
                                                              [t.op.name for t in outputs.values()])
    ref = tf.Graph()
    with ref.as_default():
        v1.import_graph_def(gd, name="")
    return gd, v1.Session(graph=ref), {k: t.name for k, t in outputs.items()}


class FrozenTF1Model:
    """A TF1 graph (`build()` in a fresh graph, returning {output name: tensor}), frozen, written as a .pb and
    imported from it, built as imported and as optimized; TF's session on the frozen graph as reference. `check`
    compares every output (the embedding stage too, where build returns it) or the error class."""

    def __init__(self, build, feeds: dict, tmp_path, init_collection: str | None = None) -> None:
        self.gd, self.sess, self.outputs = _freeze_tf1(build, init_collection)
        path = tmp_path / "model.pb"
        path.write_bytes(self.gd.SerializeToString())
        self.feeds = feeds  # feed name -> placeholder tensor name
        sig = {"inputs": feeds, "outputs": self.outputs}
        self.mod, params, _ = recom_tvm.from_tensorflow(str(path), signature=sig)
        self.opt = recom_tvm.optimize(self.mod)
        self.variants = {"imported": recom_tvm.build(self.mod, "llvm", params),
                         "optimized": recom_tvm.build(self.opt, "llvm", params)}

    def check(self, request: dict, what: str) -> None:
        """request: feed name -> array, or (indices, values, dense_shape) for a sparse feed (declared as a dict
        of its parts' tensors in `feeds`)."""
        feed_dict = {}
        for k, v in request.items():
            t = self.feeds[k]
            feed_dict.update(zip((t["indices"], t["values"], t["dense_shape"]), v) if isinstance(t, dict)
                             else [(t, v)])
        ops = {op.name for op in self.sess.graph.get_operations()}  # (a sparse part the freeze pruned: unfed)
        feed_dict = {t: v for t, v in feed_dict.items() if t.rpartition(":")[0] in ops}
        exp = outcome(lambda: dict(zip(self.outputs, self.sess.run(list(self.outputs.values()), feed_dict))))
        for name, model in self.variants.items():
            got = outcome(lambda: model.run(request))
            if isinstance(exp, BaseException) or isinstance(got, BaseException):
                assert_matches_tf(got, exp, f"{what} [{name}]")
                continue
            for k in self.outputs:
                assert_matches_tf(got[k], exp[k], f"{what} [{name}] {k}")


def pytest_sessionfinish(session, exitstatus):
    """No worker process (TVM popen workers, RPC servers) may outlive the test run."""
    import psutil

    left = psutil.Process().children(recursive=True)
    names = []
    for p in left:
        try:
            names.append(" ".join(p.cmdline()[:4]))  # before the kill: a killed child is a zombie until reaped
            p.kill()
        except psutil.Error:  # exited (or a zombie) meanwhile
            pass
    psutil.wait_procs(left, timeout=5)
    if left:
        print(f"\nconftest: killed {len(left)} leftover child process(es): {names[:5]}")
