"""``workers=N`` and ``smtpstate --workers N``: forked scheduler processes
sharing one delivery, against real loopback servers.

Which process sent what is read off the wire: a session id's upper 32
bits are the pid of the process whose scheduler opened it, and the XPID
state below announces its process on every connection it runs in.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading

import pytest

import smtpstate
from driver import parse_line
from servers import SILENCE, Script
from smtpstate import BuiltinState, Message, Outcome

SENDER = "sender@client.test"
RCPT = "rcpt@server.test"

# A state that names its process to the server on every connection, as
# Python source: the command loads it with --state, the API tests exec it.
XPID_STATE = """\
import os

import smtpstate


def setup(session):
    session.send(f"XPID {os.getpid()}")
    return smtpstate.WANT_READ


def callback(session, events):
    reply = session.read_reply(250)
    if reply is None:
        return
    if reply.code != 250:
        session.fail(smtpstate.Outcome.TRANSIENT)
        return
    session.next()


STATE_ID = smtpstate.register_smtp_client_state(
    smtpstate.SmtpState("xpid", callback, setup=setup),
    smtpstate.BuiltinState.SESSION_READY,
)
"""


def body(i: int) -> bytes:
    return (
        f"From: {SENDER}\r\nTo: {RCPT}\r\nMessage-ID: <m{i}@client.test>\r\n"
        f"Subject: message {i}\r\n\r\nBody of message {i}.\r\n"
    ).encode()


def messages(n: int) -> list[Message]:
    return [Message(SENDER, [RCPT], body(i), id=i) for i in range(n)]


def pid_of(session_id: int) -> int:
    return session_id >> 32


def xpids(server) -> dict[int, int]:
    """Session index -> the pid its XPID command announced."""
    out = {}
    for session in server.sessions:
        for line in session.commands:
            if line.startswith(b"XPID "):
                out[session.index] = int(line.split()[1])
    return out


def assert_reaped(pids) -> None:
    """Each pid was this process's child and has been reaped by it."""
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.fixture
def xpid_state():
    """Registers the XPID state in this process for one test."""
    namespace: dict[str, object] = {}
    exec(compile(XPID_STATE, "xpid_state", "exec"), namespace)
    yield namespace["STATE_ID"]
    smtpstate.smtp_unregister_client_state(namespace["STATE_ID"])


def xpid_script(**fields) -> Script:
    return Script(commands={"XPID": "250 2.0.0 noted"}, **fields)


# ---- the API ---------------------------------------------------------------


def test_two_workers_deliver_every_message_exactly_once(smtp_sink_factory):
    sink = smtp_sink_factory(dump=True)
    batch = messages(2000)
    results = smtpstate.deliver(batch, "127.0.0.1", sink.port, workers=2)
    assert [r.message.id for r in results] == list(range(2000))
    assert all(r.delivered and r.recipients[0].code == 250 for r in results)
    ids = sink.message_ids()
    assert len(ids) == 2000
    assert set(ids) == {f"<m{i}@client.test>" for i in range(2000)}
    per_pid: dict[int, int] = {}
    for r in results:
        pid = pid_of(r.recipients[0].session_id)
        per_pid[pid] = per_pid.get(pid, 0) + 1
    assert len(per_pid) == 2 and os.getpid() not in per_pid
    assert min(per_pid.values()) > 0
    assert_reaped(per_pid)


def test_one_worker_is_this_process(scripted_server_factory):
    server = scripted_server_factory(Script())
    results = smtpstate.deliver(messages(5), "127.0.0.1", server.port)
    assert {pid_of(r.recipients[0].session_id) for r in results} == {os.getpid()}


def test_concurrency_is_shared_so_no_more_workers_than_connections(
    scripted_server_factory,
):
    server = scripted_server_factory(Script())
    results = smtpstate.deliver(
        messages(30), "127.0.0.1", server.port, workers=3, concurrency=2
    )
    assert all(r.delivered for r in results)
    assert len({pid_of(r.recipients[0].session_id) for r in results}) == 2
    few = smtpstate.deliver(messages(1), "127.0.0.1", server.port, workers=3)
    assert few[0].delivered and pid_of(few[0].recipients[0].session_id) != os.getpid()


def test_a_python_state_runs_in_every_worker(scripted_server_factory, xpid_state):
    server = scripted_server_factory(xpid_script())
    results = smtpstate.deliver(
        messages(60), "127.0.0.1", server.port, workers=2, concurrency=2
    )
    assert all(r.delivered for r in results)
    senders = {pid_of(r.recipients[0].session_id) for r in results}
    assert len(senders) == 2 and os.getpid() not in senders
    sessions = server.wait_for_closed_sessions(len(server.sessions))
    announced = xpids(server)
    # Every connection ran the state, in the process that opened it.
    assert sorted(announced) == [s.index for s in sessions]
    assert set(announced.values()) == senders
    assert len(server.messages) == 60


def test_events_of_every_worker_are_written_by_the_caller(scripted_server_factory):
    server = scripted_server_factory(Script())
    out = io.StringIO()
    results = smtpstate.deliver(
        messages(20), "127.0.0.1", server.port, workers=2, json_events=out
    )
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    outcomes = [e for e in events if e["event"] == "outcome"]
    assert len(outcomes) == 20
    assert {int(e["session"], 16) >> 32 for e in outcomes} == {
        pid_of(r.recipients[0].session_id) for r in results
    }
    assert len({int(e["session"], 16) >> 32 for e in events}) == 2


def test_async_with_workers_yields_every_result(scripted_server_factory):
    server = scripted_server_factory(Script())

    async def collect():
        return [
            r
            async for r in smtpstate.deliver_async(
                messages(30), "127.0.0.1", server.port, workers=2
            )
        ]

    results = asyncio.run(collect())
    assert sorted(r.message.id for r in results) == list(range(30))
    assert all(r.delivered for r in results)
    assert len({pid_of(r.recipients[0].session_id) for r in results}) == 2


def test_a_worker_killed_mid_run_leaves_its_messages_transient(
    scripted_server_factory, xpid_state
):
    victim: list[int] = []

    def end_of_data(message):
        # The 40th message makes the server kill the worker that sent it,
        # before answering: that worker has messages it never reports.
        if len(server.messages) == 40 and not victim:
            victim.append(xpids(server)[message.session])
            os.kill(victim[0], signal.SIGKILL)
        return "250 2.0.0 Ok"

    server = scripted_server_factory(xpid_script(end_of_data=end_of_data))
    results = smtpstate.deliver(
        messages(300), "127.0.0.1", server.port, workers=2, concurrency=2
    )
    assert [r.message.id for r in results] == list(range(300))
    (pid,) = victim
    lost = [r for r in results if r.recipients[0].error == "SMTP_EWORKER"]
    assert lost, "the killed worker had messages in hand"
    for result in lost:
        (rcpt,) = result.recipients
        assert rcpt.outcome is Outcome.TRANSIENT and not result.delivered
        assert f"worker process {pid} was killed by signal 9 (SIGKILL)" in rcpt.text
        assert rcpt.stage == smtpstate.Stage.UNKNOWN
    # The survivor took the rest: all that was not lost was delivered, some
    # of it by the victim before it died.
    delivered = [r for r in results if r.delivered]
    assert len(delivered) + len(lost) == 300
    by = {pid_of(r.recipients[0].session_id) for r in delivered}
    assert pid in by and len(by) == 2
    # Nothing is called delivered that the server did not get, and the
    # server got nothing twice.
    received = [m.message_id for m in server.messages]
    assert len(received) == len(set(received))
    assert {f"<m{r.message.id}@client.test>" for r in delivered} <= set(received)
    assert_reaped(by)


def test_when_every_worker_dies_nothing_is_left_unreported(scripted_server_factory):
    def suicide(session):
        os.kill(os.getpid(), signal.SIGKILL)

    state_id = smtpstate.register_smtp_client_state(
        smtpstate.SmtpState("die", lambda s, e: None, setup=suicide),
        BuiltinState.SESSION_READY,
    )
    try:
        server = scripted_server_factory(Script())
        results = smtpstate.deliver(
            messages(100), "127.0.0.1", server.port, workers=2, concurrency=2
        )
    finally:
        smtpstate.smtp_unregister_client_state(state_id)
    assert [r.message.id for r in results] == list(range(100))
    texts = [r.recipients[0].text for r in results]
    assert all(r.recipients[0].outcome is Outcome.TRANSIENT for r in results)
    assert all(r.recipients[0].error == "SMTP_EWORKER" for r in results)
    taken = [t for t in texts if "before reporting this message" in t]
    unsent = [t for t in texts if t.startswith("not sent: no worker process left")]
    # Each worker took one window (4 x its one connection + 16) and died.
    assert len(taken) == 40 and len(unsent) == 60
    assert all("killed by signal 9 (SIGKILL)" in t for t in texts)
    assert server.messages == []


def test_interrupt_stops_and_reaps_every_worker(scripted_server_factory, xpid_state):
    seen: set[int] = set()
    interrupted = threading.Event()

    def xpid(line: bytes):
        # Hold every session; once both workers are in, interrupt the caller
        # (once: later connections announce themselves too).
        seen.add(int(line.split()[1]))
        if len(seen) == 2 and not interrupted.is_set():
            interrupted.set()
            os.kill(os.getpid(), signal.SIGINT)
        return SILENCE

    server = scripted_server_factory(Script(commands={"XPID": xpid}))
    with pytest.raises(KeyboardInterrupt):
        smtpstate.deliver(messages(10), "127.0.0.1", server.port, workers=2)
    assert len(seen) == 2 and os.getpid() not in seen
    assert_reaped(seen)
    assert server.messages == []


@pytest.mark.parametrize(
    ("workers", "error"),
    [(0, smtpstate.InvalidArgumentError), (65, smtpstate.InvalidArgumentError),
     ("2", TypeError), (2.0, TypeError)],
)  # fmt: skip
def test_bad_worker_counts_are_refused_before_anything_is_sent(
    workers, error, scripted_server_factory
):
    server = scripted_server_factory(Script())
    with pytest.raises(error, match="workers"):
        smtpstate.deliver(messages(2), "127.0.0.1", server.port, workers=workers)
    assert server.sessions == []


def test_bad_settings_are_refused_before_any_fork(scripted_server_factory):
    server = scripted_server_factory(Script())
    with pytest.raises(smtpstate.InvalidArgumentError, match="concurrency"):
        smtpstate.deliver(
            messages(2), "127.0.0.1", server.port, workers=2, concurrency=0
        )
    assert server.sessions == []


def test_workers_are_refused_off_the_owner_thread(scripted_server_factory):
    server = scripted_server_factory(Script())
    raised: list[BaseException] = []

    def call() -> None:
        try:
            smtpstate.deliver(messages(2), "127.0.0.1", server.port, workers=2)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(30)
    (exc,) = raised
    assert isinstance(exc, smtpstate.WrongThreadError)
    assert "rule: owner thread" in str(exc)
    assert server.sessions == []


def test_workers_are_refused_while_a_scheduler_is_open(scripted_server_factory):
    server = scripted_server_factory(Script())

    async def main():
        running = smtpstate.deliver_async(messages(3), "127.0.0.1", server.port)
        first = await running.__anext__()
        with pytest.raises(smtpstate.SmtpStateError, match="fork before any"):
            smtpstate.deliver(messages(2), "127.0.0.1", server.port, workers=2)
        rest = [r async for r in running]
        return [first, *rest]

    assert len(asyncio.run(main())) == 3
    assert len(server.messages) == 3


# ---- the command -----------------------------------------------------------


def run_cli(*args: str, timeout: float = 300) -> tuple[int, subprocess.Popen, str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "smtpstate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, proc, stdout, stderr


def outcome_lines(stdout: str) -> list[dict[str, str]]:
    return [parse_line(line) for line in stdout.splitlines() if "rcpt=" in line]


def write_messages(folder: pathlib.Path, n: int) -> list[str]:
    folder.mkdir()
    paths = []
    for i in range(n):
        path = folder / f"{i:05d}.eml"
        path.write_bytes(body(i))
        paths.append(str(path))
    return paths


def test_cli_two_workers_2000_files_each_received_once(tmp_path, smtp_sink_factory):
    sink = smtp_sink_factory(dump=True)
    files = write_messages(tmp_path / "m", 2000)
    status, proc, stdout, stderr = run_cli(
        "--server", f"127.0.0.1:{sink.port}", "--workers", "2", "-t", *files
    )
    assert status == 0, stderr
    lines = outcome_lines(stdout)
    assert sorted(x["file"] for x in lines) == files
    assert {x["result"] for x in lines} == {"delivered"}
    pids = {pid_of(int(x["session"], 16)) for x in lines}
    assert len(pids) == 2 and proc.pid not in pids
    ids = sink.message_ids()
    assert len(ids) == 2000
    assert set(ids) == {f"<m{i}@client.test>" for i in range(2000)}
    assert "summary messages=2000 recipients=2000 delivered=2000 exit=0" in stderr


def test_cli_embedded_sink_with_workers(tmp_path):
    files = write_messages(tmp_path / "m", 200)
    sink_dir = tmp_path / "sink"
    status, _, stdout, stderr = run_cli(
        "--workers", "2", "--sink-dir", str(sink_dir), "-t", *files
    )
    assert status == 0, stderr
    lines = outcome_lines(stdout)
    assert len(lines) == 200 and {x["result"] for x in lines} == {"delivered"}
    assert len({pid_of(int(x["session"], 16)) for x in lines}) == 2
    stored = [p.read_bytes() for p in sink_dir.glob("*.eml")]
    assert len(stored) == 200
    assert set(stored) == {body(i) for i in range(200)}


def test_cli_state_runs_in_both_workers(tmp_path, scripted_server_factory):
    server = scripted_server_factory(xpid_script())
    module = tmp_path / "xpid_state.py"
    module.write_text(XPID_STATE)
    files = write_messages(tmp_path / "m", 40)
    status, proc, stdout, stderr = run_cli(
        "--server", f"127.0.0.1:{server.port}", "--state", str(module),
        "--workers", "2", "--concurrency", "2",
        "--from", SENDER, "--to", RCPT, *files,
    )  # fmt: skip
    assert status == 0, stderr
    lines = outcome_lines(stdout)
    assert len(lines) == 40 and {x["result"] for x in lines} == {"delivered"}
    senders = {pid_of(int(x["session"], 16)) for x in lines}
    assert len(senders) == 2 and proc.pid not in senders
    server.wait_for_closed_sessions(len(server.sessions))
    announced = xpids(server)
    assert sorted(announced) == [s.index for s in server.sessions]
    assert set(announced.values()) == senders


def test_cli_killed_worker_exits_75(tmp_path, scripted_server_factory):
    victim: list[int] = []

    def end_of_data(message):
        if len(server.messages) == 30 and not victim:
            victim.append(xpids(server)[message.session])
            os.kill(victim[0], signal.SIGKILL)
        return "250 2.0.0 Ok"

    server = scripted_server_factory(xpid_script(end_of_data=end_of_data))
    module = tmp_path / "xpid_state.py"
    module.write_text(XPID_STATE)
    files = write_messages(tmp_path / "m", 200)
    status, _, stdout, stderr = run_cli(
        "--server", f"127.0.0.1:{server.port}", "--state", str(module),
        "--workers", "2", "--concurrency", "2", "-t", *files,
    )  # fmt: skip
    assert status == 75, stderr
    lines = outcome_lines(stdout)
    assert sorted(x["file"] for x in lines) == files
    lost = [x for x in lines if x["error"] == "SMTP_EWORKER"]
    assert lost and {x["result"] for x in lost} == {"transient"}
    assert all(f"worker process {victim[0]} was killed" in x["text"] for x in lost)
    delivered = [x for x in lines if x["result"] == "delivered"]
    assert len(delivered) + len(lost) == 200
    received = [m.message_id for m in server.messages]
    assert len(received) == len(set(received))
    expected = {
        f"<m{int(pathlib.Path(x['file']).stem)}@client.test>" for x in delivered
    }
    assert expected <= set(received)
    assert "exit=75" in stderr


def test_cli_interrupt_stops_the_workers(tmp_path, scripted_server_factory):
    seen: set[int] = set()
    both = threading.Event()

    def xpid(line: bytes):
        seen.add(int(line.split()[1]))
        if len(seen) == 2:
            both.set()
        return SILENCE

    server = scripted_server_factory(Script(commands={"XPID": xpid}))
    module = tmp_path / "xpid_state.py"
    module.write_text(XPID_STATE)
    files = write_messages(tmp_path / "m", 10)
    proc = subprocess.Popen(
        [sys.executable, "-m", "smtpstate", "--server", f"127.0.0.1:{server.port}",
         "--state", str(module), "--workers", "2", "-t", *files],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert both.wait(60), "both workers reached the server"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    # The command reaped its workers before it exited.
    for pid in seen:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize("value", ["0", "-1", "65", "two", "", "1.5"])
def test_cli_bad_workers_exit_64_and_send_nothing(
    value, tmp_path, scripted_server_factory
):
    server = scripted_server_factory(Script())
    (path,) = write_messages(tmp_path / "m", 1)
    status, _, stdout, stderr = run_cli(
        "--server", f"127.0.0.1:{server.port}", "--workers", value, "-t", path
    )
    assert status == 64, stderr
    assert "--workers" in stderr and stdout == ""
    assert server.sessions == []
