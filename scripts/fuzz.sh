#!/usr/bin/env bash
# Builds the libFuzzer targets (make fuzz) and runs each for a bounded
# time, two at a time, on a copy of its committed corpus in a temporary
# directory (new inputs go there, never into the repository).  Fails on
# any finding: a crash, a sanitizer report, a leak, a timeout or an
# out-of-memory.  Installs clang and libFuzzer's runtime first, as root
# with apt-get, when they are missing.
#
#   scripts/fuzz.sh [SECONDS] [--long] [TARGET...]
#
# SECONDS: per target, default 60.  TARGET: reply, capabilities or body
# (default all).  --long: a run whose results are kept: the final
# statistics go to tests/fuzz/stats/TARGET.txt and the inputs that add
# coverage are merged (-merge=1) into tests/fuzz/corpus/TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL_TARGETS=(reply capabilities body)
DURATION=60
LONG=0
TARGETS=()
JOBS=${FUZZ_JOBS:-2}

usage() {
    echo "usage: scripts/fuzz.sh [SECONDS] [--long] [TARGET...]" >&2
    echo "  targets: ${ALL_TARGETS[*]}" >&2
    exit 2
}

for arg in "$@"; do
    case $arg in
    --long) LONG=1 ;;
    -h | --help) usage ;;
    *[!0-9]*)
        case " ${ALL_TARGETS[*]} " in
        *" ${arg#fuzz_} "*) TARGETS+=("${arg#fuzz_}") ;;
        *) echo "fuzz: unknown target or option: $arg" >&2; usage ;;
        esac
        ;;
    '') usage ;;
    *) DURATION=$arg ;;
    esac
done
if [ "$DURATION" -lt 1 ]; then
    echo "fuzz: SECONDS must be at least 1" >&2
    exit 2
fi
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")
case $JOBS in '' | *[!0-9]* | 0) JOBS=2 ;; esac

# Inputs longer than this are not generated: the reply reader's line cap
# (4 KiB) needs room for a line past it plus the two split bytes.
max_len() {
    case $1 in
    reply) echo 8192 ;;
    *) echo 4096 ;;
    esac
}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# True when clang links a libFuzzer target: the compiler-rt runtime is
# a separate Debian package (libclang-rt-N-dev) from clang itself.
fuzzer_works() {
    command -v clang >/dev/null 2>&1 || return 1
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)' \
        '{ (void)d; (void)n; return 0; }' >"$TMP/probe.c"
    clang -fsanitize=fuzzer,address,undefined "$TMP/probe.c" \
        -o "$TMP/probe" >/dev/null 2>&1
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get -qq -y \
        --no-install-recommends install "$@" >"$TMP/apt.log" 2>&1 || {
        cat "$TMP/apt.log" >&2
        echo "fuzz: apt-get install $* failed" >&2
        exit 1
    }
}

if ! fuzzer_works; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "fuzz: clang with libFuzzer is missing and this is not root;" \
            "install clang and libclang-rt-N-dev" >&2
        exit 1
    fi
    echo "fuzz: installing clang and libFuzzer's runtime (apt-get)"
    if ! apt-get -qq update >"$TMP/apt.log" 2>&1; then
        cat "$TMP/apt.log" >&2
        echo "fuzz: apt-get update failed" >&2
        exit 1
    fi
    command -v clang >/dev/null 2>&1 || apt_install clang
    major=$(clang -dumpversion | cut -d. -f1)
    fuzzer_works || apt_install "libclang-rt-$major-dev"
    if ! fuzzer_works; then
        echo "fuzz: clang still cannot link a libFuzzer target" >&2
        exit 1
    fi
fi

make -s fuzz

# One target: fuzz into a copy of its corpus, the committed corpus read
# as well; with --long, merge what adds coverage back into the corpus.
run_target() {
    local t=$1 work=$TMP/$1 rc=0
    local corpus=tests/fuzz/corpus/$t
    local -a cmd

    mkdir -p "$work/corpus" "$work/artifacts"
    cp -R "$corpus/." "$work/corpus/"
    cmd=(build/fuzz/fuzz_"$t" -max_total_time="$DURATION"
        -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048
        -print_final_stats=1 -artifact_prefix="$work/artifacts/"
        "$work/corpus" "$corpus")
    printf '%s\n' "${cmd[*]}" >"$work/command"
    date -u '+%Y-%m-%dT%H:%M:%SZ' >"$work/started"
    # libFuzzer stops itself at max_total_time; timeout is the backstop.
    timeout --kill-after=10 $((DURATION + 120)) "${cmd[@]}" \
        >"$work/log" 2>&1 || rc=$?
    date -u '+%Y-%m-%dT%H:%M:%SZ' >"$work/ended"
    if [ "$rc" -eq 0 ] && [ "$LONG" -eq 1 ]; then
        build/fuzz/fuzz_"$t" -merge=1 -max_len="$(max_len "$t")" \
            "$corpus" "$work/corpus" >"$work/merge.log" 2>&1 || rc=$?
    fi
    echo "$rc" >"$work/rc"
}

stat_of() {
    sed -n "s/^stat::$2: *//p" "$TMP/$1/log" | tail -n 1
}

# Writes tests/fuzz/stats/TARGET.txt for a --long run.
write_stats() {
    local t=$1 work=$TMP/$1 out=tests/fuzz/stats/$1.txt commit cpu
    commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
    if ! git diff --quiet HEAD -- csrc include tests/fuzz/*.c 2>/dev/null
    then
        commit="$commit (with uncommitted changes)"
    fi
    cpu=$(sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo 2>/dev/null |
        head -n 1)
    mkdir -p tests/fuzz/stats
    {
        echo "# Final libFuzzer statistics of a long run of fuzz_$t"
        echo "# (written by scripts/fuzz.sh --long)."
        echo "command: $(cat "$work/command")"
        echo "started: $(cat "$work/started")"
        echo "ended: $(cat "$work/ended")"
        echo "commit: $commit"
        echo "machine: $(uname -srm), ${cpu:-unknown CPU}," \
            "$(nproc) CPUs, $JOBS targets at a time"
        echo "compiler: $(clang --version | head -n 1)"
        echo "corpus after merge: $(find "tests/fuzz/corpus/$t" -type f |
            wc -l) files"
        grep '^stat::' "$work/log"
    } >"$out"
}

echo "fuzz: ${TARGETS[*]}, $DURATION s each, $JOBS at a time"
running=0
for t in "${TARGETS[@]}"; do
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    run_target "$t" &
    running=$((running + 1))
done
wait

failed=0
for t in "${TARGETS[@]}"; do
    work=$TMP/$t
    rc=$(cat "$work/rc" 2>/dev/null || echo missing)
    runs=$(stat_of "$t" number_of_executed_units)
    found=$(find "$work/artifacts" -type f | wc -l)
    if [ "$rc" = 0 ] && [ "$found" -eq 0 ] && [ -n "$runs" ]; then
        echo "fuzz_$t: ok, $runs runs," \
            "$(stat_of "$t" average_exec_per_sec) exec/s," \
            "$(stat_of "$t" new_units_added) new units," \
            "peak $(stat_of "$t" peak_rss_mb) MB"
        [ "$LONG" -eq 0 ] || write_stats "$t"
    else
        failed=1
        echo "fuzz_$t: FAILED (exit $rc, $found artifacts)"
        tail -n 60 "$work/log" | sed "s/^/fuzz_$t: /"
        [ ! -f "$work/merge.log" ] ||
            tail -n 20 "$work/merge.log" | sed "s/^/fuzz_$t merge: /"
        mkdir -p build/fuzz/findings
        for a in "$work"/artifacts/*; do
            [ -f "$a" ] || continue
            cp "$a" "build/fuzz/findings/fuzz_$t-${a##*/}"
            echo "fuzz_$t: input kept in build/fuzz/findings/fuzz_$t-${a##*/}"
        done
    fi
done
exit "$failed"
