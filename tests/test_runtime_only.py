"""An exported model loads and runs with the TVM runtime only: no compiler library, TensorFlow, SymEngine,
or recom_tvm's compiler parts (frontend, passes, shapes, schedules, ops)."""

from __future__ import annotations

import os
import textwrap

import numpy as np
import pytest

import recom_tvm
from recom_tvm.models import zoo

from conftest import run_runtime_only

BLOCKED = ["tensorflow", "tf_keras", "keras", "symengine", "xgboost", "recom_tvm.frontend", "recom_tvm.passes",
           "recom_tvm.shapes", "recom_tvm.schedules", "recom_tvm.ops", "recom_tvm.build_module", "tvm.relax"]


# a script prelude that makes importing any of BLOCKED fail (the subprocess proves what it does not need)
BLOCK_IMPORTS = f"""
import os, sys
blocked = {BLOCKED!r}
class Block:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in blocked):
            raise ImportError(name + " is blocked: runtime-only test")
sys.meta_path.insert(0, Block())
"""


def test_exported_llvm_model_runs_runtime_only(compiled, tmp_path):
    """The demo as imported and optimized (the fused kernel: its spec records the int32 packed input, which the
    runtime-only load packs)."""
    c = compiled(zoo.demo())
    lib, opt_lib = str(tmp_path / "demo.so"), str(tmp_path / "demo.opt.so")
    c.model.export_library(lib)
    c.variants["optimized"][2].export_library(opt_lib)
    for suffix in ("", ".spec.json", ".params.npz"):
        assert os.path.exists(lib + suffix)
    feeds_seed, batch = 11, 33
    exp = c.ref(zoo.demo().sample(batch, rng=feeds_seed, hostile=True))
    np.save(tmp_path / "exp.npy", exp)
    script = BLOCK_IMPORTS + textwrap.dedent(f"""
        import numpy as np
        from recom_tvm.runtime import load
        from recom_tvm.models import zoo
        for path in ({lib!r}, {opt_lib!r}):
            model = load(path)
            feeds = zoo.demo().sample({batch}, rng={feeds_seed}, hostile=True)
            got = model.run(feeds)["score"]
            native = model.native_host()  # the native host stage shipped beside the library, no compiler here
            assert native is not None and native.refusals == 0, model.native_error
            np.testing.assert_allclose(got, np.load({str(tmp_path / 'exp.npy')!r}), rtol=1e-5, atol=2e-5)
            if path.endswith(".opt.so"):
                assert model.spec.fused["packed_dtype"] == "int32", model.spec.fused.get("packed_dtype")
                args, ref = model.prepare(feeds), model.prepare_reference(feeds)
                assert args[1].dtype == np.int32 and args[1].tobytes() == ref[1].tobytes()
        loaded = [m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in blocked)]
        assert not loaded, loaded
        print("OK runtime-only")
    """)
    res = run_runtime_only("-c", script)
    assert res.returncode == 0 and "OK runtime-only" in res.stdout, res.stdout[-2000:] + res.stderr[-3000:]


def test_load_refuses_corrupt_artifacts(compiled, tmp_path):
    c = compiled(zoo.demo())
    lib = str(tmp_path / "m.so")
    c.model.export_library(lib)
    with open(lib + ".spec.json", "w") as f:
        f.write("{not json")
    with pytest.raises(recom_tvm.ModelFormatError, match="spec.json is corrupt"):
        recom_tvm.load(lib)
    c.model.export_library(lib)
    with open(lib, "r+b") as f:
        f.truncate(100)
    with pytest.raises(recom_tvm.ModelFormatError, match="cannot load"):
        recom_tvm.load(lib)
    with pytest.raises(recom_tvm.ModelFormatError, match="missing"):
        recom_tvm.load(str(tmp_path / "nothing.so"))
