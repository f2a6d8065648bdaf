#!/usr/bin/env bash
# Set up, then run the whole test suite (pass -m "not slow" for the quick set) in two worker processes,
# one test file per worker at a time, the longest files first (tests/conftest.py orders them; xdist
# keeps that order); RECSYS_TEST_WORKERS=0 runs it in this process.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. .venv/bin/activate
exec python -m pytest -q -n "${RECSYS_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder --durations=25 "$@"
