"""The C entry of every Python state's setup (_state_setup.c): the
connection a setup sees, the registrations the entry holds, and what
happens when an exception escapes the entry itself.  Against real loopback
servers."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import smtpstate
from servers import Script
from smtpstate import BuiltinState, Message, Outcome, SmtpState, states
from smtpstate._smtpstate_cffi import ffi, lib

SENDER = "sender@client.test"


def messages(n: int) -> list[Message]:
    return [
        Message(SENDER, ["rcpt@server.test"], b"Subject: %d\r\n\r\nHello.\r\n" % i)
        for i in range(n)
    ]


def session_recorder(seen: list[int]) -> SmtpState:
    """An observer after TRANSACTION: notes each message's session id."""

    def setup(session: smtpstate.Session) -> None:
        seen.append(session.session_id)
        session.next()

    return SmtpState("py-seen", lambda s, e: None, setup=setup, observer=True)


@pytest.mark.parametrize("kept", [16384, 2], ids=["kept", "forgotten"])
def test_each_setup_sees_its_own_connection(
    kept, scripted_server_factory, registered, monkeypatch
):
    # The entry keeps a connection's cdata by its context's address, and
    # forgets them all when it holds too many: either way a setup's
    # Session is the connection it runs for, as the results name it, also
    # when a closed connection's memory serves a new one.
    monkeypatch.setattr(states, "_MAX_CONTEXTS", kept)
    monkeypatch.setattr(states, "_contexts", {})
    server = scripted_server_factory(Script(pipelining=True))
    seen: list[int] = []
    registered(session_recorder(seen), BuiltinState.TRANSACTION)
    results = smtpstate.deliver(
        messages(24),
        "127.0.0.1",
        server.port,
        concurrency=3,
        max_messages_per_connection=2,
    )
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 24
    assert len(server.messages) == 24
    sent_on = sorted(r.recipients[0].session_id for r in results)
    assert len(set(sent_on)) >= 12  # two messages a connection at most
    assert sorted(seen) == sent_on
    assert 1 <= len(states._contexts) <= kept


def test_unregistering_releases_the_state(registered):
    # The entry holds each registration while its state is registered, and
    # lets it go with the state: nothing else keeps a removed state alive.
    state = session_recorder([])
    ref = weakref.ref(state)
    state_id = smtpstate.register_smtp_client_state(state, BuiltinState.TRANSACTION)
    smtpstate.smtp_unregister_client_state(state_id)
    del state
    gc.collect()
    assert ref() is None


@pytest.fixture
def entry() -> Iterator[Callable[[Callable[..., Any]], None]]:
    """Binds another Python function as the setup entry for one test."""

    def bind(fn: Callable[..., Any]) -> None:
        lib.smtpstate_py_bind_setup_entry(
            ffi.cast("void *", id(fn)), ffi.cast("void *", id(states._setup_onerror))
        )

    yield bind
    bind(states._py_state_setup)


def test_an_interrupt_escaping_the_entry_reaches_the_caller(
    entry, scripted_server_factory, registered
):
    # An interrupt can land between two lines of the entry, outside the
    # handling around the state's own setup: it is kept, the run stops and
    # deliver raises it, and the message is not sent.
    def interrupted(registration: Any, dc_address: int) -> int:
        raise KeyboardInterrupt

    server = scripted_server_factory(Script())
    registered(session_recorder([]), BuiltinState.TRANSACTION)
    entry(interrupted)
    with pytest.raises(KeyboardInterrupt):
        smtpstate.deliver(messages(2), "127.0.0.1", server.port, concurrency=1)
    assert server.messages == []
    assert states.take_interrupt() is None


def test_an_error_escaping_the_entry_fails_the_message_and_is_reported(
    entry, scripted_server_factory, registered, monkeypatch
):
    # A bug in the entry itself is reported as unraisable, and the message
    # whose setup it was fails transiently: never reported delivered.
    reported: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.append(u.exc_value))

    def broken(registration: Any, dc_address: int) -> int:
        raise ValueError("broken entry")

    server = scripted_server_factory(Script())
    registered(session_recorder([]), BuiltinState.TRANSACTION)
    entry(broken)
    results = smtpstate.deliver(messages(2), "127.0.0.1", server.port, concurrency=1)
    assert [r.outcome for r in results] == [Outcome.TRANSIENT] * 2
    assert all(r.recipients[0].error == "SMTP_ESTATE" for r in results)
    assert server.messages == []
    assert reported and all(isinstance(e, ValueError) for e in reported)


def jumped_then_raising(exc_type: type[BaseException]) -> Callable[..., int]:
    """An entry that moves the connection to MAIL FROM, as a setup may,
    and then lets `exc_type` escape."""

    def jump_then_raise(registration: Any, dc_address: int) -> int:
        dc = ffi.cast("delivery_construct *", dc_address)
        mail_from = lib.smtp_get_state(BuiltinState.MAIL_FROM)
        lib.smtp_next_state(dc, dc.conn_handle, mail_from, ffi.NULL)
        raise exc_type("escaped after a jump")

    return jump_then_raise


def test_an_error_escaping_the_entry_after_a_jump_fails_the_message(
    entry, scripted_server_factory, registered, monkeypatch
):
    # A jump recorded inside the setup wins over the setup's answer in the
    # engine, so the entry's SMTP_ESTATE alone would let the connection go
    # on: the message must still fail, and nothing of it reach the server.
    monkeypatch.setattr(sys, "unraisablehook", lambda u: None)
    server = scripted_server_factory(Script())
    registered(session_recorder([]), BuiltinState.TRANSACTION)
    entry(jumped_then_raising(ValueError))
    results = smtpstate.deliver(messages(2), "127.0.0.1", server.port, concurrency=1)
    assert [r.outcome for r in results] == [Outcome.TRANSIENT] * 2
    assert all(r.recipients[0].error == "SMTP_ESTATE" for r in results)
    assert server.messages == []
    assert all("MAIL" not in s.verbs for s in server.sessions)


def test_an_interrupt_escaping_the_entry_after_a_jump_sends_nothing_more(
    entry, scripted_server_factory, registered
):
    # The interrupt stops the run; the connection whose setup it escaped
    # does not go on to send the jumped-to state's commands.
    server = scripted_server_factory(Script())
    registered(session_recorder([]), BuiltinState.TRANSACTION)
    entry(jumped_then_raising(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        smtpstate.deliver(messages(2), "127.0.0.1", server.port, concurrency=1)
    server.stop()
    assert server.messages == []
    assert all("MAIL" not in s.verbs for s in server.sessions)
    assert states.take_interrupt() is None


def assert_taken_or_refused(
    result: smtpstate.MessageResult, server: Any, delivered: bool, refusal: str
) -> None:
    """The one message was delivered as the server saw it, or failed
    transiently with `refusal` in its text and nothing stored."""
    if delivered:
        assert result.outcome is Outcome.DELIVERED
        assert len(server.messages) == 1
    else:
        assert result.outcome is Outcome.TRANSIENT
        assert refusal in result.recipients[0].text
        assert server.messages == []


class _WantsReadButConvertsOtherwise(int):
    """An int of value WANT_READ whose int() names other bits."""

    def __int__(self) -> int:
        return (1 << 32) | states.SKIP


class _MasksToNothing(int):
    """An int whose `&` hides the bits outside what a setup may return."""

    def __and__(self, other: object) -> int:
        return 0

    __rand__ = __and__


# Answers of int subclasses, and whether the message they answer for is
# delivered: one of value WANT_READ, one with bits past a C int.
ODD_ANSWERS = pytest.mark.parametrize(
    ("answer", "delivered"),
    [
        (_WantsReadButConvertsOtherwise(smtpstate.WANT_READ), True),
        (_MasksToNothing((1 << 32) | smtpstate.WANT_READ), False),
    ],
    ids=["int-converts-otherwise", "and-masks-to-nothing"],
)


@ODD_ANSWERS
def test_a_setup_answer_is_judged_by_its_value(
    answer, delivered, scripted_server_factory, registered
):
    # The entry hands C a C int: the value checked must be the value
    # passed, never one an int subclass converts to or one cut to 32 bits.
    def setup(session: smtpstate.Session) -> int:
        session.send("NOOP")
        return answer

    def callback(session: smtpstate.Session, events: int) -> None:
        if session.read_reply(250) is not None:
            session.next()

    server = scripted_server_factory(Script())
    registered(SmtpState("py-odd-int", callback, setup=setup), BuiltinState.TRANSACTION)
    (result,) = smtpstate.deliver(messages(1), "127.0.0.1", server.port)
    assert_taken_or_refused(result, server, delivered, "setup of state py-odd-int")


@ODD_ANSWERS
def test_a_callback_answer_is_judged_by_its_value(
    answer, delivered, scripted_server_factory, registered, monkeypatch
):
    # The callback's trampoline hands C a C int too: an answer whose value
    # is WANT_READ waits for the reply like WANT_READ, and one with bits
    # past a C int is refused by name, not converted.
    monkeypatch.setattr(sys, "unraisablehook", lambda u: None)

    def setup(session: smtpstate.Session) -> int:
        return smtpstate.WANT_WRITE

    def callback(session: smtpstate.Session, events: int) -> int | None:
        if session.local_state == 0:
            session.local_state = 1
            session.send("NOOP")
            return answer
        if session.read_reply(250) is not None:
            session.next()
        return None

    server = scripted_server_factory(Script())
    registered(SmtpState("py-odd-int", callback, setup=setup), BuiltinState.TRANSACTION)
    (result,) = smtpstate.deliver(
        messages(1), "127.0.0.1", server.port, timeouts={"mail": 5}
    )
    assert_taken_or_refused(result, server, delivered, "callback returned")
