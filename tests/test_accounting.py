"""Accounting under load (issue 6, item 6): thousands of messages with
unique Message-IDs over hundreds of connections to the seeded random
server (tests/random_server.py), which accepts, refuses with 4xx and 5xx,
delays and drops at every stage.  tests/accounting.py holds the rules;
these tests run the load through the pure-C driver and through
`smtpstate.deliver`, and show that the rules catch what they must.

The seed is printed and is in every assertion message; set
RANDOM_SERVER_SEED to replay a run's decisions.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import smtpstate
from accounting import (
    ClientOutcome,
    Report,
    check,
    driver_expected,
    message_number,
)
from driver import run_driver
from random_server import STAGES, RandomServer, ServerLog, message_id

SENDER = "sender@client.test"
RCPTS = ["a@server.test", "b@server.test", "c@server.test"]
SEED = (
    int(os.environ["RANDOM_SERVER_SEED"])
    if "RANDOM_SERVER_SEED" in os.environ
    else None
)

# What a run of thousands of messages must have met for its result to
# mean anything: every verdict at every stage where the defaults draw it
# dozens of times (see STAGE_SCALE), and a delay wherever replies go out.
VERDICTS = ("accept", "tempfail", "permfail", "drop", "delay")
MET = {stage: VERDICTS for stage in STAGES if stage != "idle"}
MET["idle"] = ("tempfail",)
MET["body"] = ("drop",)


@pytest.fixture
def random_server(tmp_path: Path) -> Iterator[Callable[..., RandomServer]]:
    """Starts random servers (faults as `Faults`' fields); all stop at
    teardown, and each prints its seed."""
    started: list[RandomServer] = []

    def start(**faults: float) -> RandomServer:
        path = tmp_path / f"random-server-{len(started)}.jsonl"
        server = RandomServer(path, SEED, **faults).start()
        started.append(server)
        print(f"random_server seed={server.seed} port={server.port} log={path}")
        return server

    yield start
    for server in started:
        server.stop()


def stopped_log(server: RandomServer) -> ServerLog:
    """Stops the server and reads its whole log."""
    server.stop()
    log = server.log()
    assert log.records[-1] == {"ev": "stop", "timed_out": False}, log.seed
    return log


def assert_met(log: ServerLog, report: Report) -> None:
    verdicts = log.verdicts()
    missing = [
        f"{stage}:{verdict}"
        for stage, wanted in MET.items()
        for verdict in wanted
        if verdict not in verdicts.get(stage, set())
    ]
    assert not missing, f"the run never met {missing}; {report.summary()}"


def from_driver(run_outcomes: list[dict[str, str]]) -> list[ClientOutcome]:
    return [
        ClientOutcome(int(o["id"]), o["rcpt"], o["result"], int(o["code"]))
        for o in run_outcomes
    ]


def test_c_driver_10000_messages_200_connections(c_build, random_server):
    count = 10_000
    server = random_server()
    run = run_driver(
        server.port,
        "--from",
        SENDER,
        *[arg for rcpt in RCPTS for arg in ("--to", rcpt)],
        "--vary-recipients",
        "--count",
        str(count),
        "--size",
        "600",
        "--concurrency",
        "200",
        "--per-connection",
        "25",
        timeout=300,
    )
    log = stopped_log(server)
    expected = driver_expected(count, RCPTS, vary=True)
    report = check(expected, from_driver(run.outcomes), log)
    print(report.summary())

    assert not report.problems, report.summary()
    assert run.returncode == 1, (run.returncode, run.stderr[-2000:], log.seed)
    assert run.summary["messages"] == str(count), report.summary()
    assert run.summary["max_open"] == "200", report.summary()
    assert run.summary["refused"] == "0", report.summary()
    # Every kind of outcome happened, and the 250-then-drop case too.
    for kind in ("delivered", "transient", "permanent", "server_dropped_after_250"):
        assert any(k.startswith(kind) for k in report.counts), report.summary()
    assert_met(log, report)


def test_python_api_2000_messages_50_connections(random_server):
    count = 2_000
    server = random_server()
    tag = server.seed
    messages = [
        smtpstate.Message(
            SENDER,
            RCPTS[: 1 + (n - 1) % len(RCPTS)],
            (
                f"From: {SENDER}\r\nTo: {RCPTS[0]}\r\nSubject: {n}\r\n"
                f"Message-ID: <{n}.{tag}@accounting.test>\r\n\r\n"
                + f"line {n} of the body\r\n"
                * 20
            ).encode(),
            id=n,
        )
        for n in range(1, count + 1)
    ]
    results = smtpstate.deliver(
        messages,
        "127.0.0.1",
        server.port,
        concurrency=50,
        max_messages_per_connection=25,
    )
    log = stopped_log(server)
    outcomes = [
        ClientOutcome(res.message.id, r.recipient, r.outcome.name.lower(), r.code)
        for res in results
        for r in res.recipients
    ]
    expected = {m.id: list(m.recipients) for m in messages}
    report = check(expected, outcomes, log)
    print(report.summary())

    assert not report.problems, report.summary()
    ids = [res.message.id for res in results]
    assert ids == list(range(1, count + 1)), report.summary()
    for kind in ("delivered", "transient", "permanent"):
        assert report.counts[kind] > 0, report.summary()


# ---- the rules can fail ---------------------------------------------------


@pytest.fixture
def small_run(c_build, random_server) -> tuple[dict[int, list[str]], list, ServerLog]:
    """A real run of 400 messages: what was sent, the outcomes, the log."""
    count = 400
    server = random_server()
    run = run_driver(
        server.port,
        "--from",
        SENDER,
        *[arg for rcpt in RCPTS for arg in ("--to", rcpt)],
        "--vary-recipients",
        "--count",
        str(count),
        "--concurrency",
        "20",
        "--size",
        "300",
    )
    return (
        driver_expected(count, RCPTS, vary=True),
        from_driver(run.outcomes),
        (stopped_log(server)),
    )


def replace_first(
    outcomes: list[ClientOutcome],
    pick: Callable[[ClientOutcome], bool],
    result: str,
    code: int,
) -> list[ClientOutcome]:
    at = next(i for i, o in enumerate(outcomes) if pick(o))
    changed = list(outcomes)
    changed[at] = ClientOutcome(outcomes[at].id, outcomes[at].rcpt, result, code)
    return changed


def test_the_rules_hold_on_the_real_run_and_catch_each_kind_of_error(small_run):
    expected, outcomes, log = small_run
    assert not check(expected, outcomes, log).problems

    taken = {
        (message_number(a.message_id), r) for a in log.accepted for r in a.recipients
    }
    kept = {
        (message_number(a.message_id), r)
        for a in log.accepted
        if not a.dropped
        for r in a.recipients
    }
    cases = {
        "no outcome": outcomes[1:],
        "second outcome": outcomes + outcomes[:1],
        "never sent": outcomes + [ClientOutcome(999_999, RCPTS[0], "transient", 0)],
        "never accepted by the server": replace_first(
            outcomes, lambda o: (o.id, o.rcpt) not in taken, "delivered", 250
        ),
        "and kept the connection": replace_first(
            outcomes, lambda o: (o.id, o.rcpt) in kept, "transient", 451
        ),
        "permanent without a 5xx": replace_first(
            outcomes, lambda o: o.result == "transient", "permanent", 451
        ),
    }
    for words, changed in cases.items():
        problems = check(expected, changed, log).problems
        assert any(words in p for p in problems), (words, problems[:5], log.seed)


def test_the_rules_catch_a_recipient_taken_twice(small_run):
    expected, outcomes, log = small_run
    first = next(r for r in log.records if r.get("ev") == "accepted")
    log.records.append(dict(first))
    problems = check(expected, outcomes, log).problems
    assert any("twice" in p for p in problems), (problems[:5], log.seed)


# ---- the server itself ------------------------------------------------------


def read_reply(sock: socket.socket, pending: bytearray) -> str:
    """One whole reply (its last line), reading as needed."""
    while True:
        lines = pending.split(b"\r\n")
        for i, line in enumerate(lines[:-1]):
            if len(line) < 4 or line[3:4] != b"-":
                del pending[: sum(len(x) + 2 for x in lines[: i + 1])]
                return line.decode()
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        pending += chunk


def test_random_server_answers_a_pipelined_group_in_order(random_server):
    calm = dict(
        tempfail=0,
        permfail=0,
        drop=0,
        delay=0,
        drop_after_250=0,
        drop_in_body=0,
        idle_421=0,
        old_server=0,
    )
    server = random_server(**calm)
    body = b"Message-ID: <7.1@accounting.test>\r\n\r\n.leading dot\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        pending = bytearray()
        assert read_reply(sock, pending).startswith("220")
        sock.sendall(b"EHLO client.test\r\n")
        assert read_reply(sock, pending).startswith("250 ")
        group = b"MAIL FROM:<s@c.test>\r\nRCPT TO:<x@s.test>\r\n"
        group += b"RCPT TO:<y@s.test>\r\nDATA\r\n"
        sock.sendall(group)
        replies = [read_reply(sock, pending)[:3] for _ in range(4)]
        assert replies[0] == "250" and replies[3] == "354", replies
        assert set(replies[1:3]) <= {"250", "251"}, replies
        sock.sendall(body.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        assert read_reply(sock, pending).startswith("250")
        sock.sendall(b"QUIT\r\n")
        assert read_reply(sock, pending).startswith("221")
    log = stopped_log(server)
    assert [(a.message_id, a.recipients, a.dropped) for a in log.accepted] == [
        ("<7.1@accounting.test>", ["x@s.test", "y@s.test"], None)
    ]
    assert not log.violations
    assert message_id(body) == "<7.1@accounting.test>"


def test_random_server_logs_a_client_that_does_not_wait(random_server):
    server = random_server(old_server=1, delay=0, drop=0, tempfail=0, permfail=0)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        pending = bytearray()
        assert read_reply(sock, pending).startswith("220")
        sock.sendall(b"EHLO client.test\r\n")
        assert read_reply(sock, pending).startswith("502")
        sock.sendall(b"HELO client.test\r\n")
        assert read_reply(sock, pending).startswith("250")
        # No PIPELINING without EHLO: MAIL and RCPT in one write break the rule.
        sock.sendall(b"MAIL FROM:<s@c.test>\r\nRCPT TO:<x@s.test>\r\n")
        assert read_reply(sock, pending).startswith("250")
        assert read_reply(sock, pending)[:3] in ("250", "251")
    log = stopped_log(server)
    assert [v["what"] for v in log.violations] == ["bytes before the reply to mail"]
