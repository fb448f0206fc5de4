"""What a custom state may and may not do to a session, and what the engine
does when a state breaks the rules: against real loopback servers."""

from __future__ import annotations

import pytest

import smtpstate
from servers import Script
from smtpstate import BuiltinState, Message, Outcome, SmtpState

SENDER = "sender@client.test"
BODY = b"From: sender@client.test\r\nSubject: hi\r\n\r\nHello.\r\n"
# A state that misbehaves in every session gives up after this many, so a
# regression fails the test instead of hanging it.
SESSION_BOUND = 10


def messages(n: int, rcpts: tuple[str, ...] = ("rcpt@server.test",)):
    return [
        Message(SENDER, rcpts, BODY.replace(b"hi", b"hi %d" % i), id=i)
        for i in range(n)
    ]


@pytest.fixture
def registered():
    """Registers states for one test and removes them afterwards."""
    ids: list[int] = []

    def register(state: SmtpState, after: int) -> int:
        state_id = smtpstate.register_smtp_client_state(state, after)
        ids.append(state_id)
        return state_id

    yield register
    for state_id in reversed(ids):
        smtpstate.smtp_unregister_client_state(state_id)


@pytest.mark.parametrize("where", ["setup", "callback"])
def test_state_jumping_to_quit_settles_every_recipient_at_once(
    where, scripted_server_factory, registered
):
    server = scripted_server_factory(Script())
    entered: list[int] = []

    def end_session(session):
        entered.append(session.session_id)
        if len(entered) > SESSION_BOUND:
            session.close("the test's bound on sessions")
        else:
            session.next(BuiltinState.QUIT)

    def setup(session):
        if where == "setup":
            end_session(session)
            return None
        session.wake()
        return smtpstate.WANT_READ

    def callback(session, events):
        end_session(session)

    registered(
        SmtpState("py-policy", callback, setup=setup), BuiltinState.SESSION_READY
    )
    results = smtpstate.deliver(
        messages(3, ("a@server.test", "b@server.test")),
        "127.0.0.1",
        server.port,
        concurrency=1,
    )
    # One session per message, each ended by the state: none is handed to
    # another connection.
    assert len(entered) == 3
    rcpts = [r for result in results for r in result.recipients]
    assert len(rcpts) == 6
    for r in rcpts:
        assert (r.outcome, r.error, r.state, r.code) == (
            Outcome.TRANSIENT,
            "SMTP_ESTATE",
            "py-policy",
            0,
        )
        assert "state py-policy ended the session" in r.text
    sessions = server.wait_for_closed_sessions(3)
    assert [s.verbs for s in sessions] == [("EHLO", "QUIT")] * 3
    assert server.messages == []
