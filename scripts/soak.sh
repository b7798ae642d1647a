#!/usr/bin/env bash
# The slow soak tests (full-size contention, crash trials): not part of CI.
EXTRAS=test
source "$(dirname "$0")/_venv.sh"
HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-soak} exec .venv/bin/python -m pytest -m slow "$@"
