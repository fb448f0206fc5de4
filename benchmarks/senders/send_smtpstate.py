"""Benchmark sender: smtpstate's Python API, ``smtpstate.deliver``.

Messages are Python ``bytes``; every result is read from the public
``MessageResult`` objects.  With ``--state``, a Python state that only
moves on is inserted after TRANSACTION, so Python runs once per message;
its call count is printed so run.py can check it really ran.
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

    return SmtpState("bench-pass", callback, setup=setup)


def main() -> int:
    opts = parse_args(__doc__.splitlines()[0], state=True)
    calls = [0]
    if opts.state:
        smtpstate.register_smtp_client_state(
            pass_through_state(calls), BuiltinState.TRANSACTION
        )
    batch = [
        Message(SENDER, [RECIPIENT], data) for data in messages(opts.count, opts.size)
    ]
    results = smtpstate.deliver(
        batch,
        opts.host,
        opts.port,
        concurrency=opts.concurrency,
        max_messages_per_connection=opts.per_connection,
    )
    delivered = sum(1 for r in results if r.delivered)
    extra = {"state_calls": calls[0]} if opts.state else {}
    return finish(len(batch), delivered, **extra)


if __name__ == "__main__":
    raise SystemExit(main())
