#!/usr/bin/env bash
# Install everything the project needs into the current Python environment (idempotent).
# torch goes first and pinned: on CPU-only machines `torch==2.13.0` is a local CPU build, while a bare
# `torch` requirement would download gigabytes of CUDA packages.
# Last, the project itself, editable (pyproject.toml, hatchling: the data script setup.py is never run), so that
# `common` imports from anywhere, e.g. in `cd data/bone_length && python generate_bone_length.py`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null; then
  "$PYTHON" -m pip install --disable-pip-version-check -q torch==2.13.0
fi
"$PYTHON" -m pip install --disable-pip-version-check -q -r requirements.txt
"$PYTHON" -m pip install --disable-pip-version-check -q --no-deps -e .
