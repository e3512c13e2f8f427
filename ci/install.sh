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
.venv/bin/python -c "import tvm, tensorflow, tf_keras, recom_tvm; print('recom_tvm installed:', recom_tvm.__version__, '| tvm', tvm.__version__, '| tf', tensorflow.__version__)" 2>&1 | grep -v -i warning | tail -1
