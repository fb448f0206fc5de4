"""Benchmark sender: smtpstate's Python API, ``smtpstate.deliver_iter``.

Messages are Python ``bytes``, each made as the engine takes it, as the
other Python senders make theirs; every result is read from the public
``MessageResult`` objects as it comes.  With ``--state``, a Python state
that only moves on is inserted after TRANSACTION, so Python runs once per
message; its call count is printed so run.py can check it really ran.  It
is declared an observer (it sends nothing), as such a state should be, so
PIPELINING keeps its one round trip a message.
"""

from __future__ import annotations

from _common import RECIPIENT, SENDER, finish, messages, parse_args

import smtpstate
from smtpstate import BuiltinState, Message, SmtpState


def pass_through_state(calls: list[int]) -> SmtpState:
    """A state that does nothing but move on to the next one."""

    def setup(session: smtpstate.Session) -> None:
        calls[0] += 1
        session.next()

    def callback(session: smtpstate.Session, events: int) -> None:
        session.next()

    return SmtpState("bench-pass", callback, setup=setup, observer=True)


def main() -> int:
    opts = parse_args(__doc__.splitlines()[0], state=True)
    calls = [0]
    if opts.state:
        smtpstate.register_smtp_client_state(
            pass_through_state(calls), BuiltinState.TRANSACTION
        )
    payloads = messages(opts.count, opts.size)
    # Streamed: each Message is made as the engine takes it and each
    # result is read as it comes, as a sender of millions would.
    results = smtpstate.deliver_iter(
        (Message(SENDER, [RECIPIENT], data) for data in payloads),
        opts.host,
        opts.port,
        concurrency=opts.concurrency,
        max_messages_per_connection=opts.per_connection,
    )
    delivered = 0
    for result in results:
        delivered += result.delivered
    extra = {"state_calls": calls[0]} if opts.state else {}
    return finish(len(payloads), delivered, **extra)


if __name__ == "__main__":
    raise SystemExit(main())
