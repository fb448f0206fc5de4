#!/usr/bin/env bash
# The whole pytest suite again with the C core (library, binding, driver,
# C tests) built under AddressSanitizer and UndefinedBehaviorSanitizer, in
# a virtual environment of its own, checking that the same tests are
# collected as in a normal run.  Python itself is not instrumented, so
# the sanitizer runtimes are preloaded and leak detection is left to the
# pure-C runs, where every allocation is the project's own.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=build/san-venv

"$PYTHON" -m venv --clear "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r tests/requirements.txt
SMTPSTATE_WERROR=1 SMTPSTATE_SANITIZE=address,undefined \
    "$VENV/bin/python" -m pip install --quiet --no-deps --no-cache-dir .

count_tests() {
    "$@" -m pytest --collect-only -q -p no:cacheprovider | tail -1 \
        | sed 's/ in [0-9.]*s$//' || true
}

normal=$(count_tests "$PYTHON")
export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export SMTPSTATE_C_BUILD=build/asan SMTPSTATE_SAN=address,undefined
sanitized=$(count_tests "$VENV/bin/python")
if [ "$normal" != "$sanitized" ]; then
    echo "test-sanitized: collected '$sanitized', normal run '$normal'" >&2
    exit 1
fi
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
