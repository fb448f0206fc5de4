"""Benchmark sender: the standard library's smtplib, one thread per
connection slot.

Each of ``--concurrency`` threads owns one connection at a time and sends
its share of the messages over it, opening a new one every
``--per-connection`` messages (1: one connection per message).
"""

from __future__ import annotations

import smtplib
import threading

from _common import RECIPIENT, SENDER, chunks, finish, messages, parse_args, shares


def worker(opts, share: list[bytes], delivered: list[int], slot: int) -> None:
    for run in chunks(share, opts.per_connection):
        with smtplib.SMTP(opts.host, opts.port, timeout=opts.timeout) as smtp:
            for data in run:
                refused = smtp.sendmail(SENDER, [RECIPIENT], data)
                delivered[slot] += not refused


def main() -> int:
    opts = parse_args(__doc__.splitlines()[0])
    batch = messages(opts.count, opts.size)
    parts = shares(batch, opts.concurrency)
    delivered = [0] * len(parts)
    threads = [
        threading.Thread(target=worker, args=(opts, part, delivered, i))
        for i, part in enumerate(parts)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return finish(len(batch), sum(delivered))


if __name__ == "__main__":
    raise SystemExit(main())
