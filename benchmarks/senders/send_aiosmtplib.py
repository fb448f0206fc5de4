"""Benchmark sender: aiosmtplib, one asyncio task per connection slot.

Each of ``--concurrency`` workers owns one connection at a time and sends
its share of the messages over it, opening a new one every
``--per-connection`` messages (1: one connection per message).
"""

from __future__ import annotations

import asyncio

import aiosmtplib
from _common import RECIPIENT, SENDER, chunks, finish, messages, parse_args, shares


async def worker(opts, share: list[bytes]) -> int:
    delivered = 0
    for run in chunks(share, opts.per_connection):
        smtp = aiosmtplib.SMTP(hostname=opts.host, port=opts.port, timeout=opts.timeout)
        await smtp.connect()
        for data in run:
            refused, _ = await smtp.sendmail(SENDER, [RECIPIENT], data)
            delivered += not refused
        await smtp.quit()
    return delivered


async def run(opts) -> int:
    batch = messages(opts.count, opts.size)
    done = await asyncio.gather(
        *(worker(opts, s) for s in shares(batch, opts.concurrency))
    )
    return finish(len(batch), sum(done))


if __name__ == "__main__":
    raise SystemExit(asyncio.run(run(parse_args(__doc__.splitlines()[0]))))
