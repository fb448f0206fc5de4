"""The next transaction's group behind the end of data (RFC 2920 section 3.1:
the transfer of message content may be the first "command" of a group).

With PIPELINING, when the body of a message has gone and another message
waits for the connection, its MAIL FROM, RCPTs and DATA go out before the
reply to the end of data is read: one round trip per message on a reused
connection instead of two.  A fault of the first transaction (an extra
reply, a close or a 421 after it) gives the second back to the queue as
never tried, since its data never went.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import threading

import pytest

import smtpstate
from servers import CLOSE_AFTER, DELAY, OneSessionServer, Script
from smtpstate import BuiltinState, Message, SmtpState, _raw, command_state

SENDER = "sender@client.test"


def body(i: int) -> bytes:
    return (
        f"From: a@client.test\r\nMessage-ID: <{i}@chain.test>\r\n"
        f"Subject: chain {i}\r\n\r\nHello {i}.\r\n"
    ).encode()


def batch(n: int, rcpts: tuple[str, ...] = ("a@server.test",)) -> list[Message]:
    return [Message(SENDER, rcpts, body(i), id=i) for i in range(n)]


def withholding(log: list, n: int):
    """A session that answers the end of each message's data only once it
    has read the next message's DATA (the last one's at once): a client that
    waits for that reply before its next MAIL FROM stalls until its
    deadline."""

    def session(conn, until) -> None:
        log.append(until(b"DATA\r\n"))
        conn.sendall(b"250 sender ok\r\n250 rcpt ok\r\n354 go on\r\n")
        for i in range(n):
            log.append(until(b"\r\n.\r\n"))
            if i + 1 < n:
                # The next group must come before this reply is sent.
                log.append(until(b"DATA\r\n"))
                conn.sendall(
                    b"250 2.0.0 kept\r\n250 sender ok\r\n250 rcpt ok\r\n354 go on\r\n"
                )
            else:
                conn.sendall(b"250 2.0.0 kept\r\n")
        log.append(until(b"\r\n"))
        conn.sendall(b"221 bye\r\n")

    return session


def deliver_withheld(n: int) -> tuple[list, list[bytes]]:
    """Sends n messages on one connection to the withholding server, with a
    2 s confirmation deadline that waiting for each reply would meet;
    returns the results and what the server read."""
    log: list[bytes] = []
    server = OneSessionServer(withholding(log, n)).start()
    results = smtpstate.deliver(
        batch(n), "127.0.0.1", server.port, concurrency=1,
        timeouts={"confirm": 2},
    )  # fmt: skip
    server.join()
    return results, log


def test_next_group_goes_out_before_the_reply_to_the_end_of_data():
    results, log = deliver_withheld(3)
    assert [r.delivered for r in results] == [True] * 3, results
    groups = [entry for entry in log if entry.endswith(b"DATA\r\n")]
    assert (
        groups
        == [f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<a@server.test>\r\nDATA\r\n".encode()] * 3
    )
    assert log[-1] == b"QUIT\r\n"


def test_commands_after_the_body_are_pipelined_on_one_session(
    scripted_server_factory,
):
    server = scripted_server_factory(Script())
    results = smtpstate.deliver(batch(4), "127.0.0.1", server.port, concurrency=1)
    assert all(r.delivered for r in results)
    (session,) = server.wait_for_closed_sessions(1)
    mails = [
        pipelined
        for verb, pipelined in zip(session.verbs, session.pipelined, strict=True)
        if verb == "MAIL"
    ]
    # Each MAIL after the first came before the reply to the data before it.
    assert mails == [False, True, True, True]
    assert [m.data for m in session.messages] == [body(i) for i in range(4)]


FAULTS = {
    "extra-reply": b"250 2.0.0 ok\r\n250 extra\r\n",
    "close-after-250": CLOSE_AFTER(b"250 2.0.0 ok\r\n"),
    "421-to-the-data": CLOSE_AFTER(b"421 4.3.2 shutting down\r\n"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_after_a_body_gives_the_chained_message_back(
    fault, scripted_server_factory
):
    # The first session's first end of data gets the fault; its chained
    # second message never sent data there, so it goes to a new session
    # and is delivered once.
    server = scripted_server_factory(
        Script(), per_session={0: Script(end_of_data=FAULTS[fault])}
    )
    results = smtpstate.deliver(batch(3), "127.0.0.1", server.port, concurrency=1)
    first = results[0].recipients[0]
    if fault == "421-to-the-data":
        assert (first.outcome, first.code) == (smtpstate.Outcome.TRANSIENT, 421)
    else:
        assert first.delivered
    assert [r.delivered for r in results[1:]] == [True, True], results
    received = [m.data for m in server.wait_for_messages(3)]
    assert sorted(received) == sorted(body(i) for i in range(3))
    sessions = server.sessions
    assert len(sessions) >= 2
    # The second message's data never reached the first session (its group
    # did when the server kept reading, as it does after an extra reply).
    assert len(sessions[0].messages) == 1
    if fault == "extra-reply":
        assert sessions[0].verbs.count("MAIL") == 2


def test_split_recipients_are_not_chained_past_their_own_transactions(
    scripted_server_factory,
):
    server = scripted_server_factory(Script())
    rcpts = ("a@server.test", "b@server.test", "c@server.test")
    results = smtpstate.deliver(
        batch(2, rcpts), "127.0.0.1", server.port, concurrency=1,
        max_recipients_per_transaction=1,
    )  # fmt: skip
    assert all(r.delivered for r in results)
    (session,) = server.wait_for_closed_sessions(1)
    got = [(m.rcpts, m.data) for m in session.messages]
    assert got == [((r,), body(i)) for i in range(2) for r in rcpts]


def test_a_state_after_the_anchor_runs_before_each_next_group(
    scripted_server_factory, registered
):
    # A per-message state must run between the reply to the end of data
    # and the next MAIL FROM: nothing is chained past it.
    server = scripted_server_factory(Script())
    registered(command_state("noop-each", "NOOP"), BuiltinState.TRANSACTION)
    results = smtpstate.deliver(batch(3), "127.0.0.1", server.port, concurrency=1)
    assert all(r.delivered for r in results)
    (session,) = server.wait_for_closed_sessions(1)
    verbs = [v for v in session.verbs if v in ("NOOP", "MAIL", "DATA")]
    assert verbs == ["NOOP", "MAIL", "DATA"] * 3
    mails = [
        p for v, p in zip(session.verbs, session.pipelined, strict=True) if v == "MAIL"
    ]
    assert mails == [False] * 3


# Offset of tcpi_data_segs_in in Linux's struct tcp_info (since 4.6; the
# struct only grows at its end): segments that carried data to this socket.
TCPI_DATA_SEGS_IN = 152


def data_segments_in(conn) -> int:
    info = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return struct.unpack_from("I", info, TCPI_DATA_SEGS_IN)[0]


def test_end_of_data_and_next_group_go_out_in_one_write():
    # The server sees each message's end of data and the next MAIL group in
    # one segment: one write per message on a reused connection, so the
    # server reads and answers both at once.  (Bodies this small are well
    # under the loopback MSS, and TCP only merges writes, never splits one.)
    n = 20
    log: list[bytes] = []
    segments: list[int] = []
    session = withholding(log, n)

    def counting(conn, until) -> None:
        session(conn, until)
        segments.append(data_segments_in(conn))

    server = OneSessionServer(counting).start()
    results = smtpstate.deliver(batch(n), "127.0.0.1", server.port, concurrency=1)
    server.join()
    assert [r.delivered for r in results] == [True] * n, results
    # EHLO, the first group, one per message, QUIT.
    assert segments and segments[0] <= n + 3, segments


def observer(name: str, seen: list[int], act=None) -> SmtpState:
    """An observer after the anchor that counts its runs, then does `act`
    (default: moves on)."""

    def setup(session: smtpstate.Session):
        seen.append(session.session_id)
        if act is None:
            session.next()
            return None
        return act(session)

    return SmtpState(name, lambda session, events: None, setup=setup, observer=True)


def test_an_observer_after_the_anchor_keeps_the_chain(registered):
    # The withholding server answers each end of data only after the next
    # DATA: with a state that might send between the anchor and MAIL FROM
    # the client would wait for that reply and meet its 2 s deadline.
    seen: list[int] = []
    registered(observer("count-each", seen), BuiltinState.TRANSACTION)
    results, log = deliver_withheld(3)
    assert [r.delivered for r in results] == [True] * 3, results
    assert len(seen) == 3 and len(set(seen)) == 1  # once a message, one session
    groups = [entry for entry in log if entry.endswith(b"DATA\r\n")]
    assert len(groups) == 3


def one_outcome(results) -> smtpstate.RecipientResult:
    (result,) = results
    (rcpt,) = result.recipients
    return rcpt


def read_then_next(session: smtpstate.Session) -> None:
    # Chained, the reply there to read is the next group's MAIL FROM's.
    session.read_reply(250)
    session.next()


OVERSTEPS = pytest.mark.parametrize(
    ("act", "rule"),
    [
        (lambda session: session.send("NOOP"), "is an observer and may not send"),
        (read_then_next, "is an observer and may not read a reply"),
        (lambda session: None, "did not move on"),
        (lambda session: session.next(BuiltinState.QUIT), "jumped to quit"),
    ],
    ids=["sends", "reads", "waits", "jumps"],
)


@OVERSTEPS
def test_an_observer_that_does_more_fails_its_messages(
    act, rule, registered, scripted_server_factory
):
    seen: list[int] = []
    registered(observer("overstep", seen, act), BuiltinState.TRANSACTION)
    server = scripted_server_factory(Script())
    # A short deadline for the custom state: a waiting observer that was
    # let wait would otherwise hold the test for minutes.
    results = smtpstate.deliver(
        batch(1), "127.0.0.1", server.port, timeouts={"custom": 2}
    )
    rcpt = one_outcome(results)
    assert rcpt.outcome is smtpstate.Outcome.TRANSIENT, rcpt
    assert rule in rcpt.text, rcpt
    assert server.wait_for_closed_sessions(1)[0].verbs.count("NOOP") == 0
    assert seen


@OVERSTEPS
def test_an_observer_that_does_more_fails_a_chained_message_too(
    act, rule, registered, scripted_server_factory
):
    # The observer oversteps on its second run, for the message whose
    # group went out behind the first one's body.  The rule holds there
    # as before any group: that message fails, not handed to a new
    # session as though the server had broken the chain.
    seen: list[int] = []

    def second(session):
        if len(seen) == 2:
            return act(session)
        session.next()
        return None

    registered(observer("overstep", seen, second), BuiltinState.TRANSACTION)
    server = scripted_server_factory(Script())
    results = smtpstate.deliver(
        batch(3), "127.0.0.1", server.port, concurrency=1, timeouts={"custom": 2}
    )
    (rcpt,) = results[1].recipients
    assert rcpt.outcome is smtpstate.Outcome.TRANSIENT, rcpt
    assert rcpt.error == "SMTP_ESTATE" and rule in rcpt.text, rcpt
    assert [r.delivered for r in results] == [True, False, True]
    sessions = server.wait_for_closed_sessions(2)
    assert sessions[0].verbs.count("MAIL") == 2  # the second group was chained
    received = [m.data for m in server.messages]
    assert sorted(received) == [body(0), body(2)]
    assert all(s.verbs.count("NOOP") == 0 for s in sessions)


def test_an_observer_needs_a_setup_and_a_bool():
    before = smtpstate.smtp_get_state_machine()
    no_setup = SmtpState("watch", lambda session, events: None, observer=True)
    with pytest.raises(
        smtpstate.SmtpStateError, match="observer moves on in its setup"
    ):
        smtpstate.register_smtp_client_state(no_setup, BuiltinState.TRANSACTION)
    assert not no_setup.registered
    assert smtpstate.smtp_get_state_machine() == before
    not_bool = SmtpState("watch", lambda s, e: None, setup=lambda s: None, observer=1)
    with pytest.raises(TypeError, match="rule: observer"):
        smtpstate.register_smtp_client_state(not_bool, BuiltinState.TRANSACTION)


def test_only_a_registered_custom_state_is_declared_an_observer():
    from smtpstate import _raw

    assert _raw.smtp_state_set_observer(int(BuiltinState.MAIL_FROM)) == (
        _raw.lib.SMTP_EBUILTIN
    )
    assert _raw.smtp_state_set_observer(999) == _raw.lib.SMTP_ENOSTATE


def test_a_state_registered_while_a_group_is_chained_sends_nothing_behind_it(
    scripted_server_factory, registered
):
    # The server holds its reply to the second end of data until the test
    # has registered a NOOP state after the anchor, while the third
    # message's group, chained behind that body, is on its way; it then
    # answers that group's MAIL FROM half a second late, so the client has
    # nothing unread when the NOOP state would send.  Taking up that
    # transaction would put the NOOP into the data the server expects
    # next; instead the connection ends and the third message goes to a
    # new one, untried, where the NOOP runs before its MAIL FROM.
    registered_now = threading.Event()
    mails: list[str] = []

    def end_of_data(message):
        if message.session == 0 and message.index == 1:
            registered_now.wait(10)
        return "250 2.0.0 ok"

    def mail(address):
        mails.append(address)
        return DELAY(0.5, "250 2.1.0 ok") if len(mails) == 3 else "250 2.1.0 ok"

    server = scripted_server_factory(Script(mail=mail, end_of_data=end_of_data))
    events = io.StringIO()
    results = smtpstate.deliver_iter(
        batch(4), "127.0.0.1", server.port, concurrency=1, json_events=events
    )
    first = next(results)
    registered(command_state("noop-late", "NOOP"), BuiltinState.TRANSACTION)
    registered_now.set()
    rest = list(results)
    assert [r.delivered for r in [first, *rest]] == [True] * 4, rest
    received = server.wait_for_messages(4)
    assert sorted(m.data for m in received) == [body(i) for i in range(4)]
    sessions = server.wait_for_closed_sessions(2)
    assert "NOOP" not in sessions[0].verbs
    assert sessions[1].verbs.count("NOOP") == len(sessions[1].messages) == 2
    # Ended for that reason, before anything was sent behind the group (a
    # NOOP there would shift every reply after it, and only a mismatch
    # further on would end the session).
    closes = [json.loads(line) for line in events.getvalue().splitlines()]
    closes = [e for e in closes if e["event"] == "close"]
    assert closes[0]["error"] == "SMTP_ESTATE", closes[0]
    assert "nothing sends behind a chained group" in closes[0]["reason"]


# A group that fills the 64 KiB output buffer but for fewer bytes than
# DATA's: MAIL FROM (32 bytes), then RCPT lines of 100 bytes each, of
# which 655 fit with 4 bytes to spare.
WBUF_MAX = _raw.lib.SMTP_WRITE_BUFFER_MAX
RCPT_LINE = 100
MANY = tuple(
    f"r{i:04d}".ljust(RCPT_LINE - len("RCPT TO:<@s.test>\r\n"), "x") + "@s.test"
    for i in range(700)
)


@pytest.mark.parametrize("chained", [False, True], ids=["first", "chained"])
def test_a_group_too_large_for_the_buffer_leaves_room_for_its_data(
    chained, scripted_server_factory
):
    # The recipients that do not fit wait for the next transaction; DATA
    # must still fit behind those that do, else the connection failed and
    # took the message (and, chained, the one whose body went before it).
    mail = f"MAIL FROM:<{SENDER}>\r\n"
    assert (WBUF_MAX - len(mail)) % RCPT_LINE < len("DATA\r\n")
    server = scripted_server_factory(Script())
    messages = [Message(SENDER, MANY, body(1), id=1)]
    if chained:
        messages.insert(0, Message(SENDER, ("a@server.test",), body(0), id=0))
    results = smtpstate.deliver(
        messages, "127.0.0.1", server.port, concurrency=1,
        max_recipients_per_transaction=1000,
    )  # fmt: skip
    for result in results:
        assert {r.outcome for r in result.recipients} == {
            smtpstate.Outcome.DELIVERED
        }, result.recipients[0]
    received = server.wait_for_messages(len(messages) + 1)
    got = [r for m in received if m.data == body(1) for r in m.accepted]
    assert got == list(MANY)  # each once, in order, over two transactions
    assert [len(m.accepted) for m in received][-2:] == [654, 46]


@pytest.mark.parametrize(
    "after",
    [BuiltinState.TRANSACTION, BuiltinState.MAIL_FROM],
    ids=["transaction", "mail-from"],
)
def test_a_recipient_a_state_settles_keeps_its_place_among_the_rcpt_replies(
    after, registered, scripted_server_factory
):
    # A C state settles a message's first recipient with smtp_outcome_set
    # and moves on; under PIPELINING its RCPT may be out already (the
    # chained group, or the group behind MAIL FROM), so its reply still
    # comes.  That reply is its own, not the next recipient's: the server
    # refuses only b, and b must not be reported delivered in c's place.
    lib, ffi = _raw.lib, _raw.ffi

    def settle_first(session: smtpstate.Session) -> None:
        dc = session._dc  # the C state's delivery_construct
        lib.smtp_outcome_set(
            dc, dc.current, 0, lib.SMTP_OUTCOME_PERMANENT, ffi.NULL, 22
        )
        session.next()

    registered(
        SmtpState("drop-a", lambda s, e: None, setup=settle_first, observer=True),
        after,
    )
    rcpts = ("a@server.test", "b@server.test", "c@server.test")
    server = scripted_server_factory(
        Script(rcpt=lambda r, i: "550 5.1.1 no b" if r == rcpts[1] else "250 ok")
    )
    results = smtpstate.deliver(
        batch(3, rcpts), "127.0.0.1", server.port, concurrency=1
    )
    for result in results:
        got = [(r.outcome.name, r.code) for r in result.recipients]
        assert got == [("PERMANENT", 0), ("PERMANENT", 550), ("DELIVERED", 250)]
    assert all(rcpts[1] not in m.accepted for m in server.wait_for_messages(3))
