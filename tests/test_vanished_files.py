"""A message file that vanishes after its `Message` was made: before the
engine takes it (refused at submit) or after (at its transaction).  Either
way that message alone fails, transiently, and every other result is
returned."""

from __future__ import annotations

import asyncio
import os

import pytest

import smtpstate
from servers import Script
from smtpstate import Message, Outcome

SENDER = "sender@client.test"
RCPTS = ("r0@server.test", "r1@server.test")
COUNT = 31
GONE = 20


def files(tmp_path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        path = tmp_path / f"{i}.eml"
        path.write_bytes(b"Subject: file %d\r\n\r\nbody %d\r\n" % (i, i))
        paths.append(str(path))
    return paths


def run(mode: str, batch: list[Message], port: int, **settings):
    if mode.startswith("workers"):
        settings["workers"] = 2
    if mode.endswith("async"):

        async def collect():
            return [
                r
                async for r in smtpstate.deliver_async(
                    batch, "127.0.0.1", port, **settings
                )
            ]

        return sorted(asyncio.run(collect()), key=lambda r: r.message.id)
    return smtpstate.deliver(batch, "127.0.0.1", port, **settings)


@pytest.mark.parametrize("mode", ["deliver", "async", "workers", "workers-async"])
def test_a_file_gone_before_submit_gets_its_own_result_and_the_rest_go_on(
    mode, tmp_path, scripted_server_factory
):
    server = scripted_server_factory(Script())
    paths = files(tmp_path, COUNT)
    batch = [Message(SENDER, RCPTS, p, id=i) for i, p in enumerate(paths)]
    os.unlink(paths[GONE])
    # A queue of 4 makes the vanished file's turn come once sending has
    # started: the tester saw 20 messages accepted before the exception.
    results = run(mode, batch, server.port, queue_capacity=4, concurrency=2)
    assert [r.message.id for r in results] == list(range(COUNT))
    for result in results:
        if result.message.id != GONE:
            assert result.delivered, result
            continue
        assert [r.recipient for r in result.recipients] == list(RCPTS)
        for r in result.recipients:
            assert r.outcome is Outcome.TRANSIENT
            assert (r.error, r.stage, r.code, r.session_id) == ("SMTP_EINVAL", 0, 0, 0)
            assert paths[GONE] in r.text and "No such file" in r.text
    got = server.wait_for_messages(COUNT - 1)
    assert sorted(m.data for m in got) == sorted(
        b"Subject: file %d\r\n\r\nbody %d\r\n" % (i, i)
        for i in range(COUNT)
        if i != GONE
    )


def test_a_file_gone_between_submit_and_its_transaction_is_transient(
    tmp_path, scripted_server_factory
):
    paths = files(tmp_path, 3)
    unlinked = []

    def mail(sender: str) -> str:
        # The first MAIL FROM is message 0's; message 1 is already in the
        # engine's queue, its file not yet opened.
        if not unlinked:
            os.unlink(paths[1])
            unlinked.append(paths[1])
        return "250 2.1.0 Ok"

    server = scripted_server_factory(Script(mail=mail))
    batch = [Message(SENDER, RCPTS, p, id=i) for i, p in enumerate(paths)]
    results = smtpstate.deliver(batch, "127.0.0.1", server.port, concurrency=1)
    assert unlinked == [paths[1]]
    assert [r.delivered for r in results] == [True, False, True]
    for r in results[1].recipients:
        assert r.outcome is Outcome.TRANSIENT
        assert r.error == "SMTP_EIO"
        assert "not a readable regular file" in r.text
    got = server.wait_for_messages(2)
    assert [m.data for m in got] == [
        b"Subject: file 0\r\n\r\nbody 0\r\n",
        b"Subject: file 2\r\n\r\nbody 2\r\n",
    ]
    # Nothing of message 1 went out: one MAIL per delivered message.
    (session,) = server.wait_for_closed_sessions(1)
    assert session.verbs.count("MAIL") == 2
