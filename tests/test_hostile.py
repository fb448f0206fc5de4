"""The hostile-server suite (issue 6, items 1 and 5).

Each `Case` in `CASES` is one way a server can misbehave (or behave legally
but oddly) and the outcome DESIGN 8 and 9 require for each message: the
table in docs/HOSTILE.md is rendered from `CASES` (``python
tests/test_hostile.py`` prints it) and `test_the_table_in_the_docs_is_cases`
keeps the two equal, so the table and the tests cannot drift apart.

Every case runs through the pure-C driver against a loopback
`ScriptedServer` and asserts each recipient's outcome (result, SMTP_E*
reason or deciding code, stage), the driver's exit status, and what the
server received: a message reported delivered arrived byte-exact and got a
2xx; no other message got a 2xx.  Cases marked `python` run again through
`smtpstate.deliver`.  Cases marked `huge` send a reply over the caps and
also check memory (item 5): the engine's own reply-buffer high-water mark,
the server's count of bytes the kernel accepted before the client closed,
and the driver's peak RSS measured in its own process.
"""

from __future__ import annotations

import base64
import functools
import pathlib
import random
import re
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pytest

import smtpstate
from canonical import canonical_body
from driver import ROOT, DriverRun, run_driver
from servers import (
    CLOSE,
    CLOSE_AFTER,
    HANG_AFTER,
    RESET,
    SILENCE,
    STOP_READING,
    Script,
    ScriptedServer,
    Stream,
)

SENDER = "sender@client.test"
MIB = 1 << 20


def header_constant(name: str) -> int:
    """A numeric #define of include/smtp.h, sums like (65536 + 4096) added."""
    text = (ROOT / "include" / "smtp.h").read_text()
    found = re.search(rf"#define {name} \(?([0-9 +]+)\)?", text)
    assert found, f"{name} is not defined in include/smtp.h"
    return sum(int(part) for part in found.group(1).split("+"))


REPLY_BUFFER_MAX = header_constant("SMTP_REPLY_BUFFER_MAX")
LINE_MAX = 4096  # DESIGN 9: a reply line is capped at 4 KiB

# Every deadline short enough to bound a test that goes wrong; a case that
# waits for one deadline sets that one shorter.
BASE_TIMEOUTS_MS = {
    kind: 5000
    for kind in ("connect", "banner", "ehlo", "mail", "rcpt", "data", "body")
    + ("confirm", "rset", "quit")
}

# --------------------------------------------------------------------------
# The table's data
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Want:
    """The outcome every recipient of one message must get."""

    result: str  # delivered, transient or permanent
    reason: str = "-"  # the SMTP_E* name when no reply decided it
    code: int = 0  # the deciding reply's code, 0 when none did
    stage: int = 9  # DESIGN 7's stage where it was decided

    def text(self) -> str:
        if self.result == "delivered":
            return "delivered"
        why = self.reason if self.reason != "-" else f"reply {self.code}"
        return f"{self.result}, {why}, stage {self.stage}"


DELIVERED = Want("delivered", code=250)


def eproto(stage: int) -> Want:
    return Want("transient", "SMTP_EPROTO", stage=stage)


def eclosed(stage: int) -> Want:
    return Want("transient", "SMTP_ECLOSED", stage=stage)


def etimeout(stage: int) -> Want:
    return Want("transient", "SMTP_ETIMEOUT", stage=stage)


def etoobig(stage: int) -> Want:
    return Want("transient", "SMTP_ETOOBIG", stage=stage)


def r421(stage: int) -> Want:
    return Want("transient", code=421, stage=stage)


Check = Callable[[ScriptedServer, DriverRun], None]


@dataclass(frozen=True)
class Case:
    """One hostile server and what each of its messages must end as."""

    name: str
    server_does: str
    script: Script
    want: tuple[Want, ...]  # message 1, 2, ... in order
    design: str
    per_session: Mapping[int, Script] = field(default_factory=dict)
    body_mib: int = 0  # 0: a one-line body; else about this many MiB
    rcpts: int = 1
    timeouts_ms: Mapping[str, int] = field(default_factory=dict)
    server: Mapping[str, int] = field(default_factory=dict)  # sndbuf, rcvbuf
    huge: bool = False  # a reply past the caps: memory bounds are checked
    python: bool = False  # also through smtpstate.deliver
    check: Check | None = None  # what else the case must show


# ---- checks particular to a case ------------------------------------------


def check_one_byte_per_write(server: ScriptedServer, run: DriverRun) -> None:
    writes = [e for s in server.sessions for e in s.transcript if e.direction == "S"]
    assert writes and {len(e.data) for e in writes} == {1}


def check_no_cr_sent(server: ScriptedServer, run: DriverRun) -> None:
    sent = b"".join(s.sent for s in server.sessions)
    assert b"\n" in sent and b"\r" not in sent


def check_empty_text(server: ScriptedServer, run: DriverRun) -> None:
    assert [(o["text"], o["enhanced"]) for o in run.outcomes] == [("", "-")]


def check_nul_shown_as_question_mark(server: ScriptedServer, run: DriverRun) -> None:
    (outcome,) = run.outcomes
    assert outcome["text"].startswith("2.0.0 kept ?")


def check_two_sessions_one_message_each(server: ScriptedServer, run: DriverRun) -> None:
    sessions = server.wait_for_closed_sessions(2)
    assert [len(s.messages) for s in sessions] == [1, 1]
    assert "QUIT" not in sessions[0].verbs  # the first ended on the server's fault


def check_second_session_refused(server: ScriptedServer, run: DriverRun) -> None:
    sessions = server.wait_for_closed_sessions(2)
    assert [len(s.messages) for s in sessions] == [1, 0]
    assert sessions[1].verbs == ()


def check_line_cap_high_water(server: ScriptedServer, run: DriverRun) -> None:
    # A line fails at its 4 KiB cap: the buffer never grew much past it.
    assert int(run.summary["reply_high_water"]) <= 2 * LINE_MAX


def check_line_count_cap_high_water(server: ScriptedServer, run: DriverRun) -> None:
    # 200 lines of "220-more" are 2000 bytes: the reply fails at its line
    # cap long before the 64 KiB byte cap, so the buffer stayed small.
    assert int(run.summary["reply_high_water"]) <= 2 * LINE_MAX


def check_whole_message_before_close(server: ScriptedServer, run: DriverRun) -> None:
    (message,) = server.messages
    assert message.reply is None  # received in full, never answered


# ---- the cases -------------------------------------------------------------

BYE_421 = CLOSE_AFTER("421 4.3.2 shutting down")
LINE_TAIL = b"y" * 994 + b"\r\n"  # after "220-" or "220 ": a 1000-byte line
# Script field: (the stage code an outcome decided there carries, what the
# server would be answering).
STAGE_FIELDS = {
    "banner": (12, "the connection"),
    "ehlo": (10, "EHLO"),
    "mail": (2, "MAIL FROM"),
    "data": (6, "DATA"),
}


def rcpt_second(reply: object) -> Callable[[str, int], object]:
    """A RCPT reply: the first recipient accepted, the second gets `reply`."""
    return lambda address, index: reply if index == 1 else "250 2.1.5 Ok"


LEGAL = [
    Case(
        "one-byte-at-a-time",
        "sends every reply one byte per write, 1 ms apart (PIPELINING on)",
        Script(byte_delay=0.001),
        (DELIVERED,),
        "9: a reply ends at its LF, however it is split",
        python=True,
        check=check_one_byte_per_write,
    ),
    Case(
        "code-without-text",
        'answers "220", "250", "354", "250", "221" with no text',
        Script(
            banner="220",
            ehlo="250",
            mail="250",
            rcpt="250",
            data="354",
            end_of_data="250",
            quit="221",
        ),  # fmt: skip
        (DELIVERED,),
        "9: a code with no text is legal",
        python=True,
        check=check_empty_text,
    ),
    Case(
        "bare-lf-line-ends",
        "ends every reply line with LF alone",
        Script(line_end=b"\n"),
        (DELIVERED,),
        "9: a bare LF ends a line",
        python=True,
        check=check_no_cr_sent,
    ),
    Case(
        "nul-and-non-utf8",
        "puts NUL and bytes that are not UTF-8 in the text of its replies",
        Script(
            banner=b"220 host\x00\xff\xfe ESMTP\r\n",
            ehlo=b"250-host \xc3\x28\x00\r\n250 PIPELINING\r\n",
            end_of_data=b"250 2.0.0 kept \x00\xc0\xaf\r\n",
        ),
        (DELIVERED,),
        "9: the text is not the grammar; a NUL is shown as '?'",
        python=True,
        check=check_nul_shown_as_question_mark,
    ),
]

MALFORMED = [
    Case(
        "code-below-200",
        'greets with "199 hello"',
        Script(banner="199 hello"),
        (eproto(12),),
        "8: a code outside 200-599 is EPROTO",
    ),
    Case(
        "code-above-599",
        'answers the body with "600 2.0.0 ok"',
        Script(end_of_data="600 2.0.0 ok"),
        (eproto(9),),
        "8: a code outside 200-599 is EPROTO; no 2xx, not delivered",
    ),
    Case(
        "non-digit-code",
        'answers MAIL FROM with "55O ok" (a letter O, which as a digit reads 581)',
        Script(mail="55O ok"),
        (eproto(2),),
        "8: a malformed line is EPROTO",
        python=True,
    ),
    Case(
        "two-digit-code",
        'answers RCPT TO with "25 ok"',
        Script(rcpt="25 ok"),
        (eproto(4),),
        "8: a malformed line is EPROTO",
    ),
    Case(
        "missing-separator",
        'answers MAIL FROM with "250ok"',
        Script(mail="250ok"),
        (eproto(2),),
        "9: code, then SP, '-' or the line's end",
        python=True,
    ),
    Case(
        "empty-reply-line",
        "answers DATA with an empty line",
        Script(data=b"\r\n"),
        (eproto(6),),
        "8: a malformed line is EPROTO",
    ),
    Case(
        "continuation-code-changes",
        'answers EHLO with "250-a" then "251 b"',
        Script(ehlo="250-a\r\n251 b"),
        (eproto(10),),
        "9: every line of a reply carries the same code",
        python=True,
    ),
]

OUT_OF_TURN = [
    Case(
        "talks-before-the-client",
        'sends "250 extra" with its greeting, before EHLO',
        Script(banner=b"220 hello\r\n250 extra\r\n"),
        (eproto(10),),
        "9: bytes when no reply is due are EPROTO",
    ),
    Case(
        "421-before-the-client",
        'sends "421" with its greeting, before EHLO',
        Script(banner=b"220 hello\r\n421 4.3.2 shutting down\r\n"),
        (r421(10),),
        "9: ...except a 421, which is the server closing",
        python=True,
    ),
    Case(
        "extra-reply-after-ehlo",
        'answers EHLO with two replies, "250 a" and "250 extra"',
        Script(ehlo=b"250 a\r\n250 extra\r\n"),
        (eproto(1),),
        "9: more replies than commands is EPROTO",
        python=True,
    ),
    Case(
        "extra-reply-to-mail",
        "without PIPELINING, answers MAIL FROM twice",
        Script(pipelining=False, mail=b"250 ok\r\n250 extra\r\n"),
        (eproto(4),),
        "9: more replies than commands is EPROTO",
    ),
    Case(
        "extra-reply-in-pipelined-group",
        "under PIPELINING, answers MAIL FROM twice: DATA's reply is a 250",
        Script(mail=b"250 ok\r\n250 extra\r\n"),
        (eproto(6),),
        "9: replies matched in order; a 250 cannot answer DATA",
    ),
    Case(
        "extra-reply-after-the-body",
        'answers the first body with "250" and "250 extra"; 2 messages',
        Script(),
        (DELIVERED, DELIVERED),
        "8: settled outcomes stand; 9: EPROTO closes; the queued one goes on",
        per_session={0: Script(end_of_data=b"250 2.0.0 ok\r\n250 extra\r\n")},
        check=check_two_sessions_one_message_each,
    ),
]

SILENT = [
    Case(
        "never-speaks",
        "accepts the connection and never sends a byte",
        Script(banner=SILENCE),
        (etimeout(12),),
        "9: the banner deadline",
        timeouts_ms={"banner": 300},
    ),
    Case(
        "multi-line-reply-stalls",
        'greets with "220-a", "220-b" and never ends the reply',
        Script(banner=HANG_AFTER("220-a\r\n220-b")),
        (etimeout(12),),
        "9: the banner deadline",
        timeouts_ms={"banner": 300},
    ),
    Case(
        "silent-after-the-body",
        "reads the whole body and never answers it",
        Script(end_of_data=SILENCE),
        (etimeout(9),),
        "8: no 2xx, not delivered; 9: the confirmation deadline",
        timeouts_ms={"confirm": 300},
    ),
]

HUGE = [
    Case(
        "multi-line-reply-never-ends",
        'streams "220-more" lines without end (100 MiB of them)',
        Script(banner=Stream(100 * MIB, fill=b"220-more\r\n")),
        (etoobig(12),),
        "9: a reply of 200 lines at most",
        server={"sndbuf": 65536},
        huge=True,
        check=check_line_count_cap_high_water,
    ),
    Case(
        "reply-of-1MiB-of-lines",
        "greets with 1 MiB of 1000-byte continuation lines",
        Script(
            banner=Stream(
                1050 * 1000, fill=b"220-" + b"y" * 994 + b"\r\n", tail=b"220 end\r\n"
            )
        ),
        (etoobig(12),),
        "9: a reply of 64 KiB at most",
        server={"sndbuf": 65536},
        huge=True,
    ),
    Case(
        "reply-just-over-64KiB",
        "greets with a whole reply of 66 lines of 1000 bytes: 66,000 bytes, less "
        "than the buffer's cap",
        Script(banner=b"".join([b"220-" + LINE_TAIL] * 65 + [b"220 " + LINE_TAIL])),
        (etoobig(12),),
        "9: a reply of 64 KiB at most, even when it fits the buffer",
    ),
    Case(
        "reply-line-1MiB",
        "greets with one line of 1 MiB",
        Script(banner=Stream(MIB, head=b"220 ")),
        (etoobig(12),),
        "9: a line of 4 KiB at most",
        server={"sndbuf": 65536},
        huge=True,
        check=check_line_cap_high_water,
        python=True,
    ),
    Case(
        "reply-line-100MiB",
        "greets with one line of 100 MiB",
        Script(banner=Stream(100 * MIB, head=b"220 ")),
        (etoobig(12),),
        "9: a line of 4 KiB at most",
        server={"sndbuf": 65536},
        huge=True,
        check=check_line_cap_high_water,
    ),
    Case(
        "reply-line-1MiB-to-the-body",
        "answers the body with one line of 1 MiB",
        Script(end_of_data=Stream(MIB, head=b"250 ")),
        (etoobig(9),),
        "8: no complete 2xx, not delivered; 9: the line cap",
        server={"sndbuf": 65536},
        huge=True,
        check=check_line_cap_high_water,
    ),
]

CLOSES = [
    Case(
        f"closes-at-{stage}",
        f"closes instead of answering {what}",
        Script(**{stage: CLOSE}),  # type: ignore[arg-type]
        (eclosed(code),),
        "8: a drop is transient",
    )
    for stage, (code, what) in STAGE_FIELDS.items()
] + [
    Case(
        "closes-at-rcpt",
        "closes instead of answering the second RCPT TO; 2 recipients",
        Script(rcpt=rcpt_second(CLOSE)),
        (eclosed(4),),
        "8: a drop is transient for every unsettled recipient",
        rcpts=2,
    ),
    Case(
        "closes-mid-body",
        "closes after 64 KiB of a 6 MiB body (SO_RCVBUF 16 KiB)",
        Script(data_fault=(65536, CLOSE)),
        (eclosed(8),),
        "8: a drop is transient",
        body_mib=6,
        server={"rcvbuf": 16384},
    ),
    Case(
        "closes-between-body-and-reply",
        "reads the whole body, then closes without a reply",
        Script(end_of_data=CLOSE),
        (eclosed(9),),
        "8: never delivered without a 2xx to the end of the data",
        python=True,
        check=check_whole_message_before_close,
    ),
    Case(
        "reset-mid-body",
        "aborts (TCP RST) after 64 KiB of a 6 MiB body (SO_RCVBUF 16 KiB)",
        Script(data_fault=(65536, RESET)),
        (eclosed(8),),
        "8: a drop is transient",
        body_mib=6,
        server={"rcvbuf": 16384},
        python=True,
    ),
    Case(
        "reset-between-body-and-reply",
        "reads the whole body, then aborts (TCP RST)",
        Script(end_of_data=RESET),
        (eclosed(9),),
        "8: never delivered without a 2xx to the end of the data",
        check=check_whole_message_before_close,
    ),
]

CLOSING_421 = [
    Case(
        f"421-at-{stage}",
        f'answers {what} with "421" and closes',
        Script(**{stage: BYE_421}),  # type: ignore[arg-type]
        (r421(code),),
        "8: 421 at any point: transient for everything unsettled",
        python=stage == "mail",
    )
    for stage, (code, what) in STAGE_FIELDS.items()
] + [
    Case(
        "421-at-rcpt",
        'answers the second RCPT TO with "421" and closes; 2 recipients',
        Script(rcpt=rcpt_second(BYE_421)),
        (r421(4),),
        "8: 421: transient for everything unsettled, the accepted one too",
        rcpts=2,
    ),
    Case(
        "421-multi-line",
        'answers MAIL FROM with a two-line "421" reply and closes',
        Script(mail=CLOSE_AFTER("421-4.3.2 shutting\r\n421 4.3.2 down")),
        (r421(2),),
        "8: 421 at any point",
    ),
    Case(
        "421-mid-body",
        'sends "421" and closes after 64 KiB of a 6 MiB body (SO_RCVBUF 16 KiB)',
        Script(data_fault=(65536, BYE_421)),
        (r421(8),),
        "8: 421 at any point, even while the client writes",
        body_mib=6,
        server={"rcvbuf": 16384},
    ),
    Case(
        "421-to-the-body",
        'answers the body with "421" and closes',
        Script(end_of_data=BYE_421),
        (r421(9),),
        "8: 421 at any point; no 2xx, not delivered",
    ),
    Case(
        "250-then-421",
        'answers the first body with "250" and "421" at once, closes, '
        'then greets every new connection with "421"; 2 messages',
        Script(banner=CLOSE_AFTER("421 4.3.2 still down")),
        (DELIVERED, r421(12)),
        "8: a 421 when no reply is due: settled outcomes stand, the rest "
        "moves to a new connection",
        per_session={
            0: Script(end_of_data=CLOSE_AFTER(b"250 2.0.0 ok\r\n421 4.3.2 bye\r\n"))
        },
        python=True,
        check=check_second_session_refused,
    ),
    Case(
        "250-then-421-server-back",
        "as 250-then-421, but the next connection is served; 2 messages",
        Script(),
        (DELIVERED, DELIVERED),
        "8: the rest of the batch moves to a new connection",
        per_session={
            0: Script(end_of_data=CLOSE_AFTER(b"250 2.0.0 ok\r\n421 4.3.2 bye\r\n"))
        },
        check=check_two_sessions_one_message_each,
    ),
]

SLOW = [
    Case(
        "slow-reader",
        "reads 16 KiB every 10 ms (SO_RCVBUF 16 KiB) through a 5 MiB body; "
        "body deadline 200 ms",
        Script(read_pace=(16384, 0.01)),
        (DELIVERED,),
        "9: the body deadline is inactivity, and the server keeps reading",
        body_mib=5,
        server={"rcvbuf": 16384},
        timeouts_ms={"body": 200},
    ),
    Case(
        "stops-reading",
        "stops reading after 64 KiB of a 6 MiB body (SO_RCVBUF 16 KiB); "
        "body deadline 300 ms",
        Script(data_fault=(65536, STOP_READING)),
        (etimeout(8),),
        "9: the body inactivity deadline",
        body_mib=6,
        server={"rcvbuf": 16384},
        timeouts_ms={"body": 300},
    ),
]

CASES: list[Case] = [
    *LEGAL,
    *MALFORMED,
    *OUT_OF_TURN,
    *SILENT,
    *HUGE,
    *CLOSES,
    *CLOSING_421,
    *SLOW,
]
assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"

# --------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------

TABLE_BEGIN = "<!-- BEGIN TABLE: rendered from tests/test_hostile.py CASES -->"
TABLE_END = "<!-- END TABLE -->"
DOC = ROOT / "docs" / "HOSTILE.md"


def expected_text(case: Case) -> str:
    if len(case.want) == 1:
        return case.want[0].text()
    return "; ".join(f"{i}: {w.text()}" for i, w in enumerate(case.want, 1))


def render_table() -> str:
    """The markdown table of every case, as docs/HOSTILE.md holds it."""
    rows = [
        "| case | the server | expected outcome | DESIGN |",
        "| --- | --- | --- | --- |",
    ]
    for case in CASES:
        cells = [f"`{case.name}`", case.server_does, expected_text(case), case.design]
        cells = [cell.replace("|", "\\|") for cell in cells]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def test_the_table_in_the_docs_is_cases():
    text = DOC.read_text()
    begin = text.index(TABLE_BEGIN) + len(TABLE_BEGIN)
    end = text.index(TABLE_END)
    assert text[begin:end].strip() == render_table(), (
        "docs/HOSTILE.md's table differs from CASES: "
        "python tests/test_hostile.py prints the table to paste"
    )


# --------------------------------------------------------------------------
# Messages and what the server must have received
# --------------------------------------------------------------------------


@functools.cache
def large_body(mib: int) -> bytes:
    """`mib` MiB of base64 lines, the same on every run."""
    raw = random.Random(mib).randbytes(mib * MIB * 3 // 4)
    text = base64.b64encode(raw)
    return b"\r\n".join(text[i : i + 76] for i in range(0, len(text), 76)) + b"\r\n"


def message_bytes(case: Case, number: int) -> bytes:
    head = (
        f"From: a@client.test\r\nSubject: hostile {case.name} {number}\r\n"
        f"Message-ID: <hostile-{number}@client.test>\r\n\r\n"
    ).encode()
    return head + (large_body(case.body_mib) if case.body_mib else b"Hello.\r\n")


def recipients(case: Case) -> list[str]:
    return [f"r{i}@server.test" for i in range(case.rcpts)]


def check_server(case: Case, server: ScriptedServer) -> None:
    """A message wanted delivered arrived once, byte-exact, and got a 2xx;
    no message wanted otherwise got a 2xx."""
    if any(w.result == "delivered" for w in case.want):
        server.wait_for_replied_messages(
            sum(w.result == "delivered" for w in case.want), timeout=10
        )
    received = server.messages
    for number, want in enumerate(case.want, 1):
        mine = [
            m for m in received if m.message_id == f"<hostile-{number}@client.test>"
        ]
        confirmed = [m for m in mine if (m.reply or b"").startswith(b"2")]
        if want.result == "delivered":
            (message,) = confirmed
            assert message.data == canonical_body(message_bytes(case, number))
            assert list(message.accepted) == recipients(case)
        else:
            assert confirmed == [], f"message {number} got a 2xx but is {want}"


def exit_status(case: Case) -> int:
    results = {w.result for w in case.want}
    if "permanent" in results:
        return 1
    return 75 if "transient" in results else 0


# --------------------------------------------------------------------------
# Memory bounds (item 5)
# --------------------------------------------------------------------------

RSS_SLACK_KIB = 8 * 1024


def loopback_client_rcvbuf() -> int:
    """SO_RCVBUF of a freshly connected loopback client socket: what the
    driver's socket starts with (net.ipv4.tcp_rmem's default)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        with socket.create_connection(listener.getsockname()[:2]) as client:
            return int(client.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


def tcp_mem_maxima() -> str:
    parts = []
    for name in ("tcp_rmem", "tcp_wmem"):
        path = pathlib.Path("/proc/sys/net/ipv4") / name
        parts.append(f"{name}={path.read_text().split()}")
    return " ".join(parts)


@pytest.fixture(scope="module")
def baseline_rss_kib(c_build, tmp_path_factory) -> int:
    """The driver's peak RSS delivering one small message to a plain server."""
    path = tmp_path_factory.mktemp("baseline") / "m.eml"
    path.write_bytes(b"From: a@client.test\r\nSubject: baseline\r\n\r\nHello.\r\n")
    with ScriptedServer(Script()) as server:
        run = run_driver(
            server.port, "--from", SENDER, "--to", "r0@server.test", str(path),
            rusage=True, timeout=60,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return int(run.rusage["maxrss_kib"])


def check_memory(server: ScriptedServer, run: DriverRun, baseline_kib: int) -> None:
    high_water = int(run.summary["reply_high_water"])
    assert 0 < high_water <= REPLY_BUFFER_MAX, (
        f"the engine's reply buffer reached {high_water} bytes; "
        f"the cap is SMTP_REPLY_BUFFER_MAX = {REPLY_BUFFER_MAX}"
    )

    (session,) = [s for s in server.wait_for_stream_end() if s.stream_end]
    assert session.stream_end == "client", (
        f"the stream ended {session.stream_end!r}: the client must close at "
        "the cap, not leave the server waiting"
    )
    sndbuf = session.socket_buffers[0]
    rcvbuf = loopback_client_rcvbuf()
    bound = REPLY_BUFFER_MAX + sndbuf + rcvbuf
    assert session.stream_sent <= bound, (
        f"the server's kernel accepted {session.stream_sent} bytes before the "
        f"client closed; the bound is the cap {REPLY_BUFFER_MAX} + the server "
        f"socket's SO_SNDBUF {sndbuf} (fixed by the test, so not autotuned) + "
        f"a loopback client socket's SO_RCVBUF {rcvbuf} = {bound} "
        f"({tcp_mem_maxima()})"
    )

    rss = int(run.rusage["maxrss_kib"])
    assert rss <= baseline_kib + RSS_SLACK_KIB, (
        f"the driver's peak RSS was {rss} KiB; a plain delivery's is "
        f"{baseline_kib} KiB, and the bound is that + {RSS_SLACK_KIB} KiB"
    )


# --------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------


def write_messages(case: Case, directory: pathlib.Path) -> list[str]:
    paths = []
    for number in range(1, len(case.want) + 1):
        path = directory / f"{number}.eml"
        path.write_bytes(message_bytes(case, number))
        paths.append(str(path))
    return paths


def tcp_max(name: str) -> int:
    """The largest buffer net.ipv4.tcp_rmem or tcp_wmem lets autotuning reach."""
    return int((pathlib.Path("/proc/sys/net/ipv4") / name).read_text().split()[2])


def check_premise(case: Case) -> None:
    """A fault meant to hit the body while the client writes it, or a body
    deadline meant to fire while it does, needs a body larger than
    everything the kernels can buffer: else the client may have handed
    over the whole body before the fault or the deadline, and the outcome
    would be decided while awaiting the reply instead."""
    if case.script.data_fault is None and "body" not in case.timeouts_ms:
        return
    # The kernel doubles a SO_RCVBUF it is given; unset, it is autotuned.
    rcvbuf = 2 * case.server["rcvbuf"] if "rcvbuf" in case.server else 0
    room = tcp_max("tcp_wmem") + (rcvbuf or tcp_max("tcp_rmem"))
    assert len(message_bytes(case, 1)) > room, (
        f"case {case.name}: the body must outgrow the client's largest send "
        f"buffer (tcp_wmem max) plus the server's receive buffer: {room} bytes"
    )


def driver_timeouts(case: Case) -> list[str]:
    timeouts = {**BASE_TIMEOUTS_MS, **case.timeouts_ms}
    return [arg for k, ms in timeouts.items() for arg in ("--timeout", f"{k}={ms}")]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_server_through_the_c_driver(
    case, tmp_path, c_build, scripted_server_factory, request
):
    check_premise(case)
    baseline = request.getfixturevalue("baseline_rss_kib") if case.huge else 0
    server = scripted_server_factory(
        case.script, per_session=case.per_session, **case.server
    )
    rcpts = recipients(case)
    run = run_driver(
        server.port,
        "--from", SENDER,
        *[arg for rcpt in rcpts for arg in ("--to", rcpt)],
        "--concurrency", "1",
        *driver_timeouts(case),
        *write_messages(case, tmp_path),
        timeout=20,  # every case ends in seconds; a hang fails, not stalls
        rusage=case.huge,
    )  # fmt: skip

    got = sorted(
        (int(o["id"]), o["rcpt"], o["result"], o["error"], int(o["code"]),
         int(o["stage"]))
        for o in run.outcomes
    )  # fmt: skip
    wanted = sorted(
        (number, rcpt, w.result, w.reason, w.code, w.stage)
        for number, w in enumerate(case.want, 1)
        for rcpt in rcpts
    )
    assert got == wanted, run.stderr
    assert run.returncode == exit_status(case), run.stderr
    check_server(case, server)
    if case.huge:
        check_memory(server, run, baseline)
    if case.check is not None:
        case.check(server, run)


PYTHON_CASES = [c for c in CASES if c.python]


@pytest.mark.parametrize("case", PYTHON_CASES, ids=[c.name for c in PYTHON_CASES])
def test_hostile_server_through_python(case, scripted_server_factory):
    check_premise(case)
    server = scripted_server_factory(
        case.script, per_session=case.per_session, **case.server
    )
    messages = [
        smtpstate.Message(SENDER, recipients(case), message_bytes(case, n), id=n)
        for n in range(1, len(case.want) + 1)
    ]
    timeouts = {**BASE_TIMEOUTS_MS, **case.timeouts_ms}
    results = smtpstate.deliver(
        messages, "127.0.0.1", server.port, concurrency=1,
        timeouts={k: ms / 1000 for k, ms in timeouts.items()},
    )  # fmt: skip

    got = [
        (result.message.id, r.recipient, r.outcome.name.lower(), r.error or "-",
         r.code, r.stage)
        for result in results
        for r in result.recipients
    ]  # fmt: skip
    wanted = [
        (number, rcpt, w.result, w.reason, w.code, w.stage)
        for number, w in enumerate(case.want, 1)
        for rcpt in recipients(case)
    ]
    assert got == wanted
    check_server(case, server)


if __name__ == "__main__":
    sys.stdout.write(render_table() + "\n")
