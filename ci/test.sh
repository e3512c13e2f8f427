#!/usr/bin/env bash
# Run the test suite (llvm target; CUDA builds are checked when nvcc is present) and the tutorials.
set -euo pipefail
cd "$(dirname "$0")/.."
export RECOM_TVM_CACHE=${RECOM_TVM_CACHE:-$PWD/.cache}
.venv/bin/python -m pytest -q -x -p no:cacheprovider --durations=30 "$@" tests
for t in tutorials/*.py; do
  echo "== tutorial $t"
  .venv/bin/python "$t" > /dev/null
done
