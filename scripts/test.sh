#!/usr/bin/env bash
# Set up, then run the whole test suite (pass -m "not slow" for the quick set).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. .venv/bin/activate
exec python -m pytest -q --durations=25 "$@"
