#!/usr/bin/env bash
# Installs what the tests need and runs the whole suite: the package built
# with warnings as errors, the C-level tests, pytest, and ruff.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

bash scripts/install-test-deps.sh
SMTPSTATE_WERROR=1 "$PYTHON" -m pip install --quiet --force-reinstall \
    --no-deps .
"$PYTHON" -m ruff check python tests benchmarks
"$PYTHON" -m pytest "$@"
