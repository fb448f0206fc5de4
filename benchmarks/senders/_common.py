"""What every Python benchmark sender shares: its command line, the
messages it sends and the summary line run.py reads.

The messages are laid out as the C driver's (``smtpstate-send --count N
--size B``): four header lines, then lines of 78 letters, CRLF-terminated,
up to ``size`` bytes in all.  Each message is its own ``bytes`` object with
its own Subject and Message-ID, made when the sender takes it, as the
driver's are its own buffers made as it submits them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator

SENDER = "a@example.com"
RECIPIENT = "b@example.com"


def parse_args(description: str, state: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    if state:
        parser.add_argument(
            "--state",
            action="store_true",
            help="insert a pass-through Python state after TRANSACTION",
        )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument(
        "--per-connection",
        type=int,
        default=100,
        help="messages per connection before a new one is opened",
    )
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    if args.count < 1 or args.concurrency < 1 or args.per_connection < 1:
        parser.error("--count, --concurrency and --per-connection must be >= 1")
    return args


def body(size: int) -> bytes:
    """Lines of 78 letters (the last one shorter), each ending in CRLF,
    ``size`` bytes in all give or take the final CRLF."""
    lines = []
    at = 0
    while at < size:
        n = max(1, min(78, size - at - 2))
        lines.append(bytes([ord("a") + at % 26]) * n + b"\r\n")
        at += n + 2
    return b"".join(lines)


_HEADER = (
    b"From: sender@example.com\r\nTo: rcpt@example.com\r\n"
    b"Subject: message %d\r\nMessage-ID: <%d.%d@smtpstate.test>\r\n\r\n"
)


def header(i: int, stamp: int) -> bytes:
    # Formatted as bytes: a str formatted and then encoded costs a third
    # more a message, which every Python sender would pay.
    return _HEADER % (i, i, stamp)


class Messages:
    """Distinct messages of about the same size, each made when a sender
    takes it (as the C driver makes each buffer as it submits it), so no
    sender pays for memory it would not hold.  Slices are views."""

    def __init__(self, numbers: range, stamp: int, text: bytes) -> None:
        self.numbers = numbers
        self.stamp = stamp
        self.text = text

    def __len__(self) -> int:
        return len(self.numbers)

    def __iter__(self) -> Iterator[bytes]:
        stamp, text = self.stamp, self.text
        for i in self.numbers:
            yield _HEADER % (i, i, stamp) + text

    def __getitem__(self, key: slice) -> Messages:
        return Messages(self.numbers[key], self.stamp, self.text)


def messages(count: int, size: int) -> Messages:
    """``count`` distinct messages of about ``size`` bytes each."""
    stamp = int(time.time())
    text = body(max(0, size - len(header(count, stamp))))
    return Messages(range(1, count + 1), stamp, text)


def shares(items: Messages, workers: int) -> list[Messages]:
    """The items dealt round-robin to at most ``workers`` workers."""
    return [s for s in (items[i::workers] for i in range(workers)) if len(s)]


def chunks(items: Messages, size: int) -> list[Messages]:
    """``items`` cut into runs of at most ``size``: one per connection."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def finish(sent: int, delivered: int, **extra: int) -> int:
    """Prints the summary line run.py reads and returns the exit status."""
    fields = " ".join(f"{k}={v}" for k, v in {"sent": sent, **extra}.items())
    print(f"summary delivered={delivered} {fields}", file=sys.stderr)
    return 0 if delivered == sent else 1
