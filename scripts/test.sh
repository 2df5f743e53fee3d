#!/usr/bin/env bash
# Install the requirements and run the test suite (the README's test command; .ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export BLAPOSE_CACHE=${BLAPOSE_CACHE:-$HOME/.cache/blapose}
export MPLBACKEND=Agg
exec "${PYTHON:-python3}" -m pytest -q -p no:cacheprovider tests "$@"
