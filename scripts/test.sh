#!/usr/bin/env bash
# Install icechunk with its test dependencies into .venv and run the test suite (CI runs this).
EXTRAS=test
source "$(dirname "$0")/_venv.sh"
.venv/bin/python -m ruff check icechunk tests examples benchmarks
.venv/bin/python -m mypy icechunk
exec .venv/bin/python -m pytest -m "not slow" "$@"
