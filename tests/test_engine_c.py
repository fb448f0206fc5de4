"""The C engine end to end: the pure-C driver against real loopback servers.

Nothing here goes through Python's binding: the driver links
libsmtpstate.so built by make, and each test asserts what the server
received and each recipient's outcome as the driver printed it.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import pytest

from canonical import canonical_body, wire_body
from driver import run_driver
from servers import CLOSE, CLOSE_AFTER, SILENCE, OneSessionServer, Script

SENDER = "sender@client.test"
RCPTS = ["r0@server.test", "r1@server.test", "r2@server.test"]
MESSAGE = b"From: a@client.test\r\nSubject: hi\r\n\r\nHello.\r\n"

OK_RCPT = "250 2.1.5 Ok"
REPLY_4XX = "451 4.3.0 try again later"
REPLY_5XX = "554 5.7.1 refused here"

# Each stage: the Script field that answers it, the stage code the outcome
# must carry, and the timeout that guards it.
STAGES = {
    "banner": ("banner", 12, "banner"),
    "ehlo": ("ehlo", 10, "ehlo"),
    "helo": ("helo", 10, "ehlo"),
    "mail": ("mail", 2, "mail"),
    "rcpt": ("rcpt", 4, "rcpt"),
    "data": ("data", 6, "data"),
    "body": ("end_of_data", 9, "confirm"),
}
FAULTS = {"4xx": REPLY_4XX, "5xx": REPLY_5XX, "close": CLOSE, "silence": SILENCE}


@dataclass(frozen=True)
class Expect:
    result: str
    code: str = "0"
    enhanced: str = "-"
    stage: str = "9"
    error: str = "-"


def fault_outcome(fault: str, stage: int, permanent_5xx: bool) -> Expect:
    """What a fault at a stage makes of a recipient it concerns."""
    if fault == "4xx":
        return Expect("transient", "451", "4.3.0", str(stage))
    if fault == "5xx":
        kind = "permanent" if permanent_5xx else "transient"
        return Expect(kind, "554", "5.7.1", str(stage))
    error = "SMTP_ECLOSED" if fault == "close" else "SMTP_ETIMEOUT"
    return Expect("transient", stage=str(stage), error=error)


DELIVERED = Expect("delivered", "250", "2.0.0", "9")


def expected(stage_name: str, fault: str) -> dict[str, Expect]:
    """DESIGN 8's table, recipient by recipient."""
    _, stage, _ = STAGES[stage_name]
    if stage_name == "ehlo" and fault == "5xx":
        return dict.fromkeys(RCPTS, DELIVERED)  # HELO takes over
    if stage_name == "rcpt" and fault in ("4xx", "5xx"):
        out = dict.fromkeys(RCPTS, DELIVERED)
        out[RCPTS[1]] = fault_outcome(fault, stage, True)
        return out
    # The banner's 5xx is transient: another host may accept.
    permanent = stage_name != "banner"
    return dict.fromkeys(RCPTS, fault_outcome(fault, stage, permanent))


def script_for(stage_name: str, fault: str, pipelining: bool = True) -> Script:
    field_name, _, _ = STAGES[stage_name]
    reply = FAULTS[fault]
    options: dict[str, object] = {"pipelining": pipelining}
    if stage_name == "helo":
        options["ehlo"] = "502 5.5.2 Error: command not recognized"
    if stage_name == "rcpt":
        options["rcpt"] = lambda rcpt, index: reply if index == 1 else OK_RCPT
    else:
        options[field_name] = reply
    return Script(**options)  # type: ignore[arg-type]


# Every deadline the driver can set.  The ones not under test are set
# past FAULT_RUN_TIMEOUT, the run's own limit, so a silence failed by any
# deadline but the guarding one cannot end the run in time: it fails the
# test instead of passing slowly.
DEADLINE_KINDS = ["connect", "banner", "ehlo", "mail", "rcpt", "data", "body"]
DEADLINE_KINDS += ["confirm", "rset", "quit", "tls", "idle", "custom"]
FAULT_RUN_TIMEOUT = 60
LONG_DEADLINE_MS = 10 * FAULT_RUN_TIMEOUT * 1000


def timeouts(guard: str, short_ms: int = 400) -> list[str]:
    """Every deadline long but the one guarding the stage under test."""
    args = []
    for kind in DEADLINE_KINDS:
        ms = short_ms if kind == guard else LONG_DEADLINE_MS
        args += ["--timeout", f"{kind}={ms}"]
    return args


def message_file(tmp_path, data: bytes = MESSAGE, name: str = "m.eml"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def rcpt_args(rcpts: list[str]) -> list[str]:
    return [arg for rcpt in rcpts for arg in ("--to", rcpt)]


CASES = [
    (stage, fault, pipelining)
    for stage in STAGES
    for fault in FAULTS
    for pipelining in (True, False)
]


@pytest.mark.parametrize(
    ("stage", "fault", "pipelining"),
    CASES,
    ids=[f"{s}-{f}-{'pipelining' if p else 'plain'}" for s, f, p in CASES],
)
def test_fault_at_stage_settles_each_recipient(
    stage, fault, pipelining, tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(script_for(stage, fault, pipelining))
    guard = STAGES[stage][2]
    run = run_driver(
        server.port,
        "--from",
        SENDER,
        *rcpt_args(RCPTS),
        *timeouts(guard),
        str(message_file(tmp_path)),
        timeout=FAULT_RUN_TIMEOUT,
    )

    got = {
        o["rcpt"]: Expect(o["result"], o["code"], o["enhanced"], o["stage"], o["error"])
        for o in run.outcomes
    }
    assert len(run.outcomes) == len(RCPTS), run.stderr
    assert got == expected(stage, fault)
    delivered = [r for r, e in expected(stage, fault).items() if e == DELIVERED]
    if delivered:
        (msg,) = server.wait_for_messages(1)
        assert msg.data == MESSAGE
        assert list(msg.accepted) == delivered
    else:
        # No message may have been accepted by the server's final reply.
        assert all(not (m.reply or b"").startswith(b"2") for m in server.messages)


@pytest.mark.parametrize("fault", ["4xx", "5xx"])
def test_banner_refusal_is_followed_by_quit(
    fault, tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(Script(banner=FAULTS[fault]))
    run_driver(
        server.port, "--from", SENDER, "--to", RCPTS[0], str(message_file(tmp_path))
    )
    (session,) = server.wait_for_closed_sessions(1)
    assert session.verbs == ("QUIT",)


def test_silent_server_fails_by_the_banner_deadline(
    tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(Script(banner=SILENCE))
    run = run_driver(
        server.port,
        "--from",
        SENDER,
        "--to",
        RCPTS[0],
        *timeouts("banner", 300),
        str(message_file(tmp_path)),
    )
    (outcome,) = run.outcomes
    assert outcome["error"] == "SMTP_ETIMEOUT"
    assert outcome["state"] == "banner" and outcome["stage"] == "12"
    assert run.returncode == 75


def test_idle_reused_connection_sends_quit_when_idle_time_ends(
    tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(Script())
    run = run_driver(
        server.port,
        "--from",
        SENDER,
        "--to",
        RCPTS[0],
        "--timeout",
        "idle=300",
        "--linger",
        "10000",
        str(message_file(tmp_path)),
    )
    assert [o["result"] for o in run.outcomes] == ["delivered"]
    (session,) = server.wait_for_closed_sessions(1)
    assert session.verbs == ("EHLO", "MAIL", "RCPT", "DATA", "QUIT")
    (msg,) = session.messages
    quit_at = next(e.at for e in session.transcript if e.data.startswith(b"QUIT"))
    assert quit_at - msg.received_at >= 0.3  # not before the idle time
    assert run.summary["closes"] == "1"


def test_421_on_idle_connection_moves_rest_of_batch_to_new_connection(
    tmp_path, c_build, scripted_server_factory
):
    first = Script(end_of_data=b"250 2.0.0 Ok\r\n421 4.3.2 going down\r\n")
    server = scripted_server_factory(Script(), per_session={0: first})
    files = [
        str(message_file(tmp_path, MESSAGE.replace(b"hi", b"m%d" % i), f"{i}.eml"))
        for i in range(3)
    ]
    run = run_driver(
        server.port, "--from", SENDER, "--to", RCPTS[0], "--concurrency", "1", *files
    )
    assert [o["result"] for o in run.outcomes] == ["delivered"] * 3
    sessions = server.wait_for_closed_sessions(2)
    assert [len(s.messages) for s in sessions] == [1, 2]
    assert "QUIT" not in sessions[0].verbs  # the server closed it
    by_id = {o["id"]: o["session"] for o in run.outcomes}
    assert by_id["1"] != by_id["2"] == by_id["3"]


def test_close_after_a_reply_moves_rest_of_batch_to_new_connection(
    tmp_path, c_build, scripted_server_factory
):
    # The server closes right after accepting the first message, with no
    # 421: the next message must go to a new connection, not fail on this
    # one.
    first = Script(end_of_data=CLOSE_AFTER("250 2.0.0 Ok"))
    server = scripted_server_factory(Script(), per_session={0: first})
    files = [
        str(message_file(tmp_path, MESSAGE.replace(b"hi", b"m%d" % i), f"{i}.eml"))
        for i in range(3)
    ]
    run = run_driver(
        server.port, "--from", SENDER, "--to", RCPTS[0], "--concurrency", "1", *files
    )
    assert [o["result"] for o in run.outcomes] == ["delivered"] * 3
    sessions = server.wait_for_closed_sessions(2)
    assert [len(s.messages) for s in sessions] == [1, 2]
    assert [s.verbs.count("MAIL") for s in sessions] == [1, 2]


def test_421_arriving_while_idle_requeues_work_handed_to_that_connection(
    tmp_path, c_build, scripted_server_factory
):
    # The driver settles the first message, then sleeps without running the
    # loop while the server sends 421 on the idle connection; the second
    # message is handed to that connection before the 421 is read.
    server = scripted_server_factory(
        Script(), per_session={0: Script(idle_421_after=1, idle_421_delay=0.05)}
    )
    files = [str(message_file(tmp_path, MESSAGE, f"{i}.eml")) for i in range(2)]
    run = run_driver(
        server.port,
        "--from",
        SENDER,
        "--to",
        RCPTS[0],
        "--concurrency",
        "1",
        "--pause-after",
        "1:400",
        *files,
    )
    assert [o["result"] for o in run.outcomes] == ["delivered"] * 2
    sessions = server.wait_for_closed_sessions(2)
    assert [len(s.messages) for s in sessions] == [1, 1]
    assert sessions[0].close_reason == "server"


# Messages that test DESIGN 9's canonical form byte for byte.
SPECIAL_BODIES = {
    "lone-dot": b"Subject: dot\r\n\r\nbefore\r\n.\r\nafter\r\n",
    "dot-leading": b"Subject: dots\r\n\r\n.one\r\n..two\r\n...\r\n. space\r\n",
    "bare-cr": b"Subject: cr\r\n\r\nline one\rline two\r.\rend\r\n",
    "bare-lf": b"Subject: lf\n\nline one\nline two\n.\n..\nend\n",
    "mixed-ends": b"Subject: mix\r\n\r\na\nb\rc\r\nd\n\r.\n\r\n",
    "no-final-newline": b"Subject: nonl\r\n\r\nno newline at the end",
    "no-final-newline-dot": b"Subject: nonl\r\n\r\nends with a dot\r\n.",
    "empty": b"",
    "line-998": b"Subject: long\r\n\r\n" + b"x" * 998 + b"\r\n",
    "line-5000": b"Subject: longer\r\n\r\n." + b"y" * 4999 + b"\r\n",
    "two-mib": b"Subject: big\r\n\r\n"
    + b"".join(
        (b"." if i % 7 == 0 else b"") + b"%07d " % i + b"z" * 60 + b"\r\n"
        for i in range(30000)
    ),
}


@pytest.mark.parametrize("name", list(SPECIAL_BODIES))
def test_capture_server_keeps_canonical_form(
    name, tmp_path, c_build, scripted_server_factory
):
    data = SPECIAL_BODIES[name]
    if name == "two-mib":
        assert len(data) >= 2 * 1024 * 1024
    server = scripted_server_factory(Script())
    run = run_driver(
        server.port,
        "--from",
        SENDER,
        "--to",
        RCPTS[0],
        str(message_file(tmp_path, data)),
    )
    assert [o["result"] for o in run.outcomes] == ["delivered"]
    (msg,) = server.wait_for_messages(1)
    assert msg.data == canonical_body(data)
    assert msg.raw_data + b".\r\n" == wire_body(data)


def test_thousand_messages_over_twenty_connections_to_smtp_sink(c_build, smtp_sink):
    run = run_driver(
        smtp_sink.port,
        "--from",
        SENDER,
        "--to",
        RCPTS[0],
        "--count",
        "1000",
        "--size",
        "1024",
        "--concurrency",
        "20",
        "--trace",
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert [o["result"] for o in run.outcomes].count("delivered") == 1000
    assert len({o["id"] for o in run.outcomes}) == 1000
    assert smtp_sink.wait_for_messages(1000) == 1000
    assert run.summary["max_open"] == "20"
    sessions = int(run.summary["sessions"])
    per_session = collections.Counter(o["session"] for o in run.outcomes)
    assert len(per_session) == sessions
    # Reuse: 20 sessions, and one more only in place of one that reached
    # the 100 messages a connection carries by default.
    assert max(per_session.values()) <= 100
    assert 20 <= sessions <= 20 + list(per_session.values()).count(100)
    # The events themselves, in order, not the engine's own counter: at most
    # and at some point exactly 20 connections open, each opened once.
    open_now, most_open, opened = 0, 0, []
    for event in run.events:
        if event["event"] == "connect":
            opened.append(event["session"])
            open_now += 1
            most_open = max(most_open, open_now)
        elif event["event"] == "close":
            open_now -= 1
    assert most_open == 20 and open_now == 0
    assert len(opened) == len(set(opened)) == int(run.summary["sessions"])
    # The sink's own session count agrees: reuse, not one per message.
    assert smtp_sink.wait_for_sessions(len(opened)) == len(opened)


def noop_positions(session) -> list[int]:
    return [i for i, verb in enumerate(session.verbs) if verb == "NOOP"]


def test_c_state_after_session_ready_runs_once_per_session(
    tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(Script())
    files = [str(message_file(tmp_path, MESSAGE, f"{i}.eml")) for i in range(6)]
    run = run_driver(
        server.port,
        "--from",
        SENDER,
        "--to",
        RCPTS[0],
        "--concurrency",
        "2",
        "--noop-after",
        "session-ready",
        *files,
    )
    assert [o["result"] for o in run.outcomes] == ["delivered"] * 6
    sessions = server.wait_for_closed_sessions(2)
    assert sum(len(s.messages) for s in sessions) == 6
    assert any(len(s.messages) > 1 for s in sessions)
    for session in sessions:
        assert session.verbs.count("NOOP") == 1
        assert session.verbs[:3] == ("EHLO", "NOOP", "MAIL")
    assert run.summary["noops"] == str(len(sessions))


def test_c_state_after_transaction_runs_once_per_message(
    tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(Script())
    files = [str(message_file(tmp_path, MESSAGE, f"{i}.eml")) for i in range(5)]
    run = run_driver(
        server.port,
        "--from",
        SENDER,
        "--to",
        RCPTS[0],
        "--concurrency",
        "1",
        "--noop-after",
        "transaction",
        *files,
    )
    assert [o["result"] for o in run.outcomes] == ["delivered"] * 5
    (session,) = server.wait_for_closed_sessions(1)
    assert len(session.messages) == 5
    verbs = [v for v in session.verbs if v in ("NOOP", "MAIL")]
    assert verbs == ["NOOP", "MAIL"] * 5


def test_c_state_refused_with_5xx_fails_with_its_reply_and_stage(
    tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(Script(noop="550 5.7.0 no noop for you"))
    run = run_driver(
        server.port,
        "--from",
        SENDER,
        *rcpt_args(RCPTS[:2]),
        "--noop-after",
        "session-ready",
        str(message_file(tmp_path)),
    )
    assert {o["result"] for o in run.outcomes} == {"permanent"}
    assert {
        (o["code"], o["enhanced"], o["state"], o["stage"]) for o in run.outcomes
    } == {("550", "5.7.0", "c-noop", "101")}
    assert server.messages == []


def test_c_state_accepts_extra_codes_through_read_smtp2(
    tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(Script(noop="252 2.0.0 fine too"))
    run = run_driver(
        server.port,
        "--from",
        SENDER,
        "--to",
        RCPTS[0],
        "--noop-after",
        "session-ready",
        str(message_file(tmp_path)),
    )
    assert [o["result"] for o in run.outcomes] == ["delivered"]
    assert run.summary["noops"] == "1"


def test_c_state_jumping_to_quit_settles_the_batch_at_once(
    tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(Script())
    files = [str(message_file(tmp_path, MESSAGE, f"{i}.eml")) for i in range(3)]
    run = run_driver(
        server.port,
        "--from",
        SENDER,
        *rcpt_args(RCPTS[:2]),
        "--concurrency",
        "1",
        "--quit-after",
        "session-ready",
        *files,
        timeout=30,
    )
    assert run.returncode == 75
    assert len(run.outcomes) == 6
    for o in run.outcomes:
        assert (o["result"], o["error"], o["state"]) == (
            "transient",
            "SMTP_ESTATE",
            "c-quit",
        )
        assert "state c-quit ended the session" in o["text"]
    # One session per message, each ended by the state: none is handed to
    # another connection.
    assert run.summary["sessions"] == "3"
    sessions = server.wait_for_closed_sessions(3)
    assert [s.verbs for s in sessions] == [("EHLO", "QUIT")] * 3
    assert server.messages == []


def test_submission_is_bounded_and_backpressure_loses_nothing(c_build, smtp_sink):
    run = run_driver(
        smtp_sink.port,
        "--from",
        SENDER,
        "--to",
        RCPTS[0],
        "--count",
        "200",
        "--size",
        "300",
        "--queue",
        "5",
        "--concurrency",
        "3",
    )
    assert run.returncode == 0, run.stderr
    assert sorted(int(o["id"]) for o in run.outcomes) == list(range(1, 201))
    assert smtp_sink.wait_for_messages(200) == 200


def test_drain_refuses_new_work_and_finishes_what_was_submitted(
    tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(Script())
    files = [str(message_file(tmp_path, MESSAGE, f"{i}.eml")) for i in range(6)]
    run = run_driver(
        server.port, "--from", SENDER, "--to", RCPTS[0], "--drain-after", "3", *files
    )
    assert sorted(o["id"] for o in run.outcomes) == ["1", "2", "3"]
    assert {o["result"] for o in run.outcomes} == {"delivered"}
    assert run.summary["refused"] == "3"
    assert run.returncode == 75
    assert len(server.wait_for_messages(3)) == 3


def test_drained_connections_still_carry_the_queued_messages(
    c_build, scripted_server_factory
):
    server = scripted_server_factory(Script())
    run = run_driver(
        server.port,
        *("--from", SENDER, "--to", RCPTS[0], "--count", "40", "--size", "300"),
        *("--drain-after", "30", "--concurrency", "2", "--per-connection", "100"),
    )
    assert len(run.outcomes) == 30, run.stderr
    assert {o["result"] for o in run.outcomes} == {"delivered"}
    assert run.summary["refused"] == "10"
    # Drain stops new work, not reuse: the queue rides the open connections.
    assert int(run.summary["sessions"]) <= 2, run.summary
    assert len(server.wait_for_messages(30)) == 30
    assert len(server.sessions) <= 2


def test_embedder_loop_with_fd_and_next_deadline_delivers_and_quits(
    tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(Script())
    files = [str(message_file(tmp_path, MESSAGE, f"{i}.eml")) for i in range(4)]
    run = run_driver(server.port, "--from", SENDER, "--to", RCPTS[0], "--poll", *files)
    assert [o["result"] for o in run.outcomes] == ["delivered"] * 4
    sessions = server.wait_for_closed_sessions(1)
    assert all(s.verbs[-1] == "QUIT" for s in sessions)


def test_wire_trace_shows_the_bytes_each_way(
    tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(Script())
    run = run_driver(
        server.port, "--from", SENDER, "--to", RCPTS[0], "--wire",
        str(message_file(tmp_path)),
    )  # fmt: skip
    sent = "".join(e["text"] for e in run.events if e.get("dir") == "sent")
    received = "".join(e["text"] for e in run.events if e.get("dir") == "received")
    (session,) = server.wait_for_closed_sessions(1)
    assert sent.encode() == session.received
    assert received.encode() == session.sent
    assert f"MAIL FROM:<{SENDER}>\r\n" in sent
    sessions = {e["session"] for e in run.events}
    assert len(sessions) == 1 and sessions == {run.outcomes[0]["session"]}


@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelining"])
def test_rcpt_452_moves_remaining_recipients_to_a_new_transaction(
    pipelining, tmp_path, c_build, scripted_server_factory
):
    # A server that takes two recipients per transaction, then says 452.
    rcpts = [f"r{i}@server.test" for i in range(5)]
    script = Script(
        pipelining=pipelining,
        rcpt=lambda rcpt, i: "452 4.5.3 too many recipients" if i >= 2 else OK_RCPT,
    )
    server = scripted_server_factory(script)
    run = run_driver(
        server.port, "--from", SENDER, *rcpt_args(rcpts), str(message_file(tmp_path))
    )
    assert [o["result"] for o in run.outcomes] == ["delivered"] * 5
    msgs = server.wait_for_messages(3)
    assert [list(m.accepted) for m in msgs] == [rcpts[:2], rcpts[2:4], rcpts[4:]]
    (session,) = server.wait_for_closed_sessions(1)
    assert "RSET" not in session.verbs


@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelining"])
def test_rcpt_452_on_first_recipient_of_transaction_is_transient(
    pipelining, tmp_path, c_build, scripted_server_factory
):
    script = Script(pipelining=pipelining, rcpt="452 4.3.1 insufficient storage")
    server = scripted_server_factory(script)
    run = run_driver(
        server.port, "--from", SENDER, *rcpt_args(RCPTS), str(message_file(tmp_path))
    )
    assert {(o["result"], o["code"], o["stage"]) for o in run.outcomes} == {
        ("transient", "452", "4")
    }
    assert len(run.outcomes) == 3
    (session,) = server.wait_for_closed_sessions(1)
    assert server.messages == []
    if not pipelining:  # the rest of the message is not even tried
        assert session.verbs.count("RCPT") == 1 and "DATA" not in session.verbs


def test_recipients_are_split_by_the_per_transaction_limit(
    tmp_path, c_build, scripted_server_factory
):
    rcpts = [f"r{i}@server.test" for i in range(5)]
    server = scripted_server_factory(Script())
    run = run_driver(
        server.port,
        "--from",
        SENDER,
        *rcpt_args(rcpts),
        "--rcpt-per-transaction",
        "2",
        str(message_file(tmp_path)),
    )
    assert [o["result"] for o in run.outcomes] == ["delivered"] * 5
    msgs = server.wait_for_messages(3)
    assert [len(m.accepted) for m in msgs] == [2, 2, 1]
    assert all(m.data == MESSAGE for m in msgs)


@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelining"])
def test_all_recipients_refused_sends_no_body_and_resets_before_next_message(
    pipelining, tmp_path, c_build, scripted_server_factory
):
    def rcpt(address, index):
        return "550 5.1.1 no such user" if address.startswith("bad") else OK_RCPT

    server = scripted_server_factory(Script(rcpt=rcpt, pipelining=pipelining))
    bad = str(message_file(tmp_path, MESSAGE, "bad.eml"))
    first = run_driver(server.port, "--from", SENDER, "--to", "bad@server.test", bad)
    assert [o["result"] for o in first.outcomes] == ["permanent"]
    assert first.outcomes[0]["class"] == "10"
    run = run_driver(
        server.port, "--from", SENDER, "--to", "bad1@server.test",
        "--to", "bad2@server.test", "--concurrency", "1", bad, bad,
    )  # fmt: skip
    assert [o["result"] for o in run.outcomes] == ["permanent"] * 4
    session = server.wait_for_closed_sessions(2)[-1]
    # Under PIPELINING DATA went out with the group; the server refused it.
    one = ("MAIL", "RCPT", "RCPT", *(("DATA",) if pipelining else ()), "RSET")
    assert session.verbs == ("EHLO", *one, *one, "QUIT")
    assert server.messages == []


def test_pipelined_data_accepted_with_no_recipient_gets_a_lone_dot(
    tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(
        Script(rcpt="550 5.1.1 no such user", data="354 go ahead anyway")
    )
    run = run_driver(
        server.port, "--from", SENDER, *rcpt_args(RCPTS[:2]),
        str(message_file(tmp_path)),
    )  # fmt: skip
    assert [o["result"] for o in run.outcomes] == ["permanent"] * 2
    (session,) = server.wait_for_closed_sessions(1)
    assert session.verbs == ("EHLO", "MAIL", "RCPT", "RCPT", "DATA", "RSET", "QUIT")
    (msg,) = server.messages
    assert msg.raw_data == b""  # the lone dot: no body was sent


def test_data_refused_resets_before_next_message(
    tmp_path, c_build, scripted_server_factory
):
    answers = iter(["554 5.7.1 no data for you", "354 go ahead"])
    server = scripted_server_factory(Script(data=lambda line: next(answers)))
    files = [str(message_file(tmp_path, MESSAGE, f"{i}.eml")) for i in range(2)]
    run = run_driver(
        server.port, "--from", SENDER, "--to", RCPTS[0], "--concurrency", "1", *files
    )
    assert [(o["id"], o["result"], o["stage"]) for o in run.outcomes] == [
        ("1", "permanent", "6"),
        ("2", "delivered", "9"),
    ]
    (session,) = server.wait_for_closed_sessions(1)
    assert session.verbs == (
        "EHLO", "MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA", "QUIT",
    )  # fmt: skip


def test_unresolvable_host_settles_and_the_driver_returns(tmp_path, c_build):
    run = run_driver(
        25, "--host", "no-such-host.invalid", "--from", SENDER, "--to", RCPTS[0],
        str(message_file(tmp_path)), timeout=60,
    )  # fmt: skip
    (outcome,) = run.outcomes
    assert outcome["error"] == "SMTP_ECONNECT" and run.returncode == 75


def withholding(log: list):
    """A session that answers MAIL FROM only once it has read DATA: a client
    that waits for each reply before the next command stalls on it."""

    def session(conn, until) -> None:
        group = until(b"DATA\r\n")
        log.append(group)
        rcpts = group.count(b"RCPT TO:")
        conn.sendall(b"250 sender ok\r\n" + b"250 rcpt ok\r\n" * rcpts
                     + b"354 go on\r\n")  # fmt: skip
        log.append(until(b"\r\n.\r\n"))
        conn.sendall(b"250 2.0.0 kept\r\n")
        log.append(until(b"\r\n"))
        conn.sendall(b"221 bye\r\n")

    return session


def test_pipelining_sends_mail_rcpts_and_data_before_any_reply(tmp_path, c_build):
    log: list[bytes] = []
    server = OneSessionServer(withholding(log)).start()
    run = run_driver(
        server.port, "--from", SENDER, *rcpt_args(RCPTS), "--timeout", "mail=2000",
        str(message_file(tmp_path)),
    )  # fmt: skip
    server.join()
    assert [o["result"] for o in run.outcomes] == ["delivered"] * 3, run.stderr
    assert log[0] == (
        f"MAIL FROM:<{SENDER}>\r\n".encode()
        + b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in RCPTS)
        + b"DATA\r\n"
    )
    assert log[1] == MESSAGE + b".\r\n"


def test_pipelined_group_is_one_write(tmp_path, c_build, scripted_server_factory):
    server = scripted_server_factory(Script())
    run = run_driver(
        server.port, "--from", SENDER, *rcpt_args(RCPTS), "--wire",
        str(message_file(tmp_path)),
    )  # fmt: skip
    assert {o["result"] for o in run.outcomes} == {"delivered"}
    sent = [e["text"] for e in run.events if e.get("dir") == "sent"]
    group = (
        f"MAIL FROM:<{SENDER}>\r\n"
        + "".join(f"RCPT TO:<{r}>\r\n" for r in RCPTS)
        + "DATA\r\n"
    )
    assert group in sent  # one write event holds the whole group
    (session,) = server.wait_for_closed_sessions(1)
    verbs = session.verbs
    pipelined = dict(zip(range(len(verbs)), session.pipelined, strict=True))
    assert [pipelined[i] for i, v in enumerate(verbs) if v in ("RCPT", "DATA")] == [
        True, True, True, True
    ]  # fmt: skip


@pytest.mark.parametrize("size", [0, 7, 1234567])
def test_mail_from_declares_the_size_when_offered(
    size, tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(Script(ehlo_keywords=("SIZE 10240000",)))
    data = b"x" * size
    run = run_driver(
        server.port,
        "--from",
        SENDER,
        "--to",
        RCPTS[0],
        str(message_file(tmp_path, data)),
    )
    assert [o["result"] for o in run.outcomes] == ["delivered"]
    (session,) = server.wait_for_closed_sessions(1)
    mail = [c for c in session.commands if c.startswith(b"MAIL")]
    assert mail == [f"MAIL FROM:<{SENDER}> SIZE={size}\r\n".encode()]


def test_without_pipelining_one_command_at_a_time(
    tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(Script(pipelining=False))
    run = run_driver(
        server.port, "--from", SENDER, *rcpt_args(RCPTS), str(message_file(tmp_path))
    )
    assert {o["result"] for o in run.outcomes} == {"delivered"}
    (session,) = server.wait_for_closed_sessions(1)
    assert not any(session.pipelined)


def test_pipelined_refused_middle_recipient_keeps_the_others(
    tmp_path, c_build, scripted_server_factory
):
    rcpts = [f"r{i}@server.test" for i in range(5)]
    server = scripted_server_factory(
        Script(rcpt=lambda r, i: "550 5.1.1 no" if i == 2 else OK_RCPT)
    )
    run = run_driver(
        server.port, "--from", SENDER, *rcpt_args(rcpts), str(message_file(tmp_path))
    )
    got = {o["rcpt"]: (o["result"], o["code"]) for o in run.outcomes}
    assert got == {r: ("delivered", "250") for r in rcpts} | {
        rcpts[2]: ("permanent", "550")
    }
    (msg,) = server.wait_for_messages(1)
    assert list(msg.accepted) == rcpts[:2] + rcpts[3:]


@pytest.mark.parametrize("reply", ["550 5.1.0 sender refused", "451 4.3.0 later"])
def test_pipelined_refused_mail_from_ends_the_transaction(
    reply, tmp_path, c_build, scripted_server_factory
):
    answers = iter([reply, "250 2.1.0 Ok"])
    server = scripted_server_factory(Script(mail=lambda sender: next(answers)))
    files = [str(message_file(tmp_path, MESSAGE, f"{i}.eml")) for i in range(2)]
    run = run_driver(
        server.port, "--from", SENDER, *rcpt_args(RCPTS[:2]), "--concurrency", "1",
        *files,
    )  # fmt: skip
    kind = "permanent" if reply.startswith("5") else "transient"
    assert [(o["id"], o["result"]) for o in run.outcomes] == [
        ("1", kind), ("1", kind), ("2", "delivered"), ("2", "delivered")
    ]  # fmt: skip
    (session,) = server.wait_for_closed_sessions(1)
    assert "RSET" not in session.verbs  # no transaction was open
    (msg,) = server.wait_for_messages(1)
    assert msg.data == MESSAGE
