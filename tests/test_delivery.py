"""The Python delivery API and Python states in the C loop, against real
loopback servers."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging

import pytest

import smtpstate
from servers import Script
from smtpstate import BuiltinState, Message, Outcome, SmtpState

SENDER = "sender@client.test"
BODY = b"From: sender@client.test\r\nSubject: hi\r\n\r\nHello.\r\n"


def messages(n: int, rcpts: tuple[str, ...] = ("rcpt@server.test",)):
    return [
        Message(SENDER, rcpts, BODY.replace(b"hi", b"hi %d" % i), id=i)
        for i in range(n)
    ]


def test_results_come_in_input_order_with_every_field(scripted_server_factory):
    server = scripted_server_factory(
        Script(
            rcpt=lambda rcpt, i: (
                "550 5.1.1 unknown user" if "bad" in rcpt else None or "250 2.1.5 Ok"
            )
        )
    )
    batch = messages(8, ("good@server.test", "bad@server.test"))
    results = smtpstate.deliver(batch, "127.0.0.1", server.port, concurrency=3)
    assert [r.message.id for r in results] == list(range(8))
    for result in results:
        good, bad = result.recipients
        assert (good.recipient, good.outcome, good.code) == (
            "good@server.test",
            Outcome.DELIVERED,
            250,
        )
        assert (bad.recipient, bad.outcome, bad.code, bad.enhanced) == (
            "bad@server.test",
            Outcome.PERMANENT,
            550,
            "5.1.1",
        )
        assert bad.stage == smtpstate.Stage.RCPT_TO and bad.state == "rcpt-to"
        assert bad.bounce_class == smtpstate.BounceClass.INVALID_RECIPIENT
        assert bad.text == "5.1.1 unknown user" and bad.error is None
        assert good.session_id == bad.session_id != 0
        assert not result.delivered and result.outcome is Outcome.PERMANENT
        with pytest.raises(dataclasses.FrozenInstanceError):
            good.code = 1  # type: ignore[misc]
    assert {m.data for m in server.wait_for_messages(8)} == {m.data for m in batch}


def test_each_recipient_reads_back_its_own_reply_text(scripted_server_factory):
    # The binding stores a reply string once while rows repeat it: replies
    # of the same length but other bytes, repeats, an empty text and UTF-8
    # in one batch must each come back as the server sent them.
    replies = {
        "a@server.test": "550 5.1.1 no a",
        "b@server.test": "550 5.1.2 no b",
        "c@server.test": "550 5.1.2 no b",
        "d@server.test": "550",
        "e@server.test": "550 5.1.1 n\u00f6 e",
        "f@server.test": "250 2.1.5 ok",
    }
    server = scripted_server_factory(Script(rcpt=lambda rcpt, i: replies[rcpt]))
    results = smtpstate.deliver(
        messages(20, tuple(replies)), "127.0.0.1", server.port, concurrency=2
    )
    queued = set()
    for result in results:
        got = {r.recipient: (r.code, r.enhanced, r.text) for r in result.recipients}
        # Each message's own "queued as" text, of one length for many.
        queued.add(got.pop("f@server.test"))
        assert got == {
            "a@server.test": (550, "5.1.1", "5.1.1 no a"),
            "b@server.test": (550, "5.1.2", "5.1.2 no b"),
            "c@server.test": (550, "5.1.2", "5.1.2 no b"),
            "d@server.test": (550, "", ""),
            "e@server.test": (550, "5.1.1", "5.1.1 n\u00f6 e"),
        }, got
    assert len(queued) == 20, queued
    assert all(
        code == 250 and enh == "2.0.0" and text.startswith("2.0.0 Ok: queued as ")
        for code, enh, text in queued
    ), queued


def test_reply_text_is_utf8_with_bad_bytes_replaced(scripted_server_factory):
    # Outcomes of one turn share one text arena: a non-ASCII reply there
    # must not disturb the others' fields.
    refusal = b"550 5.1.1 d\xc3\xa9j\xc3\xa0 \xff gone\r\n"
    server = scripted_server_factory(
        Script(rcpt=lambda rcpt, i: refusal if "bad" in rcpt else "250 2.1.5 Ok")
    )
    batch = messages(6, ("good@server.test", "bad@server.test"))
    results = smtpstate.deliver(batch, "127.0.0.1", server.port, concurrency=2)
    for result in results:
        good, bad = result.recipients
        assert (bad.code, bad.enhanced, bad.state) == (550, "5.1.1", "rcpt-to")
        assert bad.text == "5.1.1 d\u00e9j\u00e0 \ufffd gone"
        assert (good.code, good.enhanced, good.state) == (250, "2.0.0", "confirmation")
        assert good.text.startswith("2.0.0 ") and good.text.isascii()


def test_interleaved_rows_with_events_each_read_their_own_reply(
    scripted_server_factory,
):
    # Rows of many messages interleave (two recipients a transaction, three
    # connections) while events share the text arena: each recipient is
    # refused with a reply naming it, most of one length, between empty,
    # UTF-8 and invalid UTF-8 texts, so a string taken from another row or
    # from an event's text shows.
    def replies(rcpt: str) -> tuple[bytes, str, str]:
        """What the server sends, and the enhanced code and text it reads."""
        j = int(rcpt[1:3])
        if j == 0:
            return b"550\r\n", "", ""
        if j == 1:
            sent = b"550 5.1.1 \xff " + rcpt.encode() + b"\r\n"
            return sent, "5.1.1", f"5.1.1 \ufffd {rcpt}"
        text = f"5.1.{j % 3} {rcpt}" + (" n\u00f6" if j == 5 else "")
        return f"550 {text}\r\n".encode(), f"5.1.{j % 3}", text

    server = scripted_server_factory(Script(rcpt=lambda r, i: replies(r)[0]))
    batch = [
        Message(SENDER, [f"r{j:02d}m{i:03d}@server.test" for j in range(i % 7 + 1)],
                BODY, id=i)
        for i in range(120)
    ]  # fmt: skip
    events = io.StringIO()
    results = smtpstate.deliver(
        batch,
        "127.0.0.1",
        server.port,
        concurrency=3,
        max_recipients_per_transaction=2,
        json_events=events,
    )
    assert [r.message.id for r in results] == list(range(120))
    got = [
        (r.recipient, r.outcome, r.code, r.enhanced, r.text, r.state)
        for result in results
        for r in result.recipients
    ]
    assert got == [
        (rcpt, Outcome.PERMANENT, 550, *replies(rcpt)[1:], "rcpt-to")
        for m in batch
        for rcpt in m.recipients
    ]
    assert '"event": "outcome"' in events.getvalue()


def test_message_from_a_file_is_streamed_byte_exact(tmp_path, scripted_server_factory):
    path = tmp_path / "m.eml"
    path.write_bytes(b"Subject: file\n\n.dot\nbare lf\n")
    server = scripted_server_factory(Script())
    (result,) = smtpstate.deliver(
        [Message(SENDER, ["a@server.test"], path)], "127.0.0.1", server.port
    )
    assert result.delivered
    (msg,) = server.wait_for_messages(1)
    assert msg.data == b"Subject: file\r\n\r\n.dot\r\nbare lf\r\n"


@pytest.mark.parametrize(
    "bad",
    [
        dict(sender="a\r\nRCPT TO:<x@y>"),
        dict(sender="a\n@b"),
        dict(sender="a\0@b"),
        dict(recipients=["ok@x", "b\r@x"]),
        dict(recipients=["<x@y>"]),
        dict(recipients=[]),
        dict(recipients=[""]),
    ],
)
def test_bad_envelope_is_refused_before_anything_is_sent(bad, scripted_server_factory):
    server = scripted_server_factory(Script())
    fields = dict(sender=SENDER, recipients=["r@server.test"], data=BODY) | bad
    # Refused when the Message is built, so no delivery can start with it.
    with pytest.raises(smtpstate.InvalidArgumentError, match="rule:") as info:
        Message(**fields)
    assert isinstance(info.value, ValueError)
    assert server.sessions == []


@pytest.mark.parametrize(
    ("settings", "rule"),
    [
        (dict(helo="client\r\nMAIL FROM:<x@y>"), "rule: EHLO name"),
        (dict(helo="client\n"), "rule: EHLO name"),
        (dict(helo="a\0b"), "rule: EHLO name"),
        (dict(helo="a b"), "rule: EHLO name"),
        (dict(helo=""), "rule: EHLO name"),
        (dict(port=0), "rule: port"),
        (dict(port=65536), "rule: port"),
    ],
)
def test_bad_destination_is_refused_before_anything_is_sent(
    settings, rule, scripted_server_factory
):
    server = scripted_server_factory(Script())
    kwargs = dict(port=server.port) | settings
    with pytest.raises(smtpstate.InvalidArgumentError, match=rule):
        smtpstate.deliver(messages(1), "127.0.0.1", **kwargs)
    assert server.sessions == []


@pytest.mark.parametrize("data", [12, "no such file.eml", None, ["x"]])
def test_message_that_is_not_bytes_or_a_readable_file_is_refused(data, tmp_path):
    with pytest.raises((TypeError, smtpstate.InvalidArgumentError)):
        Message(SENDER, ["r@server.test"], data)
    with pytest.raises(smtpstate.InvalidArgumentError):
        Message(SENDER, ["r@server.test"], tmp_path)  # a directory


def test_strided_memoryview_is_refused_when_the_message_is_made(
    scripted_server_factory,
):
    # The binding hands C one contiguous buffer.  A strided view was taken
    # by Message and failed only when its turn to be submitted came, with
    # the messages before it already sent and their results lost.
    server = scripted_server_factory(Script())
    with pytest.raises(smtpstate.InvalidArgumentError, match="rule: body"):
        Message(SENDER, ["r@server.test"], memoryview(BODY * 2)[::2])
    # A contiguous view of any shape is sent as its bytes.
    square = memoryview(bytearray(BODY[:24])).cast("B", (4, 6))
    (result,) = smtpstate.deliver(
        [Message(SENDER, ["r@server.test"], square)], "127.0.0.1", server.port
    )
    assert result.delivered
    (msg,) = server.wait_for_messages(1)
    assert msg.data == b"From: sender@client.test\r\n"


def test_non_message_in_the_list_is_a_type_error(scripted_server_factory):
    server = scripted_server_factory(Script())
    with pytest.raises(TypeError, match="expected Message"):
        smtpstate.deliver([*messages(1), b"raw"], "127.0.0.1", server.port)
    assert server.sessions == []


def test_unreachable_server_fails_transiently_with_connect_error():
    from servers import free_port

    (result,) = smtpstate.deliver(messages(1), "127.0.0.1", free_port())
    (rcpt,) = result.recipients
    assert rcpt.outcome is Outcome.TRANSIENT
    assert rcpt.error == "SMTP_ECONNECT" and rcpt.stage == 0


def test_python_state_after_session_ready_runs_once_per_session(
    scripted_server_factory, registered
):
    server = scripted_server_factory(Script())
    registered(smtpstate.command_state("py-noop", "NOOP"), BuiltinState.SESSION_READY)
    results = smtpstate.deliver(messages(12), "127.0.0.1", server.port, concurrency=3)
    assert all(r.delivered for r in results)
    sessions = server.wait_for_closed_sessions(3)
    assert sum(len(s.messages) for s in sessions) == 12
    assert any(len(s.messages) > 1 for s in sessions)
    for session in sessions:
        assert session.verbs.count("NOOP") == 1
        assert session.verbs[:3] == ("EHLO", "NOOP", "MAIL")


def test_python_state_after_transaction_runs_once_per_message(
    scripted_server_factory, registered
):
    server = scripted_server_factory(Script())
    registered(smtpstate.command_state("py-noop", "NOOP"), BuiltinState.TRANSACTION)
    results = smtpstate.deliver(messages(5), "127.0.0.1", server.port, concurrency=1)
    assert all(r.delivered for r in results)
    (session,) = server.wait_for_closed_sessions(1)
    assert [v for v in session.verbs if v in ("NOOP", "MAIL")] == ["NOOP", "MAIL"] * 5


def test_python_state_answered_5xx_carries_reply_and_state_stage(
    scripted_server_factory, registered
):
    server = scripted_server_factory(Script(noop="554 5.7.1 policy says no"))
    registered(
        smtpstate.command_state("py-noop", "NOOP", stage=140),
        BuiltinState.SESSION_READY,
    )
    results = smtpstate.deliver(
        messages(2, ("a@server.test", "b@server.test")),
        "127.0.0.1",
        server.port,
        concurrency=1,
    )
    rcpts = [r for result in results for r in result.recipients]
    assert len(rcpts) == 4
    for r in rcpts:
        assert (r.outcome, r.code, r.enhanced, r.stage, r.state) == (
            Outcome.PERMANENT,
            554,
            "5.7.1",
            140,
            "py-noop",
        )
        assert r.text == "5.7.1 policy says no"
    assert server.messages == []


def test_python_state_on_failure_continue_moves_on(scripted_server_factory, registered):
    server = scripted_server_factory(Script(noop="502 5.5.1 no NOOP here"))
    registered(
        smtpstate.command_state("py-noop", "NOOP", on_failure="continue"),
        BuiltinState.SESSION_READY,
    )
    results = smtpstate.deliver(messages(2), "127.0.0.1", server.port)
    assert all(r.delivered for r in results)


def test_exception_fails_only_its_connection_and_others_go_on(
    scripted_server_factory, registered
):
    server = scripted_server_factory(Script())
    victims: list[int] = []

    def callback(session, events):
        if not victims:
            victims.append(session.session_id)
        if session.session_id == victims[0]:
            raise RuntimeError("boom in a Python state")
        session.next()

    def setup(session):
        session.wake()
        return smtpstate.WANT_READ

    registered(SmtpState("py-raises", callback, setup=setup), BuiltinState.TRANSACTION)
    results = smtpstate.deliver(messages(12), "127.0.0.1", server.port, concurrency=3)
    failed = [r for res in results for r in res.recipients if not r.delivered]
    ok = [r for res in results for r in res.recipients if r.delivered]
    assert len(failed) == 1 and len(ok) == 11
    (bad,) = failed
    assert bad.outcome is Outcome.TRANSIENT and bad.session_id == victims[0]
    assert bad.error == "SMTP_ESTATE"
    assert "raised RuntimeError: boom in a Python state" in bad.text
    assert all(r.session_id != victims[0] for r in ok)
    assert len(server.wait_for_messages(11)) == 11


@pytest.mark.parametrize("odd", ["what?", 0, 1 << 20, 2.5])
def test_callable_returning_nonsense_is_contained(
    odd, scripted_server_factory, registered
):
    server = scripted_server_factory(Script())
    registered(SmtpState("py-odd", lambda s, e: odd), BuiltinState.SESSION_READY)
    (result,) = smtpstate.deliver(messages(1), "127.0.0.1", server.port)
    (rcpt,) = result.recipients
    assert rcpt.outcome is Outcome.TRANSIENT
    assert f"returned {odd!r}" in rcpt.text
    assert server.messages == []


def test_session_is_dead_after_its_call(scripted_server_factory, registered):
    server = scripted_server_factory(Script())
    kept = []

    def callback(session, events):
        kept.append(session)
        session.next()

    def setup(session):
        session.wake()
        return smtpstate.WANT_READ

    registered(SmtpState("py-keep", callback, setup=setup), BuiltinState.SESSION_READY)
    assert smtpstate.deliver(messages(1), "127.0.0.1", server.port)[0].delivered
    with pytest.raises(smtpstate.SessionExpiredError, match="valid only during"):
        kept[0].send("NOOP")


def test_setup_session_is_dead_after_its_call(scripted_server_factory, registered):
    # A setup after TRANSACTION runs once a message through the binding's
    # C shim; the Session it kept must not act on the connection later,
    # whether the state is an observer or not.
    server = scripted_server_factory(Script())
    kept = []

    def setup(session):
        kept.append(session)
        session.next()

    observer = SmtpState("py-keep-obs", lambda s, e: None, setup=setup, observer=True)
    plain = SmtpState("py-keep-plain", lambda s, e: None, setup=setup)
    registered(observer, BuiltinState.TRANSACTION)
    registered(plain, BuiltinState.TRANSACTION)
    results = smtpstate.deliver(messages(6), "127.0.0.1", server.port, concurrency=2)
    assert [r.delivered for r in results] == [True] * 6
    assert len(kept) == 12
    for session in kept:
        with pytest.raises(smtpstate.SessionExpiredError, match="valid only"):
            session.next()
        with pytest.raises(smtpstate.SessionExpiredError, match="valid only"):
            session.send("NOOP")
        with pytest.raises(smtpstate.SessionExpiredError, match="valid only"):
            session.wake()
    assert len(server.wait_for_messages(6)) == 6


def test_events_reach_logging_as_key_value_lines(scripted_server_factory, caplog):
    server = scripted_server_factory(Script())
    with caplog.at_level(logging.DEBUG, logger="smtpstate"):
        smtpstate.deliver(messages(1), "127.0.0.1", server.port, log_events=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "smtpstate"]
    assert lines[0].startswith("session=") and " event=connect " in lines[0]
    assert any("event=state" in x and "change=ehlo->starttls" in x for x in lines)
    assert any("event=reply" in x and "code=354" in x for x in lines)
    assert any("event=outcome" in x and "code=250" in x for x in lines)
    assert any("event=close" in x for x in lines)
    sessions = {line.split()[0] for line in lines}
    assert len(sessions) == 1


def test_events_as_json_lines_keep_bodies_out(scripted_server_factory):
    server = scripted_server_factory(Script())
    out = io.StringIO()
    smtpstate.deliver(
        messages(1), "127.0.0.1", server.port, json_events=out, wire_trace=True
    )
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "connect" and "outcome" in kinds and kinds[-1] == "close"
    wire = [e for e in events if e["event"] == "wire"]
    assert any(e["bytes"].startswith(f"MAIL FROM:<{SENDER}>\r\n") for e in wire)
    assert not any("Hello." in e.get("bytes", "") for e in wire)
    assert any(e["bytes"].endswith("body bytes>") for e in wire)


def test_async_streams_results_while_other_tasks_run(smtp_sink):
    async def main():
        ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        seen = []
        ticks_at = []  # the other task's count when each result arrived
        async for result in smtpstate.deliver_async(
            messages(1000), "127.0.0.1", smtp_sink.port, concurrency=20
        ):
            ticks_at.append(ticks)
            seen.append(result)
        stop.set()
        await task
        return seen, ticks_at, ticks

    seen, ticks_at, ticks = asyncio.run(main())
    assert len(seen) == 1000 and all(r.delivered for r in seen)
    assert sorted(r.message.id for r in seen) == list(range(1000))
    assert ticks > ticks_at[0]  # the other task ran while results streamed
    assert ticks >= 100
    # Streamed, not handed over at the end: a connection settles at most one
    # message a turn, so 1,000 over 20 take 50 turns or more, and the other
    # task runs between them.  Results arrive in many groups, with the
    # other task's count rising between groups.
    assert len(set(ticks_at)) >= 20
    assert ticks_at[-1] > ticks_at[len(ticks_at) // 2] > ticks_at[0]
    assert len({r.recipients[0].session_id for r in seen}) == 20
    assert smtp_sink.wait_for_messages(1000) == 1000


def test_async_delivery_can_be_abandoned_midway(scripted_server_factory):
    server = scripted_server_factory(Script())

    async def main():
        agen = smtpstate.deliver_async(messages(20), "127.0.0.1", server.port)
        first = await agen.__anext__()
        await agen.aclose()
        return first

    assert asyncio.run(main()).delivered


def test_delivery_from_another_thread_is_refused(scripted_server_factory):
    import threading

    server = scripted_server_factory(Script())
    errors = []

    def run():
        try:
            smtpstate.deliver(messages(1), "127.0.0.1", server.port)
        except smtpstate.SmtpStateError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert isinstance(errors[0], smtpstate.WrongThreadError)
    assert server.sessions == []


def test_async_delivery_always_finishes_once_idle(scripted_server_factory):
    # The last connection can close in the very turn that follows the drain;
    # the loop must see it is idle then instead of waiting with no deadline.
    server = scripted_server_factory(Script())

    async def once():
        return [r async for r in smtpstate.deliver_async(messages(1), "127.0.0.1",
                                                        server.port)]  # fmt: skip

    async def main():
        for _ in range(150):
            (result,) = await asyncio.wait_for(once(), 10)
            assert result.delivered

    asyncio.run(main())
    assert len(server.wait_for_closed_sessions(150)) == 150


def test_unresolvable_host_fails_transiently_and_returns(c_build):
    (result,) = smtpstate.deliver(messages(1), "no-such-host.invalid", 25)
    (rcpt,) = result.recipients
    assert rcpt.outcome is Outcome.TRANSIENT and rcpt.error == "SMTP_ECONNECT"
    assert "resolve" in rcpt.text


def test_quit_deadline_ends_an_async_delivery(scripted_server_factory):
    from servers import SILENCE

    server = scripted_server_factory(Script(banner="554 5.7.1 no", quit=SILENCE))

    async def main():
        return [
            r
            async for r in smtpstate.deliver_async(
                messages(1), "127.0.0.1", server.port, timeouts={"quit": 0.3}
            )
        ]

    (result,) = asyncio.run(asyncio.wait_for(main(), 20))
    assert result.recipients[0].code == 554


@pytest.mark.parametrize(
    "address", ["a b@x.test", 'a"b@x.test', "é\x01@x.test", "é" * 130 + "@x.test"]
)
def test_address_with_space_or_control_is_refused(address):
    with pytest.raises(smtpstate.InvalidArgumentError, match="rule: address"):
        Message(address, ["r@server.test"], BODY)


def test_quoted_local_part_with_space_is_sent(scripted_server_factory):
    server = scripted_server_factory(Script())
    (result,) = smtpstate.deliver(
        [Message('"john doe"@client.test', ["r@server.test"], BODY)],
        "127.0.0.1",
        server.port,
    )
    assert result.delivered
    assert server.wait_for_messages(1)[0].mail_from == '"john doe"@client.test'


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan"), "3"])
def test_bad_timeouts_are_refused(timeout, scripted_server_factory):
    server = scripted_server_factory(Script())
    with pytest.raises(smtpstate.InvalidArgumentError, match="rule: timeout"):
        smtpstate.deliver(
            messages(1), "127.0.0.1", server.port, timeouts={"banner": timeout}
        )
    assert server.sessions == []


def test_state_definitions_are_checked_at_registration(noop):
    for command in ("", "NOOP\r\nRSET"):
        with pytest.raises(smtpstate.InvalidArgumentError, match="rule: one command"):
            smtpstate.command_state("bad-cmd", command)
    with pytest.raises(TypeError, match="callback is not callable"):
        smtpstate.register_smtp_client_state(SmtpState("five", 5), -1)
    with pytest.raises(TypeError, match="insert_after must be a state id"):
        smtpstate.register_smtp_client_state(SmtpState("named", noop), "banner")
