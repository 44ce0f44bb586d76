#!/bin/sh
# The GPU check on a fresh machine in one command: the locked environment, then the check
# (arguments go to gpu_check.py, e.g. --output FILE). Writes gpu_check.json in the project folder.
set -eu
cd "$(dirname "$0")/.."
uv --version >/dev/null 2>&1 || python3 -m pip install uv
uv sync --locked
exec uv run python benchmarks/gpu_check.py "$@"
