"""Runs the pure-C driver (examples/smtpstate-send.c) and parses its output.

The driver prints one ``key=value`` line per recipient outcome (and, with
``--trace``, per event) and a ``summary`` line on stderr; these helpers
turn them into dictionaries the tests assert on.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = pathlib.Path(os.environ.get("SMTPSTATE_C_BUILD", ROOT / "build" / "c"))
# SMTPSTATE_SAN=address,undefined builds the C side under sanitizers.
SANITIZERS = os.environ.get("SMTPSTATE_SAN", "")
DRIVER = BUILD / "smtpstate-send"
# benchmarks/rusage-run.c: runs a command, prints its peak RSS on stderr.
RUSAGE_RUN = BUILD / "rusage-run"

_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
_ESCAPE = re.compile(r"\\(x[0-9a-f]{2}|n|.)")


def _unquote(value: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code == "n":
            return "\n"
        if code.startswith("x") and len(code) == 3:
            return chr(int(code[1:], 16))
        return code

    return _ESCAPE.sub(one, value[1:-1])


def parse_line(line: str) -> dict[str, str]:
    """One ``key=value`` line; quoted values are unescaped."""
    return {
        key: _unquote(value) if value.startswith('"') else value
        for key, value in _PAIR.findall(line)
    }


@dataclass
class DriverRun:
    """What one run of the driver printed, parsed."""

    returncode: int
    outcomes: list[dict[str, str]] = field(default_factory=list)
    events: list[dict[str, str]] = field(default_factory=list)
    summary: dict[str, str] = field(default_factory=dict)
    rusage: dict[str, str] = field(default_factory=dict)
    stderr: str = ""

    def by_rcpt(self) -> dict[tuple[str, str], dict[str, str]]:
        """Outcomes keyed by (message id, recipient)."""
        return {(o["id"], o["rcpt"]): o for o in self.outcomes}


def build() -> None:
    """Builds the library, the driver and the C tests with make."""
    subprocess.run(
        ["make", "-s", "-C", str(ROOT), f"BUILD={BUILD}", f"SAN={SANITIZERS}", "all"],
        check=True,
        timeout=600,
    )


def run_driver(
    port: int,
    *args: str,
    timeout: float = 120,
    rusage: bool = False,
    env: dict[str, str] | None = None,
) -> DriverRun:
    """Runs the driver against 127.0.0.1:port with the given options.

    With `rusage` it runs under ``rusage-run``, whose line (``maxrss_kib``,
    the driver's own peak RSS, not this process's) lands in `DriverRun.rusage`.
    `env` adds to (or overrides) this process's environment.
    """
    wrapper = [str(RUSAGE_RUN)] if rusage else []
    out = subprocess.run(
        [*wrapper, str(DRIVER), "--port", str(port), *args],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        env={**os.environ, **env} if env else None,
    )
    run = DriverRun(returncode=out.returncode, stderr=out.stderr)
    for line in out.stdout.splitlines():
        fields = parse_line(line)
        if "event" in fields:
            run.events.append(fields)
        elif "rcpt" in fields:
            run.outcomes.append(fields)
    for line in out.stderr.splitlines():
        if line.startswith("summary "):
            run.summary = parse_line(line)
        elif line.startswith("rusage "):
            run.rusage = parse_line(line)
    return run
