"""What a custom state may and may not do to a session, and what the engine
does when a state breaks the rules: against real loopback servers."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import pytest

import smtpstate
from servers import Script
from smtpstate import BounceClass, BuiltinState, Message, Outcome, SmtpState

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


@pytest.mark.parametrize(
    "kind",
    [Outcome.DELIVERED, 1, 0, 4, 42, -1],
    ids=["DELIVERED", "1", "0", "4", "42", "-1"],
)
def test_state_cannot_decide_delivered_or_an_unknown_outcome(
    kind, scripted_server_factory, registered
):
    server = scripted_server_factory(Script())
    refused: list[Exception] = []

    def callback(session, events):
        if session.read_reply(250) is None:
            return
        try:
            session.fail(kind)
        except smtpstate.InvalidArgumentError as exc:
            refused.append(exc)
        session.next()

    registered(
        SmtpState("py-claims", callback, setup=lambda s: s.send("NOOP")),
        BuiltinState.SESSION_READY,
    )
    (result,) = smtpstate.deliver(messages(1), "127.0.0.1", server.port)
    (error,) = refused
    assert "rule:" in str(error) and "TRANSIENT or PERMANENT" in str(error)
    # Refused, nothing settled: the engine delivered it, on the reply to
    # the end of its data.
    (rcpt,) = result.recipients
    assert (rcpt.outcome, rcpt.code, rcpt.stage, rcpt.state) == (
        Outcome.DELIVERED,
        250,
        smtpstate.Stage.CONFIRMATION,
        "confirmation",
    )
    (received,) = server.wait_for_messages(1)
    assert received.data == result.message.data


@pytest.mark.parametrize("kind", [Outcome.TRANSIENT, Outcome.PERMANENT])
def test_state_fails_the_batch_with_transient_or_permanent(
    kind, scripted_server_factory, registered
):
    server = scripted_server_factory(Script(noop="250 2.0.0 but no"))

    def callback(session, events):
        if session.read_reply(250) is not None:
            session.fail(kind)

    registered(
        SmtpState("py-fails", callback, setup=lambda s: s.send("NOOP")),
        BuiltinState.SESSION_READY,
    )
    results = smtpstate.deliver(
        messages(1, ("a@server.test", "b@server.test")), "127.0.0.1", server.port
    )
    for r in results[0].recipients:
        assert (r.outcome, r.code, r.text, r.state) == (
            kind,
            250,
            "2.0.0 but no",
            "py-fails",
        )
    assert server.messages == []


@pytest.mark.parametrize("observer", [False, True], ids=["state", "observer"])
@pytest.mark.parametrize("kind", [Outcome.TRANSIENT, Outcome.PERMANENT])
def test_fail_without_a_reply_cites_no_earlier_states_reply(
    kind, observer, scripted_server_factory, registered
):
    # The connection's last reply at a per-message setup is EHLO's (or the
    # previous confirmation's): a 250 must not explain a failure.
    server = scripted_server_factory(Script())

    def setup(session):
        session.fail(kind)

    registered(
        SmtpState("py-refuses", lambda s, e: None, setup=setup, observer=observer),
        BuiltinState.TRANSACTION,
    )
    results = smtpstate.deliver(
        messages(2, ("a@server.test", "b@server.test")),
        "127.0.0.1",
        server.port,
        concurrency=1,
    )
    for result in results:
        for r in result.recipients:
            assert (r.outcome, r.code, r.enhanced, r.error, r.state) == (
                kind,
                0,
                "",
                "SMTP_ESTATE",
                "py-refuses",
            )
            assert r.text == "state py-refuses decided the outcome without a reply"
            # Undecided by a reply, the class follows the kind: a permanent
            # failure is no "transient failure".
            assert r.bounce_class == (
                BounceClass.GENERIC
                if kind is Outcome.PERMANENT
                else BounceClass.TRANSIENT
            )
    assert server.messages == []


@pytest.mark.parametrize("loop", ["itself", "two states"])
def test_setups_that_jump_in_a_circle_fail_instead_of_looping(
    loop, scripted_server_factory, registered
):
    # Each setup jumps on and none waits: the engine would run them for
    # ever inside one turn, a hang no deadline can end.
    ids: list[int] = []

    def jump(to: int):
        def setup(session):
            session.next(ids[to])

        return setup

    first = registered(
        SmtpState(
            "py-circle-a", lambda s, e: None, setup=jump(0 if loop == "itself" else 1)
        ),
        BuiltinState.TRANSACTION,
    )
    ids.append(first)
    if loop == "two states":
        ids.append(
            registered(
                SmtpState("py-circle-b", lambda s, e: None, setup=jump(0)), first
            )
        )
    server = scripted_server_factory(Script())

    class Looping(Exception):
        pass

    def stop(signum, frame):
        raise Looping("the setups were still running after 20 s")

    # Without the guard the setups never stop: the timer then ends them
    # from inside one, once a second for each connection after 20 s, and
    # the outcome names it instead of the rule.
    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, 20, 1)
    try:
        results = smtpstate.deliver(
            messages(2), "127.0.0.1", server.port, concurrency=1
        )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    for result in results:
        (r,) = result.recipients
        assert (r.outcome, r.error) == (Outcome.TRANSIENT, "SMTP_ESTATE"), r
        assert "(rule: a setup moves on or waits)" in r.text, r
        assert r.state.startswith("py-circle-"), r
    assert server.messages == []


def test_source_address_not_numeric_says_so(scripted_server_factory):
    server = scripted_server_factory(Script())
    for source in ("not-an-address", "::1"):
        (result,) = smtpstate.deliver(
            messages(1), "127.0.0.1", server.port, source=source
        )
        (r,) = result.recipients
        assert (r.outcome, r.error) == (Outcome.TRANSIENT, "SMTP_ECONNECT")
        assert r.text.endswith(
            "not a numeric address of the destination's family (rule: source)"
        ), r.text
    assert server.messages == []


def _interrupting_state(how: str, where: str) -> SmtpState:
    """A state after SESSION_READY that is interrupted in `where` (setup or
    callback): by a real SIGINT to this process, or by sys.exit."""

    def interrupt(session):
        if how == "sigint":
            os.kill(os.getpid(), signal.SIGINT)
            # The handler runs at the next bytecode: this line never ends.
            time.sleep(0.2)
        else:
            sys.exit(3)

    def setup(session):
        if where == "setup":
            interrupt(session)
        session.wake()
        return smtpstate.WANT_READ

    def callback(session, events):
        interrupt(session)
        session.next()

    return SmtpState("py-interrupted", callback, setup=setup)


INTERRUPTS = [
    (how, where) for how in ("sigint", "exit") for where in ("setup", "callback")
]
RAISED = {"sigint": KeyboardInterrupt, "exit": SystemExit}


@pytest.mark.parametrize(("how", "where"), INTERRUPTS)
def test_interrupt_in_a_state_reaches_the_caller_of_deliver(
    how, where, scripted_server_factory, registered
):
    server = scripted_server_factory(Script())
    registered(_interrupting_state(how, where), BuiltinState.SESSION_READY)
    with pytest.raises(RAISED[how]):
        smtpstate.deliver(messages(3), "127.0.0.1", server.port, concurrency=1)
    # The interrupted connection was failed and closed at once; the engine
    # was closed when the turn returned, so no message was sent.
    sessions = server.wait_for_closed_sessions(1)
    assert sessions[0].verbs == ("EHLO",)
    assert all("MAIL" not in s.verbs for s in sessions)
    assert server.messages == []


@pytest.mark.parametrize(("how", "where"), INTERRUPTS)
def test_interrupt_in_a_state_reaches_the_caller_of_deliver_async(
    how, where, scripted_server_factory, registered
):
    server = scripted_server_factory(Script())
    registered(_interrupting_state(how, where), BuiltinState.SESSION_READY)

    async def run() -> list:
        return [
            r
            async for r in smtpstate.deliver_async(
                messages(3), "127.0.0.1", server.port, concurrency=1
            )
        ]

    with pytest.raises(RAISED[how]):
        asyncio.run(run())
    assert server.messages == []


def test_delivery_after_an_interrupt_is_not_interrupted(
    scripted_server_factory, registered
):
    server = scripted_server_factory(Script())
    fired: list[int] = []

    def callback(session, events):
        if not fired:
            fired.append(session.session_id)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
        session.next()

    def setup(session):
        session.wake()
        return smtpstate.WANT_READ

    registered(SmtpState("py-once", callback, setup=setup), BuiltinState.SESSION_READY)
    with pytest.raises(KeyboardInterrupt):
        smtpstate.deliver(messages(1), "127.0.0.1", server.port)
    results = smtpstate.deliver(messages(2), "127.0.0.1", server.port)
    assert all(r.delivered for r in results) and len(fired) == 1
    assert len(server.wait_for_messages(2)) == 2


@pytest.mark.parametrize("api", ["deliver", "deliver_async"])
def test_delivery_started_from_inside_a_state_is_refused(
    api, scripted_server_factory, registered
):
    server = scripted_server_factory(Script())
    refused: list[Exception] = []
    calls: list[int] = []

    def nested() -> None:
        inner = messages(1, ("inner@server.test",))
        if api == "deliver":
            smtpstate.deliver(inner, "127.0.0.1", server.port)
            return

        async def drain() -> None:
            async for _ in smtpstate.deliver_async(inner, "127.0.0.1", server.port):
                pass

        asyncio.run(drain())

    def callback(session, events):
        calls.append(session.session_id)
        if len(calls) <= SESSION_BOUND:
            try:
                nested()
            except smtpstate.SmtpStateError as exc:
                refused.append(exc)
        session.next()

    def setup(session):
        session.wake()
        return smtpstate.WANT_READ

    registered(SmtpState("py-nests", callback, setup=setup), BuiltinState.TRANSACTION)
    (result,) = smtpstate.deliver(messages(1), "127.0.0.1", server.port)
    assert result.delivered
    assert len(calls) == 1
    (error,) = refused
    assert isinstance(error, RuntimeError)
    assert "rule: no delivery from inside a state" in str(error)
    (received,) = server.wait_for_messages(1)
    assert received.data == result.message.data
    assert all("inner@server.test" not in str(s.commands) for s in server.sessions)


@pytest.mark.parametrize(
    ("options", "error", "rule"),
    [
        (dict(expect="250"), TypeError, "rule: expect"),
        (dict(expect=b"250"), TypeError, "rule: expect"),
        (dict(expect=(250, "251")), TypeError, "rule: expect"),
        (dict(expect=(250.0,)), TypeError, "rule: expect"),
        (dict(expect=(True,)), TypeError, "rule: expect"),
        (dict(expect=None), TypeError, "rule: expect"),
        (dict(expect=()), smtpstate.InvalidArgumentError, "rule: expect"),
        (dict(expect=(199,)), smtpstate.InvalidArgumentError, "rule: expect"),
        (dict(expect=(250, 600)), smtpstate.InvalidArgumentError, "rule: expect"),
        (dict(stage=23), smtpstate.InvalidArgumentError, "rule: stage"),
        (dict(stage=99), smtpstate.InvalidArgumentError, "rule: stage"),
        (dict(stage=-1), smtpstate.InvalidArgumentError, "rule: stage"),
        (dict(stage=1 << 31), smtpstate.InvalidArgumentError, "rule: stage"),
        (dict(stage="100"), TypeError, "rule: stage"),
        (dict(stage=True), TypeError, "rule: stage"),
        (dict(on_failure="ignore"), smtpstate.InvalidArgumentError, "on_failure"),
    ],
)
def test_command_state_is_checked_when_it_is_made(options, error, rule):
    with pytest.raises(error, match=rule) as info:
        smtpstate.command_state("checked", "NOOP", **options)
    assert isinstance(info.value, smtpstate.SmtpStateError)


@pytest.mark.parametrize(
    ("options", "stage"),
    [
        (dict(expect=252), 100),
        (dict(expect=[250, 252]), 100),
        (dict(expect=(252,), stage=smtpstate.Stage.AFTER_EHLO), 11),
        (dict(expect=(252,), stage=140), 140),
    ],
)
def test_command_state_takes_one_code_or_several_and_any_valid_stage(
    options, stage, scripted_server_factory, registered
):
    server = scripted_server_factory(Script(noop="252 2.0.0 fine too"))
    state = smtpstate.command_state("checked", "NOOP", **options)
    assert state.tostage(0) == stage
    registered(state, BuiltinState.SESSION_READY)
    (result,) = smtpstate.deliver(messages(1), "127.0.0.1", server.port)
    assert result.delivered
    (session,) = server.wait_for_closed_sessions(1)
    assert session.verbs[:3] == ("EHLO", "NOOP", "MAIL")


BadType = smtpstate.InvalidTypeError
BadValue = smtpstate.InvalidArgumentError

BAD_DELIVERY_ARGUMENTS = [
    (dict(host=None), BadType, "rule: host"),
    (dict(host=b"127.0.0.1"), BadType, "rule: host"),
    (dict(host=""), BadValue, "rule: host"),
    (dict(host="127.0.0.1 x"), BadValue, "rule: host"),
    (dict(host="\udcff"), BadValue, "rule: host"),
    (dict(port="2601"), BadType, "rule: port"),
    (dict(port=2601.0), BadType, "rule: port"),
    (dict(port=True), BadType, "rule: port"),
    (dict(helo=5), BadType, "rule: EHLO name"),
    (dict(helo="\udc80"), BadValue, "rule: EHLO name"),
    (dict(source=5), BadType, "rule: source"),
    (dict(source="127.0.0.1 x"), BadValue, "rule: source"),
    (dict(json_events="events.jsonl"), BadType, "rule: json_events"),
    (dict(json_events=5), BadType, "rule: json_events"),
    (dict(timeouts=None), BadType, "rule: timeouts"),
    (dict(timeouts=[("banner", 5)]), BadType, "rule: timeouts"),
    (dict(fold_long_lines="80"), BadType, "fold_long_lines"),
    (dict(fold_long_lines=-1), BadValue, "fold_long_lines"),
    (dict(concurrency="3"), BadType, "concurrency"),
    (dict(no_such_setting=1), BadType, "unknown delivery setting"),
    (dict(workers="2"), BadType, "workers"),
    (dict(messages=None), BadType, "messages"),
    (dict(messages=[b"raw"]), BadType, "expected Message"),
]


@pytest.mark.parametrize("api", ["deliver", "deliver_async"])
@pytest.mark.parametrize(("bad", "error", "rule"), BAD_DELIVERY_ARGUMENTS)
def test_bad_delivery_argument_is_a_documented_error_before_anything_is_sent(
    api, bad, error, rule, scripted_server_factory
):
    server = scripted_server_factory(Script())
    kwargs = dict(messages=messages(1), host="127.0.0.1", port=server.port) | bad

    async def drain() -> None:
        async for _ in smtpstate.deliver_async(**kwargs):
            pass

    with pytest.raises(error, match=rule) as info:
        if api == "deliver":
            smtpstate.deliver(**kwargs)
        else:
            asyncio.run(drain())
    assert isinstance(info.value, smtpstate.SmtpStateError)
    assert server.sessions == []


@pytest.mark.parametrize(
    ("fields", "error", "rule"),
    [
        (dict(sender="\ud800@client.test"), BadValue, "rule: address"),
        (dict(recipients=["\udcff@server.test"]), BadValue, "rule: address"),
        (dict(sender=5), BadType, "sender"),
        (dict(sender=None), BadType, "sender"),
        (dict(recipients=[5]), BadType, "recipient"),
        (dict(recipients="a@server.test"), BadType, "recipients"),
        (dict(recipients=None), BadType, "recipients"),
        (dict(data=5), BadType, "data"),
        (dict(data=None), BadType, "data"),
    ],
)
def test_bad_message_is_a_documented_error(fields, error, rule):
    values = dict(sender=SENDER, recipients=["r@server.test"], data=BODY) | fields
    with pytest.raises(error, match=rule) as info:
        Message(**values)
    assert isinstance(info.value, smtpstate.SmtpStateError)


@pytest.mark.parametrize(
    "bad_id", [None, "70", 70.0, b"70"], ids=["None", "str", "float", "bytes"]
)
def test_state_id_of_the_wrong_type_is_a_documented_error(bad_id, noop):
    for call in (smtpstate.smtp_unregister_client_state, smtpstate.smtp_get_state):
        with pytest.raises(BadType, match="rule: state id"):
            call(bad_id)
    with pytest.raises(BadType, match="rule: state id"):
        smtpstate.register_smtp_client_state(SmtpState("typed", noop), bad_id)
    with pytest.raises(BadType, match="name"):
        smtpstate.register_smtp_client_state(SmtpState(5, noop), -1)


def test_state_id_out_of_c_range_names_no_state(noop):
    for huge in (1 << 40, -(1 << 40)):
        assert smtpstate.smtp_get_state(huge) is None
        with pytest.raises(smtpstate.UnknownStateError):
            smtpstate.smtp_unregister_client_state(huge)
        with pytest.raises(smtpstate.UnknownStateError):
            smtpstate.register_smtp_client_state(SmtpState("far", noop), huge)


FIRST_AND_SECOND = [
    ("next", "next"),
    ("next", "fail"),
    ("next", "close"),
    ("fail", "next"),
    ("fail", "fail"),
    ("fail", "close"),
    ("close", "next"),
    ("close", "close"),
]


def _move(session, how: str) -> None:
    if how == "next":
        session.next()
    elif how == "fail":
        session.fail(Outcome.TRANSIENT)
    else:
        session.close("the state gives up")


@pytest.mark.parametrize(("first", "second"), FIRST_AND_SECOND)
def test_second_move_in_one_call_is_refused_and_does_nothing(
    first, second, scripted_server_factory, registered
):
    server = scripted_server_factory(Script(noop="250 2.0.0 noop ok"))
    refused: list[Exception] = []

    def callback(session, events):
        if session.read_reply(250) is None:
            return
        _move(session, first)
        try:
            _move(session, second)
        except smtpstate.SmtpStateError as exc:
            refused.append(exc)

    registered(
        SmtpState("py-twice", callback, setup=lambda s: s.send("NOOP")),
        BuiltinState.SESSION_READY,
    )
    (result,) = smtpstate.deliver(messages(1), "127.0.0.1", server.port)
    (error,) = refused
    assert isinstance(error, RuntimeError)
    assert f"{second}() after {first}()" in str(error)
    assert "rule: one move per call" in str(error)
    (session,) = server.wait_for_closed_sessions(1)
    (rcpt,) = result.recipients
    if first == "next":
        # The second move did nothing: MAIL FROM was not skipped.
        assert rcpt.outcome is Outcome.DELIVERED
        assert session.verbs[:3] == ("EHLO", "NOOP", "MAIL")
        assert len(server.messages) == 1
    else:
        assert rcpt.outcome is Outcome.TRANSIENT and rcpt.state == "py-twice"
        expected = "2.0.0 noop ok" if first == "fail" else "the state gives up"
        assert rcpt.text == expected
        assert "MAIL" not in session.verbs


def test_second_next_in_a_setup_is_refused(scripted_server_factory, registered):
    server = scripted_server_factory(Script())
    refused: list[Exception] = []

    def setup(session):
        session.next()
        try:
            session.next(BuiltinState.QUIT)
        except smtpstate.SmtpStateError as exc:
            refused.append(exc)

    registered(
        SmtpState("py-setup-twice", lambda s, e: None, setup=setup),
        BuiltinState.SESSION_READY,
    )
    (result,) = smtpstate.deliver(messages(1), "127.0.0.1", server.port)
    assert len(refused) == 1 and "next() after next()" in str(refused[0])
    assert result.delivered


@pytest.mark.parametrize("returned", [None, smtpstate.WANT_READ, smtpstate.SKIP])
def test_a_move_made_in_a_setup_wins_over_its_return(
    returned, scripted_server_factory, registered
):
    # As in C, where smtp_next_state inside a setup decides and the return
    # value is not looked at: the state is left at once, its callback never
    # runs, and the message goes on.
    server = scripted_server_factory(Script())
    called: list[int] = []

    def setup(session):
        session.next()
        return returned

    registered(
        SmtpState("py-move-then-return", lambda s, e: called.append(e), setup=setup),
        BuiltinState.TRANSACTION,
    )
    # A short deadline in the state: one that stayed would hold the test.
    (result,) = smtpstate.deliver(
        messages(1), "127.0.0.1", server.port, timeouts={"custom": 2}
    )
    assert result.delivered and not called
    (session,) = server.wait_for_closed_sessions(1)
    assert session.verbs[:2] == ("EHLO", "MAIL")


def test_oversized_command_is_refused_naming_the_limit(
    scripted_server_factory, registered
):
    server = scripted_server_factory(Script())
    refused: list[Exception] = []

    def setup(session):
        try:
            session.send("X" * 70_000)
        except smtpstate.InvalidArgumentError as exc:
            refused.append(exc)
        session.send("NOOP")
        return smtpstate.WANT_READ

    def callback(session, events):
        if session.read_reply(250) is not None:
            session.next()

    registered(SmtpState("py-big", callback, setup=setup), BuiltinState.SESSION_READY)
    (result,) = smtpstate.deliver(messages(1), "127.0.0.1", server.port)
    (error,) = refused
    assert "65536" in str(error) and "rule: command size" in str(error)
    assert result.delivered
    (session,) = server.wait_for_closed_sessions(1)
    assert session.verbs[:3] == ("EHLO", "NOOP", "MAIL")


@pytest.mark.parametrize("after", [BuiltinState.MAIL_FROM, BuiltinState.RCPT_TO])
def test_state_cannot_send_behind_a_pipelined_data(
    after, scripted_server_factory, registered
):
    # Under PIPELINING, DATA went out with MAIL FROM and the RCPTs before a
    # state after them runs: its command would follow DATA and, once the
    # 354 came, be taken as the first line of the message, which the
    # server then stored with it.
    server = scripted_server_factory(Script(pipelining=True))
    registered(
        smtpstate.command_state("py-behind-data", "NOOP", on_failure="continue"),
        after,
    )
    (result,) = smtpstate.deliver(messages(1), "127.0.0.1", server.port)
    (rcpt,) = result.recipients
    assert (rcpt.outcome, rcpt.error) == (Outcome.TRANSIENT, "SMTP_ESTATE"), rcpt
    assert "rule: no command inside the data phase" in rcpt.text, rcpt
    assert server.messages == []
    assert all("NOOP" not in s.verbs for s in server.sessions)


@pytest.mark.parametrize("after", [BuiltinState.DATA, BuiltinState.BODY])
def test_state_cannot_send_inside_the_data_phase(
    after, scripted_server_factory, registered
):
    # The server refuses the data; a NOOP slipped in after the body would
    # draw a 250 the confirmation could take for the body's reply.
    server = scripted_server_factory(Script(end_of_data="554 5.7.1 no"))
    registered(
        smtpstate.command_state("py-in-data", "NOOP", on_failure="continue"),
        after,
    )
    (result,) = smtpstate.deliver(
        messages(1), "127.0.0.1", server.port, timeouts={"confirm": 2}
    )
    (rcpt,) = result.recipients
    assert rcpt.outcome is not Outcome.DELIVERED, rcpt
    assert "rule: no command inside the data phase" in rcpt.text
    assert all("NOOP" not in s.verbs for s in server.sessions)
    assert all(not (m.reply or b"").startswith(b"2") for m in server.messages)
