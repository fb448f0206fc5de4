"""The body on the wire when sends fall short, and in as few writes as it
fits.

The engine encodes each chunk of the body into a buffer shared by every
connection and keeps only what the socket did not take.  A shim preloaded
into the driver (tests/c/shim_short_send.c) makes every other send fail
with EAGAIN and the rest take at most 1,000 bytes, so that path runs
against a real server; what the server received must still be DESIGN 9's
wire form byte for byte.  A body whose bare LFs double in size also makes
the encoder leave input over when its output chunk fills: from a file
that input is read again, from memory it is taken from where it stopped.
"""

from __future__ import annotations

import os
import subprocess

import pytest

import smtpstate
from canonical import wire_body
from driver import SANITIZERS, run_driver
from servers import Script

SENDER = "sender@client.test"
RCPT = "r0@server.test"
MESSAGE = b"From: a@client.test\r\nSubject: hi\r\n\r\nHello.\r\n"
CHUNK = 65536  # the engine's chunk, where encoder calls end


def awkward_body(size: int) -> bytes:
    """Lines of every ending, leading dots, and a bare CR with an LF or a
    dot after it on each side of every chunk boundary."""
    data = bytearray(b"Subject: streaming\r\n\r\n")
    n = 0
    while len(data) < size:
        ending = (b"\r\n", b"\n", b"\r")[n % 3]
        lead = b"." if n % 5 == 0 else b""
        data += lead + b"%06d " % n + b"w" * (n % 97) + ending
        n += 1
    for boundary in range(CHUNK, len(data) - 1, CHUNK):
        data[boundary - 1] = ord("\r")
        data[boundary] = ord("\n") if boundary % (2 * CHUNK) else ord(".")
    return bytes(data)


def short_send_env(c_build) -> dict[str, str]:
    """The environment that preloads the shim into the driver (after a
    sanitizer's runtime, which must come first)."""
    preload = [p for p in os.environ.get("LD_PRELOAD", "").split(":") if p]
    if "address" in SANITIZERS and not any("libasan" in p for p in preload):
        asan = subprocess.run(
            ["gcc", "-print-file-name=libasan.so"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        preload.insert(0, asan)
    preload.append(str(c_build / "tests" / "shim_short_send.so"))
    return {"LD_PRELOAD": ":".join(preload)}


@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelining"])
def test_driver_streams_bodies_through_short_sends(
    pipelining, tmp_path, c_build, scripted_server_factory
):
    bodies = [awkward_body(3 * 1024 * 1024), MESSAGE, awkward_body(CHUNK + 7)]
    files = []
    for i, body in enumerate(bodies):
        files.append(tmp_path / f"{i}.eml")
        files[-1].write_bytes(body)
    server = scripted_server_factory(Script(pipelining=pipelining))
    run = run_driver(
        server.port, "--from", SENDER, "--to", RCPT, "--concurrency", "1",
        *map(str, files), env=short_send_env(c_build),
    )  # fmt: skip
    assert [o["result"] for o in run.outcomes] == ["delivered"] * 3, run.stderr
    received = server.wait_for_messages(3)
    assert [m.raw_data + b".\r\n" for m in received] == [wire_body(b) for b in bodies]


def test_a_chained_group_waits_behind_the_rest_of_a_short_sent_body(
    c_build, scripted_server_factory
):
    # In-memory bodies with PIPELINING: each message's MAIL group is
    # chained behind the last chunk of the body before it.  Sends that fall
    # short leave part of that chunk held, and the group must wait behind
    # it: a group that overtook the body would land inside the data, one
    # that was lost would leave the client waiting for its replies.
    server = scripted_server_factory(Script())
    size, count = 3 * CHUNK + 100, 4
    run = run_driver(
        server.port, "--from", SENDER, "--to", RCPT, "--concurrency", "1",
        "--count", str(count), "--size", str(size), "--timeout", "mail=5000",
        env=short_send_env(c_build), timeout=60,
    )  # fmt: skip
    assert [o["result"] for o in run.outcomes] == ["delivered"] * count, run.stderr
    received = server.wait_for_messages(count)
    for i, message in enumerate(received, 1):
        assert b"MAIL FROM" not in message.data
        assert f"Subject: message {i}\r\n".encode() in message.data
        # The generated body, with the CRLF the engine adds when it lacks one.
        assert len(message.data) - size in (0, 2)
    (session,) = server.wait_for_closed_sessions(1)
    mails = [
        p for v, p in zip(session.verbs, session.pipelined, strict=True) if v == "MAIL"
    ]
    assert mails == [False] + [True] * (count - 1)


def test_python_streams_in_memory_bodies_that_outgrow_a_chunk(
    scripted_server_factory,
):
    bodies = [awkward_body(3 * 1024 * 1024), b"", b".\r", b"x\n" * CHUNK]
    server = scripted_server_factory(Script())
    messages = [smtpstate.Message(SENDER, [RCPT], body) for body in bodies]
    results = smtpstate.deliver(messages, "127.0.0.1", server.port, concurrency=1)
    assert [r.outcome for r in results] == [smtpstate.Outcome.DELIVERED] * 4
    received = server.wait_for_messages(4)
    assert [m.raw_data + b".\r\n" for m in received] == [wire_body(b) for b in bodies]


def test_small_body_and_its_final_dot_are_one_write(
    tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(Script())
    path = tmp_path / "m.eml"
    path.write_bytes(MESSAGE)
    run = run_driver(server.port, "--from", SENDER, "--to", RCPT, "--wire", str(path))
    assert [o["result"] for o in run.outcomes] == ["delivered"]
    body_writes = [
        e["text"] for e in run.events if e.get("dir") == "sent" and e["state"] == "body"
    ]
    assert body_writes == [wire_body(MESSAGE).decode()]
