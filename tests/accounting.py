"""Checks a client's outcomes against what the random server logged.

The rules (issue 6, item 6):

- every (message, recipient) sent has exactly one outcome, and nothing
  else has one;
- every recipient reported delivered is one the server accepted for that
  message at the end of its data;
- a recipient the server accepted but the client did not report
  delivered is one whose connection the server dropped right after that
  250 (the one discrepancy a client cannot avoid);

and, as consequences worth their own words: the server took no
(message, recipient) twice, the client broke no protocol rule the server
checks, a permanent outcome carries a 5xx and a delivery a 2xx.

Messages are named by Message-ID ``<N.anything@domain>``, N the id the
client reports.  Run as a program it checks the pure-C driver's output::

    python tests/accounting.py --server-log S.jsonl --driver-output OUT \\
        --count 20000 --to a@x --to b@x --to c@x --vary-recipients
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from random_server import ServerLog, read_log

_ID = re.compile(r"^<(\d+)\.[^@>]*@[^>]*>$")


@dataclass(frozen=True)
class ClientOutcome:
    """One recipient's outcome as the client reported it."""

    id: int
    rcpt: str
    result: str  # delivered, transient or permanent
    code: int


@dataclass
class Report:
    """What the check found: problems (empty when all rules hold) and
    counts that say how much the run exercised."""

    seed: int
    problems: list[str] = field(default_factory=list)
    counts: collections.Counter[str] = field(default_factory=collections.Counter)

    def summary(self) -> str:
        counts = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        head = f"seed={self.seed} {counts}"
        if not self.problems:
            return head
        shown = "\n  ".join(self.problems[:20])
        more = len(self.problems) - 20
        tail = f"\n  ... and {more} more" if more > 0 else ""
        return f"{head}\n{len(self.problems)} problems:\n  {shown}{tail}"


def message_number(message_id: str | None) -> int | None:
    """N of a Message-ID ``<N.anything@domain>``, else None."""
    match = _ID.match(message_id or "")
    return int(match.group(1)) if match else None


def check(
    expected: Mapping[int, Sequence[str]],
    outcomes: Iterable[ClientOutcome],
    log: ServerLog,
) -> Report:
    """Applies the rules to one run: `expected` maps each message id the
    client was given to its recipients."""
    report = Report(log.seed)
    problems = report.problems
    counts = report.counts

    wanted = {(mid, r) for mid, rcpts in expected.items() for r in rcpts}
    seen: dict[tuple[int, str], ClientOutcome] = {}
    for o in outcomes:
        key = (o.id, o.rcpt)
        counts[o.result] += 1
        if key not in wanted:
            problems.append(f"outcome for a recipient never sent: {o}")
        elif key in seen:
            problems.append(f"second outcome {o} after {seen[key]}")
        else:
            seen[key] = o
        if o.result == "permanent" and not 500 <= o.code < 600:
            problems.append(f"permanent without a 5xx: {o}")
        if o.result == "delivered" and not 200 <= o.code < 300:
            problems.append(f"delivered without a 2xx: {o}")
    for key in sorted(wanted - seen.keys()):
        problems.append(f"no outcome for message {key[0]} recipient {key[1]}")

    taken: dict[tuple[int, str], str | None] = {}
    for a in log.accepted:
        number = message_number(a.message_id)
        if number is None or number not in expected:
            problems.append(f"the server took a message never sent: {a}")
            continue
        counts["server_accepted_messages"] += 1
        if a.dropped:
            counts[f"server_dropped_after_250_{a.dropped}"] += 1
        for rcpt in a.recipients:
            key = (number, rcpt)
            if key not in wanted:
                problems.append(f"the server took a recipient never sent: {a}")
            elif key in taken:
                problems.append(f"the server took message {number} for {rcpt} twice")
            taken[key] = a.dropped

    for key, o in seen.items():
        if o.result == "delivered" and key not in taken:
            problems.append(f"reported delivered, never accepted by the server: {o}")
    for key, dropped in taken.items():
        o = seen.get(key)
        if o is None or o.result == "delivered":
            continue
        if dropped is None:
            problems.append(
                f"the server accepted message {key[0]} for {key[1]} and kept "
                f"the connection, but the client reported {o}"
            )
        else:
            counts[f"undelivered_after_250_{dropped}"] += 1

    for v in log.violations:
        problems.append(f"protocol violation on connection {v['c']}: {v['what']}")
    counts["connections"] = log.connections()
    counts["server_max_open"] = log.max_open()
    return report


def parse_driver_output(text: str) -> list[ClientOutcome]:
    """The driver's outcome lines (``id=N rcpt=R result=K code=C ...``);
    other lines are ignored."""
    out = []
    for line in text.splitlines():
        fields = dict(p.split("=", 1) for p in line.split(" ")[:4] if "=" in p)
        if {"id", "rcpt", "result", "code"} <= fields.keys():
            out.append(
                ClientOutcome(
                    int(fields["id"]),
                    fields["rcpt"],
                    fields["result"],
                    int(fields["code"]),
                )
            )
    return out


def driver_expected(
    count: int, recipients: Sequence[str], vary: bool
) -> dict[int, list[str]]:
    """The recipients the driver gives each generated message (see
    --vary-recipients in examples/smtpstate-send.c)."""
    k = len(recipients)
    return {
        n: list(recipients[: 1 + (n - 1) % k] if vary else recipients)
        for n in range(1, count + 1)
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-log", type=Path, required=True)
    parser.add_argument("--driver-output", type=Path, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--to", action="append", required=True)
    parser.add_argument("--vary-recipients", action="store_true")
    args = parser.parse_args(argv)
    report = check(
        driver_expected(args.count, args.to, args.vary_recipients),
        parse_driver_output(args.driver_output.read_text(errors="replace")),
        read_log(args.server_log),
    )
    print(
        ("accounting FAILED " if report.problems else "accounting ok ")
        + report.summary()
    )
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
