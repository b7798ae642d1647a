#!/usr/bin/env bash
# Install icechunk into .venv and run the main job: the quickstart on a local-disk repository.
EXTRAS=xarray,dask
source "$(dirname "$0")/_venv.sh"
exec .venv/bin/python examples/quickstart.py "$@"
