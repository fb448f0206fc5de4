"""smtpstate.deliver_iter: results streamed without asyncio, messages taken
from the caller's iterable only as the engine's queue has room."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import pickle
import weakref
from collections.abc import Iterator

import pytest

import smtpstate
from servers import Script
from smtpstate import InvalidArgumentError, InvalidTypeError, Message

SENDER = "sender@client.test"


def body(i: int) -> bytes:
    return (
        f"From: a@client.test\r\nMessage-ID: <{i}@iter.test>\r\n"
        f"Subject: iter {i}\r\n\r\nHello {i}.\r\n"
    ).encode()


def test_results_stream_while_messages_are_still_being_made(scripted_server_factory):
    server = scripted_server_factory(Script())
    made: list[int] = []
    seen_at_first_result: list[int] = []

    def generate(n: int) -> Iterator[Message]:
        for i in range(n):
            made.append(i)
            yield Message(SENDER, [f"r{i}@server.test"], body(i), id=i)

    ids = []
    for result in smtpstate.deliver_iter(
        generate(300), "127.0.0.1", server.port, concurrency=4, queue_capacity=16
    ):
        if not seen_at_first_result:
            seen_at_first_result.append(len(made))
        assert result.delivered, result.recipients
        ids.append(result.message.id)
    # The first result came while most messages were not yet made: the
    # input is taken as the queue (16) has room, not read in full first.
    assert seen_at_first_result[0] <= 16 + 1
    assert sorted(ids) == list(range(300))
    received = server.wait_for_messages(300)
    assert sorted(m.rcpts[0] for m in received) == sorted(
        f"r{i}@server.test" for i in range(300)
    )


@pytest.mark.parametrize("mode", ["iter", "async"])
def test_results_of_vanished_files_stream_too(mode, scripted_server_factory, tmp_path):
    # Every message's file is gone by the time the engine takes it, so each
    # is settled at submission and none reaches a connection.  Those
    # results held no place in the window: the whole input was read, and
    # every result kept, before the first one came out.
    server = scripted_server_factory(Script())
    made: list[int] = []
    seen_at_first_result: list[int] = []

    def generate(n: int) -> Iterator[Message]:
        for i in range(n):
            path = tmp_path / f"{i}.eml"
            path.write_bytes(body(i))
            message = Message(SENDER, ["a@server.test"], path, id=i)
            path.unlink()
            made.append(i)
            yield message

    def take(result: smtpstate.MessageResult) -> int:
        if not seen_at_first_result:
            seen_at_first_result.append(len(made))
        assert result.recipients[0].error == "SMTP_EINVAL", result.recipients
        return result.message.id

    settings = dict(concurrency=4, queue_capacity=16)
    if mode == "iter":
        results = smtpstate.deliver_iter(
            generate(300), "127.0.0.1", server.port, **settings
        )
        ids = [take(result) for result in results]
    else:

        async def collect() -> list[int]:
            results = smtpstate.deliver_async(
                generate(300), "127.0.0.1", server.port, **settings
            )
            return [take(result) async for result in results]

        ids = asyncio.run(asyncio.wait_for(collect(), 60))
    assert seen_at_first_result[0] <= 16 + 1
    assert sorted(ids) == list(range(300))
    assert server.sessions == []


def test_bad_arguments_raise_at_the_call_before_anything_is_sent(
    scripted_server_factory,
):
    server = scripted_server_factory(Script())
    with pytest.raises(InvalidArgumentError, match="rule: port"):
        smtpstate.deliver_iter([], "127.0.0.1", 0)
    with pytest.raises(InvalidTypeError, match="rule: messages"):
        smtpstate.deliver_iter(42, "127.0.0.1", server.port)  # type: ignore[arg-type]
    with pytest.raises(
        InvalidTypeError,
        match=r"unknown delivery setting 'concurency' \(did you mean "
        r"'concurrency'\?\); known: concurrency, .*\(rule: settings\)",
    ):
        smtpstate.deliver_iter([], "127.0.0.1", server.port, concurency=2)
    assert server.sessions == []


def test_non_message_item_raises_when_reached(scripted_server_factory):
    server = scripted_server_factory(Script())
    items = [Message(SENDER, ["a@server.test"], body(0)), b"not a message"]
    with pytest.raises(InvalidTypeError, match="expected Message"):
        for _ in smtpstate.deliver_iter(items, "127.0.0.1", server.port):
            pass


def test_closing_early_closes_the_connections_and_frees_the_engine(
    scripted_server_factory,
):
    server = scripted_server_factory(Script())
    batch = [Message(SENDER, ["a@server.test"], body(i), id=i) for i in range(50)]
    results = smtpstate.deliver_iter(batch, "127.0.0.1", server.port, concurrency=2)
    first = next(results)
    assert first.delivered
    results.close()
    # Every connection the iterator opened is closed (this waits for it).
    opened = len(server.sessions)
    assert opened >= 1 and len(server.wait_for_closed_sessions(opened)) == opened
    # The engine is gone: a new delivery runs (one scheduler at a time is
    # not a rule, but a leaked one would keep its connections open).
    again = list(smtpstate.deliver_iter(batch[:3], "127.0.0.1", server.port))
    assert [r.delivered for r in again] == [True] * 3


def test_workers_stream_every_result(smtp_sink):
    batch = [Message(SENDER, [f"r{i}@sink.test"], body(i), id=i) for i in range(200)]
    results = list(
        smtpstate.deliver_iter(batch, "127.0.0.1", smtp_sink.port, workers=2)
    )
    assert sorted(r.message.id for r in results) == list(range(200))
    assert all(r.delivered for r in results)
    assert smtp_sink.wait_for_messages(200) == 200


def test_message_is_a_frozen_record_that_copies_and_pickles():
    m = Message(SENDER, ["a@server.test"], b"x", id=3)
    assert pickle.loads(pickle.dumps(m)) == m and hash(copy.deepcopy(m)) == hash(m)
    assert dataclasses.replace(m, id=4).id == 4 and weakref.ref(m)() is m
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.id = 5  # type: ignore[misc]
    # replace() goes through the same checks as the constructor.
    with pytest.raises(InvalidArgumentError, match="rule: address"):
        dataclasses.replace(m, sender="a\r\nb@x")


def test_an_events_file_that_fails_midway_raises_its_own_error(
    scripted_server_factory, tmp_path
):
    # The caller closes the events file while results still come, as when
    # the iterator outlives the `with` block that opened it.  The write's
    # own error must reach the caller and every connection close; closing
    # the engine once read the failed batch's rows a second time and
    # raised KeyError for messages it had already settled.
    server = scripted_server_factory(Script())
    rcpts = ["a@server.test", "b@server.test"]
    batch = [Message(SENDER, rcpts, body(i), id=i) for i in range(200)]
    seen = []
    with open(tmp_path / "events.jsonl", "w") as events:
        results = smtpstate.deliver_iter(
            batch, "127.0.0.1", server.port, concurrency=1, json_events=events
        )
        with pytest.raises(ValueError, match="closed file"):
            for result in results:
                seen.append(result.message.id)
                events.close()
    assert 0 < len(seen) < len(batch)
    opened = len(server.sessions)
    assert opened >= 1 and len(server.wait_for_closed_sessions(opened)) == opened
    # The engine is gone with its connections: another delivery runs.
    again = smtpstate.deliver(batch[:2], "127.0.0.1", server.port)
    assert [r.delivered for r in again] == [True, True]


class Fickle(Message):
    """A hostile subclass: `recipients` is all of them at the first read,
    then the first alone."""

    __slots__ = ("reads",)

    @property  # type: ignore[override]
    def recipients(self) -> tuple[str, ...]:
        slot = Message.recipients  # type: ignore[attr-defined]
        full: tuple[str, ...] = slot.__get__(self)
        reads = getattr(self, "reads", 0) + 1
        object.__setattr__(self, "reads", reads)
        return full if reads == 1 else full[:1]


def test_a_subclass_cannot_make_python_expect_other_outcomes_than_c(
    scripted_server_factory,
):
    # The outcomes a message waits for are the recipients C was given, not
    # a later read of `recipients`: one read short, the second outcome
    # found the message already finished (KeyError); one read long, it
    # would never finish and the loop would spin.
    server = scripted_server_factory(Script())
    rcpts = ["a@server.test", "b@server.test", "c@server.test"]
    fickle = Fickle(SENDER, rcpts, body(0), id=0)
    (result,) = smtpstate.deliver_iter([fickle], "127.0.0.1", server.port)
    assert result.message is fickle and result.delivered
    (received,) = server.wait_for_messages(1)
    assert list(received.rcpts) in (rcpts, rcpts[:1])
