#!/usr/bin/env bash
# Install everything the project needs into the current Python environment (idempotent).
# torch goes first and pinned: on CPU-only machines `torch==2.13.0` is a local CPU build, while a bare
# `torch` requirement would download gigabytes of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null; then
  "$PYTHON" -m pip install --disable-pip-version-check -q torch==2.13.0
fi
"$PYTHON" -m pip install --disable-pip-version-check -q -r requirements.txt
