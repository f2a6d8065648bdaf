#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the project into it; a no-op when already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    (command -v python3.11 >/dev/null && python3.11 -m venv .venv) || python3 -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import recsys, prefect, pyspark, gensim, pytest" 2>/dev/null || [ pyproject.toml -nt .venv/.installed ]; then
    python -m pip install --quiet --upgrade pip
    python -m pip install --quiet -e ".[test]"
    touch .venv/.installed
fi
