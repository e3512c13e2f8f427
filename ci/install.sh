#!/usr/bin/env bash
# Install recom_tvm with TensorFlow and the test tools into ./.venv (created if missing). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[tf,test]"
# tf-keras (for DenseFeatures) without its dependencies: with them it would replace tensorflow-cpu by tensorflow.
.venv/bin/python -m pip install -q --no-deps tf-keras==2.21.0
# Triton serving (tests/test_triton*.py, recom_tvm.serving): nvidia-pytriton's tritonserver, Python backend and
# clients live in their own venv: PyTriton needs numpy < 2, and the backend stub embeds the system libpython3.11,
# so the venv is made from that Python (a pyenv 3.11's stdlib on Debian's libpython fails in the stub). The model
# repository's model.py needs only numpy + the TVM runtime there (recom_tvm's runtime travels in the repository).
TRITON_PY=${TRITON_PYTHON:-/usr/bin/python3.11}
[ -x "$TRITON_PY" ] || TRITON_PY=$PY
[ -x .venv-triton/bin/python ] || "$TRITON_PY" -m venv .venv-triton
.venv-triton/bin/python -m pip install -q nvidia-pytriton==0.7.0 "tritonclient[http,grpc]==2.73.0" numpy==1.26.4 \
  protobuf==6.33.6 apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post1
.venv-triton/bin/python -c "import pytriton, tritonclient.grpc, tritonclient.http, tvm_ffi; print('triton venv: nvidia-pytriton', __import__('importlib.metadata').metadata.version('nvidia-pytriton'))"
.venv/bin/python -c "import tvm, tensorflow, tf_keras, recom_tvm; print('recom_tvm installed:', recom_tvm.__version__, '| tvm', tvm.__version__, '| tf', tensorflow.__version__)" 2>&1 | grep -v -i warning | tail -1
