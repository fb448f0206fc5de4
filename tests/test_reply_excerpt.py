"""A malformed reply's outcome text shows a short, escaped excerpt of what
arrived, so "protocol error" says what the server sent."""

from __future__ import annotations

import pytest

import smtpstate
from driver import run_driver
from servers import Script

SENDER = "sender@client.test"
RCPT = "rcpt@server.test"
BODY = b"Subject: x\r\n\r\nx\r\n"

CASES = [
    pytest.param(
        Script(banner=b"HTTP/1.1 400 Bad Request\r\n"),
        12,
        r'received "HTTP/1.1 400 Bad Request\x0d\x0a"',
        id="http-banner",
    ),
    pytest.param(
        Script(banner=b"\x16\x03\x01\x00\xa5" + b"A" * 60 + b"\r\n"),
        12,
        r'received "\x16\x03\x01\x00\xa5' + "A" * 35 + '"...',
        id="binary-banner-cut-at-40-bytes",
    ),
    pytest.param(
        Script(banner=b'"220" \\ hi\r\n'),
        12,
        r'received "\x22220\x22 \x5c hi\x0d\x0a"',
        id="quote-and-backslash-escaped",
    ),
    pytest.param(
        Script(ehlo="250-first line\r\n251 second"),
        10,
        r'received "251 second\x0d\x0a"',
        id="the-offending-line-of-a-multiline-reply",
    ),
]


@pytest.mark.parametrize(("script", "stage", "excerpt"), CASES)
def test_driver_outcome_names_what_arrived(
    script, stage, excerpt, tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(script)
    msg = tmp_path / "m.eml"
    msg.write_bytes(BODY)
    run = run_driver(server.port, "--from", SENDER, "--to", RCPT, str(msg))
    (outcome,) = run.outcomes
    assert (outcome["result"], outcome["error"]) == ("transient", "SMTP_EPROTO")
    assert int(outcome["stage"]) == stage
    assert "protocol error" in outcome["text"]
    assert outcome["text"].endswith("; " + excerpt), outcome["text"]
    assert server.messages == []


@pytest.mark.parametrize(("script", "stage", "excerpt"), CASES)
def test_python_result_names_what_arrived(
    script, stage, excerpt, scripted_server_factory
):
    server = scripted_server_factory(script)
    (result,) = smtpstate.deliver(
        [smtpstate.Message(SENDER, [RCPT], BODY)], "127.0.0.1", server.port
    )
    (r,) = result.recipients
    assert (r.outcome, r.error, r.stage) == (
        smtpstate.Outcome.TRANSIENT,
        "SMTP_EPROTO",
        stage,
    )
    assert r.text.endswith("; " + excerpt), r.text
