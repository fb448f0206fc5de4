"""MessageResult as callers see it, and the C loop's turns between two
entries into Python.

A result keeps its recipients' outcome rows until `recipients` is first
read; these tests hold it to reading the same before and after, to being
frozen, and to comparing, hashing and pickling like any frozen record.
Between entries into Python the loop runs several turns in C; a signal
must still end a delivery that is waiting on a silent server.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import signal
import threading

import pytest

import smtpstate
from servers import SILENCE, Script
from smtpstate import Message, MessageResult, Outcome, RecipientResult

SENDER = "sender@client.test"
BODY = b"From: a@client.test\r\nSubject: records\r\n\r\nHello.\r\n"


def _refusing_server(scripted_server_factory):
    """Refuses any recipient named bad* (550) and defers any named later*
    (451), accepts the others."""

    def rcpt(address: str, index: int) -> str:
        if address.startswith("bad"):
            return "550 5.1.1 no such user"
        if address.startswith("later"):
            return "451 4.3.0 try later"
        return "250 2.1.5 Ok"

    return scripted_server_factory(Script(rcpt=rcpt))


ENVELOPES = [
    ("a@server.test",),
    ("a@server.test", "bad@server.test"),
    ("bad@server.test", "later@server.test"),
    ("later@server.test", "b@server.test", "c@server.test"),
    ("bad@server.test",),
]
EXPECTED = [
    (True, Outcome.DELIVERED),
    (False, Outcome.PERMANENT),
    (False, Outcome.PERMANENT),
    (False, Outcome.TRANSIENT),
    (False, Outcome.PERMANENT),
]


def test_summary_reads_the_same_before_and_after_recipients_are_made(
    scripted_server_factory,
):
    server = _refusing_server(scripted_server_factory)
    batch = [Message(SENDER, rcpts, BODY, id=i) for i, rcpts in enumerate(ENVELOPES)]
    results = smtpstate.deliver(batch, "127.0.0.1", server.port, concurrency=2)
    for result, message, (delivered, worst) in zip(
        results, batch, EXPECTED, strict=True
    ):
        # Asked first, from the kept rows.
        assert (result.delivered, result.outcome) == (delivered, worst)
        assert type(result.outcome) is Outcome
        recipients = result.recipients
        assert [r.recipient for r in recipients] == list(message.recipients)
        assert all(type(r) is RecipientResult for r in recipients)
        assert result.recipients is recipients  # made once, then kept
        # The same answers, now from the made records.
        assert result.delivered == all(r.delivered for r in recipients)
        assert result.outcome == max(r.outcome for r in recipients)
        assert (result.delivered, result.outcome) == (delivered, worst)
    bad = results[1].recipients[1]
    assert (bad.outcome, bad.code, bad.enhanced, bad.text) == (
        Outcome.PERMANENT,
        550,
        "5.1.1",
        "5.1.1 no such user",
    )
    assert results[3].recipients[0].code == 451


def test_result_is_frozen_compares_hashes_and_pickles(scripted_server_factory):
    server = _refusing_server(scripted_server_factory)
    batch = [Message(SENDER, ENVELOPES[1], BODY, id=7)]
    (result,) = smtpstate.deliver(batch, "127.0.0.1", server.port)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.message = batch[0]  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del result.message
    with pytest.raises(AttributeError):
        result.extra = 1  # type: ignore[attr-defined]
    # Equal to the same result made with the public constructor from the
    # records, before and after its own records are made.
    (again,) = smtpstate.deliver(batch, "127.0.0.1", server.port)
    copy = pickle.loads(pickle.dumps(again))
    assert isinstance(copy, MessageResult)
    built = MessageResult(batch[0], again.recipients)
    with pytest.raises(smtpstate.InvalidArgumentError, match="exactly one outcome"):
        MessageResult(batch[0], [])
    assert built == again and hash(built) == hash(again)
    assert copy.recipients == again.recipients and copy.message == batch[0]
    # Two deliveries differ in session ids and queue ids: not equal.
    assert result != again
    assert "recipients=(RecipientResult(recipient='a@server.test'" in repr(result)
    assert result != (result.message, result.recipients)


def test_signal_ends_a_delivery_waiting_on_a_silent_server(scripted_server_factory):
    # The server accepts and never greets; the banner timeout is long, so
    # without the interrupt the delivery would end with a transient
    # result instead of raising.  The signal lands while C waits.
    # A loop that missed the signal would still raise once back in Python,
    # but only after the banner deadline had failed the connection: the
    # events tell the two apart.
    server = scripted_server_factory(Script(banner=SILENCE))
    events = io.StringIO()
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            smtpstate.deliver(
                [Message(SENDER, ["a@server.test"], BODY)],
                "127.0.0.1",
                server.port,
                json_events=events,
                timeouts={"banner": 20},
            )
    finally:
        timer.cancel()
    seen = [json.loads(line) for line in events.getvalue().splitlines()]
    assert seen and seen[0]["event"] == "connect", seen
    assert not [e for e in seen if e.get("error") == "SMTP_ETIMEOUT"], seen
    assert server.messages == []


def test_signal_ends_a_delivery_busy_sending_large_bodies(smtp_sink, tmp_path):
    # Bodies far larger than what goes out before the signal, to a sink
    # that reads about as fast as the engine writes: the turns of the loop
    # have writing to do and settle nothing.  The signal is taken by
    # another thread (this one blocks it), so it cuts short no wait of the
    # loop and Python sees it only when C returns.  The delivery must end
    # while the bodies are on their way, and the sink count no message; a
    # loop that ran turns until one settled something sent whole bodies
    # first, then raised.
    path = tmp_path / "large.eml"
    with open(path, "wb") as large:
        large.write(b"From: a@client.test\r\nSubject: large\r\n\r\n")
        large.truncate(4 << 30)  # sparse: no disk is used
    batch = [Message(SENDER, ["a@sink.test"], str(path), id=i) for i in range(2)]

    def interrupt_from_this_thread() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)

    timer = threading.Timer(0.5, interrupt_from_this_thread)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in smtpstate.deliver_iter(
                batch, "127.0.0.1", smtp_sink.port, concurrency=2
            ):
                pass
    finally:
        timer.cancel()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    assert smtp_sink.wait_for_sessions(2) == 2
    assert smtp_sink.message_count() == 0
