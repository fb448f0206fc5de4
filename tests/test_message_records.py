"""The scheduler's message records are reused: each recipient's outcome
must still be its own.

With a queue of three, a record settled in one turn of the loop carries
the next message submitted; recipient counts on both sides of the 16
whose status fits inside the record (more take an array of their own)
and refusals scattered among them show any status left over from an
earlier message.
"""

from __future__ import annotations

import smtpstate
from servers import Script
from smtpstate import Message, Outcome

SENDER = "sender@client.test"
BODY = b"Subject: records\r\n\r\nbody\r\n"
SHAPES = (1, 17, 40, 3, 16, 2)


def recipients(n: int, count: int) -> list[str]:
    """Every third recipient (shifted by message) is refused by name."""
    return [
        f"{'no' if (i + n) % 3 == 0 else 'ok'}{n}.{i}@server.test" for i in range(count)
    ]


def test_reused_records_keep_each_recipients_own_outcome(scripted_server_factory):
    server = scripted_server_factory(
        Script(
            rcpt=lambda rcpt, i: (
                "550 5.1.1 unknown" if rcpt.startswith("no") else "250 2.1.5 Ok"
            )
        )
    )
    msgs = [
        Message(SENDER, recipients(n, count), BODY, id=n)
        for n, count in enumerate(SHAPES * 4)
    ]
    results = smtpstate.deliver(
        msgs, "127.0.0.1", server.port, queue_capacity=3, concurrency=2
    )
    assert [r.message.id for r in results] == [m.id for m in msgs]
    for msg, result in zip(msgs, results, strict=True):
        assert [r.recipient for r in result.recipients] == list(msg.recipients)
        for r in result.recipients:
            refused = r.recipient.startswith("no")
            assert r.outcome is (Outcome.PERMANENT if refused else Outcome.DELIVERED)
            assert r.code == (550 if refused else 250)
    accepted = [[r for r in m.recipients if r.startswith("ok")] for m in msgs]
    received = server.wait_for_messages(sum(1 for a in accepted if a))
    assert sorted(list(m.accepted) for m in received) == sorted(
        a for a in accepted if a
    )
