#!/usr/bin/env bash
# Run the test suite (llvm target; CUDA builds are checked when nvcc is present) and the tutorials.
# The suite runs in RECOM_TVM_TEST_WORKERS pytest-xdist processes (default: one per core, at most 4; 1 = in this
# process), a test file per worker at a time (--dist loadfile: a file's module fixtures, its compiled models, are
# built once). Processes share the on-disk cache ($RECOM_TVM_CACHE): its TF exports are written under a lock.
set -euo pipefail
cd "$(dirname "$0")/.."
export RECOM_TVM_CACHE=${RECOM_TVM_CACHE:-$PWD/.cache}
workers=${RECOM_TVM_TEST_WORKERS:-$(.venv/bin/python -c 'import os; print(min(4, len(os.sched_getaffinity(0))))')}
parallel=()
[ "$workers" -gt 1 ] && parallel=(-n "$workers" --dist loadfile)
.venv/bin/python -m pytest -q -x -p no:cacheprovider --durations=30 "${parallel[@]}" "$@" tests
for t in tutorials/*.py; do
  echo "== tutorial $t"
  .venv/bin/python "$t" > /dev/null
done
