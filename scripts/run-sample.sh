#!/usr/bin/env bash
# Set up, then run the nightly pipeline once on the embedded sample (recsys/sample_data -> data/lake/sample).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. .venv/bin/activate
exec recsys run "$@"
