"""The pure-C driver's command line: --help, and a reason for every usage
error (exit 64, nothing sent)."""

from __future__ import annotations

import subprocess

import pytest

from driver import DRIVER
from servers import Script


def driver(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(DRIVER), *args], capture_output=True, text=True, timeout=60
    )


def test_help_prints_the_usage_and_exits_0(c_build):
    out = driver("--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: smtpstate-send")
    assert "--count N" in out.stdout and out.stderr == ""


ENVELOPE = ["--from", "a@client.test", "--to", "b@server.test"]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--bogus", *ENVELOPE, "m.eml"], "unrecognized option"),
        ([*ENVELOPE, "m.eml"], "--port is required"),
        (["--port", "abc", *ENVELOPE, "m.eml"], "--port abc: use 1 to 65535"),
        (["--port", "70000", *ENVELOPE, "m.eml"], "--port 70000: use 1 to 65535"),
        (["@port", "--to", "b@server.test", "m.eml"], "--from is required"),
        (["@port", "--from", "a@client.test", "m.eml"], "at least one --to"),
        (["@port", *ENVELOPE], "give FILE... or --count N"),
        (["@port", *ENVELOPE, "--count", "2", "m.eml"], "--count generates"),
        (["@port", *ENVELOPE, "--count", "x"], "--count x: use 1 to"),
        (["@port", *ENVELOPE, "--count", "0"], "--count 0: use 1 to"),
        (["@port", *ENVELOPE, "--count", "1", "--size", "-3"], "--size -3"),
        (["@port", *ENVELOPE, "--concurrency", "0", "m.eml"], "--concurrency 0"),
        (["@port", *ENVELOPE, "--timeout", "bogus=3", "m.eml"], "bad --timeout"),
        (["@port", *ENVELOPE, "--timeout", "banner=x", "m.eml"], "bad --timeout"),
        (["@port", *ENVELOPE, "--pause-after", "3", "m.eml"], "--pause-after 3"),
        (["@port", *ENVELOPE, "--progress", "-1", "m.eml"], "--progress -1"),
        (["@port", *ENVELOPE, "--noop-after", "nosuch", "m.eml"], "no state named"),
    ],
)
def test_each_usage_error_says_why(args, reason, c_build, scripted_server_factory):
    server = scripted_server_factory(Script())
    argv = [a for arg in args for a in (["--port", str(server.port)]
            if arg == "@port" else [arg])]  # fmt: skip
    out = driver(*argv)
    assert out.returncode == 64, out.stdout + out.stderr
    assert f"smtpstate-send: {reason}" in out.stderr, out.stderr
    assert server.sessions == []


def test_too_many_recipients_is_a_usage_error(c_build, scripted_server_factory):
    server = scripted_server_factory(Script())
    rcpts = [a for i in range(1025) for a in ("--to", f"r{i}@server.test")]
    out = driver("--port", str(server.port), "--from", "a@client.test", *rcpts,
                 "--count", "1")  # fmt: skip
    assert out.returncode == 64
    assert "smtpstate-send: more than 1024 --to" in out.stderr
    assert server.sessions == []
