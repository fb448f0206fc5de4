"""Small helpers shared by the hostile-review reproductions."""

from __future__ import annotations

import subprocess

from driver import DriverRun, run_driver

SENDER = "sender@client.test"
MESSAGE = b"From: a@client.test\r\nSubject: hi\r\n\r\nHello.\r\n"

# Every deadline but idle and connect short, so a hang is not a slow test.
SHORT = [
    arg
    for kind in (
        "banner",
        "ehlo",
        "mail",
        "rcpt",
        "data",
        "body",
        "confirm",
        "rset",
        "quit",
    )
    for arg in ("--timeout", f"{kind}=1500")
]


def message_file(tmp_path, data: bytes = MESSAGE, name: str = "m.eml"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def run_bounded(port: int, *args: str, timeout: float) -> DriverRun | None:
    """Runs the driver; None when it had to be killed at `timeout`."""
    try:
        return run_driver(port, *args, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def sanitizer_report(run: DriverRun) -> list[str]:
    """Lines of an ASan/LSan/UBSan report on the driver's stderr."""
    return [
        line
        for line in run.stderr.splitlines()
        if "Sanitizer" in line or "runtime error" in line
    ]
