"""The README's first command: `python -m recom_tvm demo` matches TF and prints a clean first screen (no
TensorFlow deprecation notices)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_matches_tf_and_prints_no_tf_noise(tmp_path):
    env = dict(os.environ, RECOM_TVM_CACHE=str(tmp_path))  # a first run: the TF model is generated
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell has it
    res = subprocess.run([sys.executable, "-m", "recom_tvm", "demo", "--target", "llvm", "--repeat", "3"],
                         capture_output=True, text=True, env=env, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "matches TensorFlow: yes" in out
    noise = [line for line in out.splitlines() if "deprecat" in line.lower() or line.startswith("WARNING")]
    assert not noise, noise[:5]
