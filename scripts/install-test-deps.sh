#!/usr/bin/env bash
# Installs the test dependencies: Python packages from PyPI and, as root,
# the Debian packages the tests use.  No mail service is started.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

"$PYTHON" -m pip install --quiet --disable-pip-version-check \
    cffi -r tests/requirements.txt
