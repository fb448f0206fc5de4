"""Tests of the test servers themselves, driven by real clients over loopback:
Python's smtplib, raw sockets, and Postfix's smtp-source."""

from __future__ import annotations

import os
import smtplib
import socket
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from servers import (
    CLOSE,
    CLOSE_AFTER,
    DELAY,
    HANG_AFTER,
    RESET,
    SILENCE,
    SMTP_SOURCE,
    STOP_READING,
    ReceivedMessage,
    Script,
    ScriptedServer,
    ScriptError,
    SmtpSink,
    Stream,
    unstuff,
)

Factory = Callable[..., ScriptedServer]
SinkFactory = Callable[..., SmtpSink]


class RawClient:
    """A bare TCP client: sends exact bytes, reads whole replies."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self, timeout: float = 5.0) -> bytes:
        """One complete reply (every line of a multi-line one)."""
        deadline = time.monotonic() + timeout
        lines: list[bytes] = []
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line, self.buffer = self.buffer[: end + 1], self.buffer[end + 1 :]
                lines.append(line)
                if line[3:4] != b"-":
                    return b"".join(lines)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete reply; got {lines!r}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; got {lines!r} {self.buffer!r}")
            self.buffer += chunk

    def nothing_within(self, seconds: float) -> bool:
        """True if no byte and no EOF arrives within `seconds`."""
        if self.buffer:
            return False
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(1)
        except TimeoutError:
            return True
        self.buffer += chunk
        return False

    def at_eof(self, timeout: float = 5.0) -> bool:
        """True if the server closed the connection (within `timeout`)."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def start_transaction(self, rcpts: int = 1) -> None:
        """Banner, EHLO, MAIL, RCPT..., DATA, one by one, expecting 354."""
        assert self.reply().startswith(b"220")
        self.send(b"EHLO client.test\r\n")
        assert self.reply().startswith(b"250")
        self.send(b"MAIL FROM:<from@client.test>\r\n")
        assert self.reply().startswith(b"250")
        for i in range(rcpts):
            self.send(b"RCPT TO:<rcpt%d@server.test>\r\n" % i)
            assert self.reply().startswith(b"250")
        self.send(b"DATA\r\n")
        assert self.reply().startswith(b"354")


@pytest.fixture
def raw(request: pytest.FixtureRequest) -> Callable[..., RawClient]:
    """Opens raw clients that are closed at teardown."""
    clients: list[RawClient] = []

    def connect(port: int, host: str = "127.0.0.1") -> RawClient:
        client = RawClient(port, host)
        clients.append(client)
        return client

    request.addfinalizer(lambda: [c.close() for c in clients])
    return connect


# --------------------------------------------------------------------------
# The data section, byte for byte
# --------------------------------------------------------------------------


def test_data_section_keeps_bare_lf_and_bare_cr(scripted_server, raw):
    client = raw(scripted_server.port)
    client.start_transaction()
    body = b"Subject: x\r\n\r\nbare\nlf\rbare cr\r\n..stuffed\r\nlast\n\r\n"
    client.send(body + b".\r\n")
    assert client.reply().startswith(b"250")

    (message,) = scripted_server.wait_for_messages(1)
    assert message.raw_data == body
    assert message.data == (
        b"Subject: x\r\n\r\nbare\nlf\rbare cr\r\n.stuffed\r\nlast\n\r\n"
    )
    assert message.mail_from == "from@client.test"
    assert message.accepted == ("rcpt0@server.test",)


def test_data_ends_only_at_crlf_dot_crlf(scripted_server, raw):
    client = raw(scripted_server.port)
    client.start_transaction()
    fakes = [b"a\n.\nb\r\n", b"c\r.\rd\r\n", b"e\r\n.\n", b"f\n.\r\n", b".x\r\n"]
    for piece in fakes:
        client.send(piece)
        assert client.nothing_within(0.1), piece
    assert scripted_server.messages == []

    # The terminator itself, split across three writes.
    client.send(b".")
    assert client.nothing_within(0.1)
    client.send(b"\r")
    assert client.nothing_within(0.1)
    client.send(b"\n")
    assert client.reply().startswith(b"250")
    (message,) = scripted_server.wait_for_messages(1)
    assert message.raw_data == b"".join(fakes)


def test_dot_line_right_after_354_is_an_empty_message(scripted_server, raw):
    client = raw(scripted_server.port)
    client.start_transaction()
    client.send(b".\r\n")
    assert client.reply().startswith(b"250")
    (message,) = scripted_server.wait_for_messages(1)
    assert message.raw_data == b""


def test_unstuff_removes_one_dot_only_at_line_starts():
    assert unstuff(b"..a\r\n.b\r\nc.\r\n\n.d\r.e") == b".a\r\nb\r\nc.\r\n\n.d\r.e"


def test_message_id_is_read_from_the_headers():
    message = ReceivedMessage(
        0, 0, None, (), (), b"Subject: s\r\nMessage-ID:\r\n <x@y>\r\n\r\nbody", 0.0
    )
    assert message.message_id == "<x@y>"


# --------------------------------------------------------------------------
# Pipelining
# --------------------------------------------------------------------------


def test_pipelined_commands_in_one_write_are_answered_in_order(
    scripted_server_factory, raw
):
    refuse_second = Script(rcpt=lambda a, i: "550 5.1.1 no" if i == 1 else "250 ok")
    server = scripted_server_factory(refuse_second)
    client = raw(server.port)
    assert client.reply().startswith(b"220")
    client.send(b"EHLO c\r\n")
    assert b"PIPELINING" in client.reply()

    client.send(
        b"MAIL FROM:<f@c>\r\nRCPT TO:<a@s>\r\nRCPT TO:<b@s>\r\n"
        b"RCPT TO:<c@s>\r\nDATA\r\n"
    )
    replies = [client.reply() for _ in range(5)]
    assert [r[:3] for r in replies] == [b"250", b"250", b"550", b"250", b"354"]
    client.send(b"body\r\n.\r\nQUIT\r\n")
    assert client.reply().startswith(b"250")
    assert client.reply().startswith(b"221")
    assert client.at_eof()

    (session,) = server.wait_for_closed_sessions(1)
    assert session.verbs == ("EHLO", "MAIL", "RCPT", "RCPT", "RCPT", "DATA", "QUIT")
    assert session.pipelined == (False, False, True, True, True, True, True)
    (message,) = server.messages
    assert message.rcpts == ("a@s", "b@s", "c@s")
    assert message.accepted == ("a@s", "c@s")
    assert message.raw_data == b"body\r\n"


def test_commands_split_byte_by_byte_are_reassembled(scripted_server, raw):
    client = raw(scripted_server.port)
    assert client.reply().startswith(b"220")
    for byte in b"EHLO slow.client\r\nNOOP\r\n":
        client.send(bytes([byte]))
    assert client.reply().startswith(b"250-scripted.test")
    assert client.reply().startswith(b"250 2.0.0")
    session = scripted_server.sessions[0]
    assert session.commands == (b"EHLO slow.client\r\n", b"NOOP\r\n")


def test_bare_lf_ends_a_command_and_is_recorded(scripted_server, raw):
    client = raw(scripted_server.port)
    assert client.reply().startswith(b"220")
    client.send(b"NOOP\n")
    assert client.reply().startswith(b"250")
    assert scripted_server.sessions[0].commands == (b"NOOP\n",)


def test_pipelining_not_offered_still_answers_and_flags_it(
    scripted_server_factory, raw
):
    server = scripted_server_factory(Script(pipelining=False))
    client = raw(server.port)
    assert client.reply().startswith(b"220")
    client.send(b"EHLO c\r\n")
    assert b"PIPELINING" not in client.reply()
    client.send(b"NOOP\r\nNOOP\r\n")
    assert client.reply().startswith(b"250")
    assert client.reply().startswith(b"250")
    assert server.sessions[0].pipelined == (False, False, True)


# --------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------


def test_close_at_banner_drops_the_connection(scripted_server_factory, raw):
    server = scripted_server_factory(Script(banner=CLOSE))
    client = raw(server.port)
    assert client.at_eof()
    (session,) = server.wait_for_closed_sessions(1)
    assert session.close_reason == "server"
    assert session.replies == ()


def test_close_at_rcpt_disconnects_smtplib(scripted_server_factory):
    server = scripted_server_factory(Script(rcpt=CLOSE))
    with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as client:
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.sendmail("f@c", ["a@s"], b"x\r\n")
    assert server.messages == []
    assert server.wait_for_closed_sessions(1)[0].verbs[-1] == "RCPT"


def test_silence_never_answers_and_keeps_the_connection_open(
    scripted_server_factory, raw
):
    server = scripted_server_factory(Script(data=SILENCE))
    client = raw(server.port)
    assert client.reply().startswith(b"220")
    client.send(b"EHLO c\r\nMAIL FROM:<f@c>\r\nRCPT TO:<a@s>\r\nDATA\r\n")
    for _ in range(3):
        assert client.reply().startswith(b"250")
    assert client.nothing_within(0.3)
    client.send(b"NOOP\r\n")
    assert client.nothing_within(0.2)
    session = server.sessions[0]
    assert session.close_reason is None
    assert session.verbs[-1] == "NOOP"

    server.stop()
    assert client.at_eof()
    assert session.close_reason == "stop"


def test_hang_after_354_records_the_body_but_never_confirms(
    scripted_server_factory, raw
):
    server = scripted_server_factory(Script(data=HANG_AFTER("354 go ahead")))
    client = raw(server.port)
    client.start_transaction()
    client.send(b"hello\r\n.\r\n")
    (message,) = server.wait_for_messages(1)
    assert message.raw_data == b"hello\r\n"
    assert client.nothing_within(0.3)
    assert message.reply is None


def test_delay_holds_the_reply_and_keeps_later_replies_in_order(
    scripted_server_factory, raw
):
    server = scripted_server_factory(Script(mail=DELAY(0.3, "250 slow ok")))
    client = raw(server.port)
    assert client.reply().startswith(b"220")
    client.send(b"EHLO c\r\n")
    client.reply()
    started = time.monotonic()
    client.send(b"MAIL FROM:<f@c>\r\nRCPT TO:<a@s>\r\nNOOP\r\n")
    assert client.reply() == b"250 slow ok\r\n"
    assert time.monotonic() - started >= 0.29
    assert client.reply().startswith(b"250 2.1.5")
    assert client.reply().startswith(b"250 2.0.0")


def test_close_after_sends_421_then_closes(scripted_server_factory):
    server = scripted_server_factory(Script(mail=CLOSE_AFTER("421 4.3.2 bye")))
    with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as client:
        client.ehlo()
        assert client.docmd("MAIL FROM:<f@c>") == (421, b"4.3.2 bye")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()


def test_reply_split_across_writes_is_one_reply(scripted_server_factory, raw):
    split = [b"250-first line\r\n250", DELAY(0.1, b" second line\r\n")]
    server = scripted_server_factory(Script(noop=split))
    client = raw(server.port)
    client.reply()
    client.send(b"NOOP\r\n")
    assert client.reply() == b"250-first line\r\n250 second line\r\n"
    writes = [e for e in server.sessions[0].transcript if e.direction == "S"]
    assert [e.data for e in writes[-2:]] == [
        b"250-first line\r\n250",
        b" second line\r\n",
    ]


def test_byte_delay_sends_each_reply_one_byte_per_write(scripted_server_factory, raw):
    server = scripted_server_factory(Script(byte_delay=0.001))
    client = raw(server.port)
    assert client.reply() == b"220 scripted.test ESMTP scripted\r\n"
    client.send(b"NOOP\r\n")
    assert client.reply() == b"250 2.0.0 Ok\r\n"
    writes = [e.data for e in server.sessions[0].transcript if e.direction == "S"]
    assert b"".join(writes) == b"220 scripted.test ESMTP scripted\r\n250 2.0.0 Ok\r\n"
    assert {len(w) for w in writes} == {1}
    (session,) = server.sessions
    for _ in range(500):  # the record follows the last byte's write
        if len(session.replies) == 2:
            break
        time.sleep(0.01)
    assert session.replies[-1] == b"250 2.0.0 Ok\r\n"  # one reply, not 14


def test_line_end_applies_to_str_replies_only(scripted_server_factory, raw):
    script = Script(line_end=b"\n", ehlo="250-a\r\n250 b", noop=b"250 raw\r\n")
    server = scripted_server_factory(script)
    client = raw(server.port)
    assert client.reply() == b"220 scripted.test ESMTP scripted\n"
    client.send(b"EHLO c\r\nNOOP\r\n")
    assert client.reply() == b"250-a\n250 b\n"
    assert client.reply() == b"250 raw\r\n"


def test_reset_aborts_with_a_tcp_rst(scripted_server_factory, raw):
    server = scripted_server_factory(Script(mail=RESET))
    client = raw(server.port)
    client.reply()
    client.send(b"MAIL FROM:<f@c>\r\n")
    client.sock.settimeout(5)
    with pytest.raises(ConnectionResetError):
        client.sock.recv(100)
    (session,) = server.wait_for_closed_sessions(1)
    assert session.close_reason == "server"


def test_data_fault_acts_while_the_body_is_arriving(scripted_server_factory, raw):
    fault = (100, CLOSE_AFTER("421 4.3.2 enough"))
    server = scripted_server_factory(Script(data_fault=fault))
    client = raw(server.port)
    client.start_transaction()
    client.send(b"x" * 99)
    assert client.nothing_within(0.2)
    client.send(b"y" * 10)
    assert client.reply() == b"421 4.3.2 enough\r\n"
    assert client.at_eof()
    (session,) = server.wait_for_closed_sessions(1)
    assert session.partial_data == b"x" * 99 + b"y" * 10
    assert server.messages == []


def test_stop_reading_leaves_the_bytes_in_the_kernel(scripted_server_factory, raw):
    server = scripted_server_factory(Script(data_fault=(1, STOP_READING)), rcvbuf=4096)
    client = raw(server.port)
    client.start_transaction()
    client.sock.setblocking(False)
    sent = 0
    for _ in range(10_000):  # bounded: the buffers fill long before
        try:
            sent += client.sock.send(b"z" * 65536)
        except BlockingIOError:
            break
    else:
        pytest.fail("the client could always write: the server kept reading")
    (session,) = server.sessions
    time.sleep(0.2)  # let anything in flight arrive
    taken = sum(len(e.data) for e in session.transcript if e.direction == "C")
    assert session.close_reason is None
    assert 0 < taken < sent


def test_read_pace_reads_at_most_n_bytes_per_turn(scripted_server_factory, raw):
    server = scripted_server_factory(Script(read_pace=(7, 0.002)))
    client = raw(server.port)
    client.start_transaction()
    client.send(b"0123456789" * 10 + b"\r\n.\r\n")
    (message,) = server.wait_for_messages(1)
    assert message.raw_data == b"0123456789" * 10 + b"\r\n"
    reads = [e.data for e in server.sessions[0].transcript if e.direction == "C"]
    assert max(len(r) for r in reads) <= 7


def test_stream_sends_head_fill_and_tail_without_holding_them(
    scripted_server_factory, raw
):
    stream = Stream(1_000_000, fill=b"abc", head=b"220-", tail=b"\r\n220 end\r\n")
    server = scripted_server_factory(Script(banner=stream))
    client = raw(server.port)
    got = bytearray()
    client.sock.settimeout(5)
    while not got.endswith(b"220 end\r\n"):
        chunk = client.sock.recv(1 << 20)
        assert chunk, "closed before the end of the stream"
        got += chunk
    expected_fill = (b"abc" * 333_334)[:1_000_000]
    assert bytes(got) == b"220-" + expected_fill + b"\r\n220 end\r\n"
    (session,) = server.wait_for_stream_end()
    assert session.stream_end == "done"
    assert session.stream_sent == len(got)
    client.send(b"NOOP\r\n")
    assert client.reply() == b"250 2.0.0 Ok\r\n"  # the session goes on


def test_stream_counts_what_the_kernel_took_until_the_client_left(
    scripted_server_factory, raw
):
    server = scripted_server_factory(
        Script(banner=Stream(50 << 20, head=b"220 ")), sndbuf=65536
    )
    client = raw(server.port)
    client.sock.settimeout(5)
    assert client.sock.recv(4096).startswith(b"220 ")
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    client.close()
    (session,) = server.wait_for_stream_end()
    assert session.stream_end == "client"
    sndbuf, _ = session.socket_buffers
    assert sndbuf >= 65536  # the kernel doubles what was asked
    assert 4096 <= session.stream_sent < 50 << 20  # head and first block at once


def test_stream_to_a_client_that_stops_reading_stalls(scripted_server_factory, raw):
    stream = Stream(50 << 20, head=b"220 ", stall=0.3)
    server = scripted_server_factory(Script(banner=stream), sndbuf=65536)
    client = raw(server.port)
    client.sock.settimeout(5)
    client.sock.recv(10)
    (session,) = server.wait_for_stream_end()
    assert session.stream_end == "stalled"
    assert session.close_reason == "server"
    assert session.stream_sent < 50 << 20


def test_idle_421_after_n_messages(scripted_server_factory, raw):
    script = Script(idle_421_after=1, idle_421_delay=0.2)
    server = scripted_server_factory(script)
    client = raw(server.port)
    client.start_transaction()
    client.send(b"x\r\n.\r\n")
    assert client.reply().startswith(b"250")
    assert client.reply(timeout=3).startswith(b"421")
    assert client.at_eof()


def test_unknown_and_scripted_extra_commands(scripted_server_factory, raw):
    script = Script(commands={"STARTTLS": "454 4.7.0 TLS not available"})
    server = scripted_server_factory(script)
    client = raw(server.port)
    client.reply()
    client.send(b"STARTTLS\r\nXYZZY\r\n")
    assert client.reply().startswith(b"454")
    assert client.reply().startswith(b"502")


def test_per_session_scripts(scripted_server_factory):
    second_busy = {1: Script(banner=CLOSE_AFTER("421 4.3.2 busy"))}
    server = scripted_server_factory(per_session=second_busy)
    with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as first:
        assert first.noop()[0] == 250
        with pytest.raises(smtplib.SMTPConnectError):
            smtplib.SMTP("127.0.0.1", server.port, timeout=5)
    with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as third:
        assert third.noop()[0] == 250


def test_end_of_data_callable_sees_the_message(scripted_server_factory):
    def end(message: ReceivedMessage) -> str:
        return "554 5.7.1 no" if b"spam" in message.data else "250 ok"

    server = scripted_server_factory(Script(end_of_data=end))
    with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as client:
        client.sendmail("f@c", ["a@s"], b"ham\r\n")
        with pytest.raises(smtplib.SMTPDataError):
            client.sendmail("f@c", ["a@s"], b"spam\r\n")
    replies = [m.reply for m in server.wait_for_replied_messages(2)]
    assert replies == [b"250 ok\r\n", b"554 5.7.1 no\r\n"]


def test_default_data_refuses_without_accepted_recipients(scripted_server_factory, raw):
    server = scripted_server_factory(Script(rcpt="550 5.1.1 unknown"))
    client = raw(server.port)
    client.reply()
    client.send(b"MAIL FROM:<f@c>\r\nRCPT TO:<a@s>\r\nDATA\r\n")
    codes = [client.reply()[:3] for _ in range(3)]
    assert codes == [b"250", b"550", b"554"]


def test_script_error_fails_stop(scripted_server_factory):
    def broken(address: str) -> str:
        raise ValueError("script bug")

    server = ScriptedServer(Script(mail=broken)).start()
    try:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as client:
            with pytest.raises(smtplib.SMTPServerDisconnected):
                client.docmd("MAIL FROM:<f@c>")
    finally:
        with pytest.raises(ScriptError, match="script bug"):
            server.stop()


# --------------------------------------------------------------------------
# Records, concurrency, addresses
# --------------------------------------------------------------------------


def test_transcript_and_session_times_are_ordered(scripted_server):
    with smtplib.SMTP("127.0.0.1", scripted_server.port, timeout=5) as client:
        client.sendmail("f@c", ["a@s"], b"hi\r\n")
    (session,) = scripted_server.wait_for_closed_sessions(1)
    times = [e.at for e in session.transcript]
    assert times == sorted(times)
    assert session.opened_at <= times[0] <= times[-1] <= session.closed_at
    assert session.transcript[0].direction == "S"
    assert session.received.startswith(b"ehlo ")
    assert session.sent.endswith(b"221 2.0.0 Bye\r\n")
    assert session.close_reason == "server"


def test_many_concurrent_sessions(scripted_server):
    errors: list[BaseException] = []

    def send_five(n: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", scripted_server.port, timeout=10) as c:
                for i in range(5):
                    c.sendmail("f@c", [f"r{n}@s"], f"Subject: {n}-{i}\r\n\r\nx\r\n")
        except BaseException as error:  # noqa: BLE001 - re-raised below
            errors.append(error)

    threads = [threading.Thread(target=send_five, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    messages = scripted_server.wait_for_messages(100)
    assert len(messages) == 100
    assert len(scripted_server.wait_for_closed_sessions(20)) == 20
    subjects = {m.data.split(b"\r\n", 1)[0] for m in messages}
    assert len(subjects) == 100


def test_listens_on_ipv6_loopback_too(scripted_server_factory, raw):
    try:
        server = scripted_server_factory(ipv6=True)
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    assert {host for host, _ in server.addresses} == {"127.0.0.1", "::1"}
    for host in ("127.0.0.1", "::1"):
        assert raw(server.port, host).reply().startswith(b"220")
    assert server.sessions[1].peer[0] == "::1"


def test_smtp_source_talks_to_the_scripted_server(scripted_server):
    if not os.access(SMTP_SOURCE, os.X_OK):
        pytest.skip(f"{SMTP_SOURCE} is not installed")
    subprocess.run(
        [SMTP_SOURCE, "-s", "4", "-m", "20", f"127.0.0.1:{scripted_server.port}"],
        check=True,
        timeout=60,
    )
    assert len(scripted_server.wait_for_messages(20)) == 20


# --------------------------------------------------------------------------
# Postfix smtp-sink
# --------------------------------------------------------------------------


def test_smtp_sink_counts_fifty_messages_from_smtplib(smtp_sink):
    with smtplib.SMTP("127.0.0.1", smtp_sink.port, timeout=10) as client:
        for i in range(50):
            client.sendmail("f@c", ["a@s"], f"Subject: {i}\r\n\r\nx\r\n")
        # smtp-sink counts a message before it answers its final ".".
        assert smtp_sink.message_count() == 50
    assert smtp_sink.wait_for_messages(50) == 50
    assert smtp_sink.wait_for_sessions(1) == 1


def test_smtp_sink_dump_gives_message_ids(smtp_sink_factory):
    sink = smtp_sink_factory(dump=True)
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as client:
        for i in range(3):
            client.sendmail("f@c", ["a@s"], f"Message-ID: <{i}@test>\r\n\r\nx\r\n")
        client.mail("f@c")
        client.rset()
    assert sink.message_count() == 3
    assert sorted(sink.message_ids()) == ["<0@test>", "<1@test>", "<2@test>"]
    sink.stop()
    assert sink.message_count() == 3
    assert len(sink.dumped_messages()) == 3


def test_smtp_sink_options(smtp_sink_factory):
    sink = smtp_sink_factory(pipelining=False, hostname="sink.test")
    assert "-p" in sink.argv
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as client:
        code, text = client.ehlo()
        assert code == 250
        assert text.startswith(b"sink.test")
        assert not client.has_extn("pipelining")


def test_smtp_sink_max_connections_queues_the_excess(smtp_sink_factory, raw):
    sink = smtp_sink_factory(max_connections=1)
    first = raw(sink.port)
    assert first.reply().startswith(b"220")
    second = raw(sink.port)
    assert second.nothing_within(0.5)
    first.send(b"QUIT\r\n")
    assert first.reply().startswith(b"221")
    assert second.reply().startswith(b"220")


def test_smtp_sink_counts_smtp_source_load(smtp_sink):
    if not os.access(SMTP_SOURCE, os.X_OK):
        pytest.skip(f"{SMTP_SOURCE} is not installed")
    subprocess.run(
        [SMTP_SOURCE, "-s", "10", "-m", "500", f"127.0.0.1:{smtp_sink.port}"],
        check=True,
        timeout=60,
    )
    assert smtp_sink.wait_for_messages(500) == 500


def test_smtp_sink_stop_terminates_and_reaps_it(smtp_sink_factory):
    sink = smtp_sink_factory()
    assert sink.running()
    sink.stop()
    assert not sink.running()
    assert sink._process is not None and sink._process.returncode is not None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", sink.port), timeout=1).close()
