#!/usr/bin/env bash
# Installs the test dependencies: Python packages from PyPI (with
# aiosmtplib, which benchmarks/run.py compares with) and, as root, the
# Debian packages the tests use.  No mail service is started.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PIP_ROOT_USER_ACTION=ignore

"$PYTHON" -m pip install --quiet --disable-pip-version-check \
    -r tests/requirements.txt -r benchmarks/requirements.txt

# Postfix's smtp-sink and smtp-source (Debian package postfix), installed
# without starting any mail service.  Without root, or with them already
# present, nothing is done; the tests that need them skip with a reason.
SINK=/usr/sbin/smtp-sink
SOURCE=/usr/sbin/smtp-source
POLICY=/usr/sbin/policy-rc.d
POLICY_SAVED=$POLICY.smtpstate-saved.$$

# Puts back the policy-rc.d that was there before (or none): the saved
# file is moved back, so its content, mode, owner and times are unchanged.
restore_policy() {
    rm -f "$POLICY"
    if [ -e "$POLICY_SAVED" ] || [ -L "$POLICY_SAVED" ]; then
        mv -f "$POLICY_SAVED" "$POLICY"
    fi
}

install_postfix() {
    local log
    log=$(mktemp)
    if [ -e "$POLICY" ] || [ -L "$POLICY" ]; then
        mv "$POLICY" "$POLICY_SAVED"
    fi
    trap 'restore_policy; rm -f "$log"' EXIT
    trap 'exit 130' INT TERM
    # Exit status 101 tells invoke-rc.d that no service may be started.
    printf '#!/bin/sh\nexit 101\n' >"$POLICY"
    chmod 0755 "$POLICY"

    # "No configuration": the package installs no main.cf and never
    # runs; smtp-sink and smtp-source need no configuration of their own.
    echo 'postfix postfix/main_mailer_type select No configuration' \
        | debconf-set-selections
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get -qq update \
        && apt-get -qq -y --no-install-recommends install postfix; } \
        >"$log" 2>&1; then
        cat "$log" >&2
        echo "install-test-deps: installing postfix failed" >&2
        exit 1
    fi

    restore_policy
    rm -f "$log"
    trap - EXIT INT TERM
}

if [ ! -x "$SINK" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-test-deps: $SINK missing and not root;" \
            "the tests that need it will skip" >&2
    else
        install_postfix
        for tool in "$SINK" "$SOURCE"; do
            if [ ! -x "$tool" ]; then
                echo "install-test-deps: $tool missing after install" >&2
                exit 1
            fi
        done
    fi
fi
