"""One long run of ``smtpstate.deliver_async``, for benchmarks/scale.py.

    python3 benchmarks/scale_async.py --port P --messages N [--progress K]

Messages come from a lazy generator and each result is counted and dropped
as it arrives, so the process holds only what the engine's queue holds.
Every K outcomes it prints, on stderr, the same ``progress`` line as the C
driver (``outcomes= elapsed_us= cpu_us= rss_kib=``), then a ``summary``
line.  It runs in a process of its own so that its resident size is the
API's, not the benchmark's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator

import smtpstate
from smtpstate import Message

SENDER = "a@example.com"
RECIPIENT = "b@example.com"


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def messages(count: int, size: int) -> Iterator[Message]:
    """Builds each message only when the API asks for the next one."""
    filler = (b"a" * 76 + b"\r\n") * (size // 78 + 1)
    for i in range(1, count + 1):
        head = (
            f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: message {i}\r\n"
            f"Message-ID: <{i}@scale.test>\r\n\r\n"
        ).encode()
        body = filler[: max(size - len(head), 0)]
        yield Message(SENDER, [RECIPIENT], head + body)


class Progress:
    """Elapsed and CPU time since the start, and the resident size."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.start = time.monotonic()
        self.cpu_start = time.process_time()

    def print(self, outcomes: int) -> None:
        elapsed = round((time.monotonic() - self.start) * 1e6)
        cpu = round((time.process_time() - self.cpu_start) * 1e6)
        print(
            f"progress outcomes={outcomes} elapsed_us={elapsed} cpu_us={cpu} "
            f"rss_kib={rss_kib()}",
            file=sys.stderr,
            flush=True,
        )


async def run(args: argparse.Namespace) -> int:
    counts = {outcome: 0 for outcome in smtpstate.Outcome}
    progress = Progress(args.progress)
    progress.print(0)
    done = 0
    async for result in smtpstate.deliver_async(
        messages(args.messages, args.size),
        "127.0.0.1",
        args.port,
        concurrency=args.concurrency,
    ):
        for rcpt in result.recipients:
            counts[rcpt.outcome] += 1
            done += 1
            if args.progress and done % args.progress == 0:
                progress.print(done)
    print(
        f"summary messages={args.messages} "
        f"delivered={counts[smtpstate.Outcome.DELIVERED]} "
        f"transient={counts[smtpstate.Outcome.TRANSIENT]} "
        f"permanent={counts[smtpstate.Outcome.PERMANENT]}",
        file=sys.stderr,
        flush=True,
    )
    return 0 if counts[smtpstate.Outcome.DELIVERED] == args.messages else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--progress", type=int, default=0)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
