"""A seeded random SMTP server of our own, for accounting under load.

At every stage (banner, EHLO, HELO, MAIL, RCPT, DATA, the end of the data,
RSET, QUIT, and now and then an idle connection) it randomly accepts,
refuses with a 4xx (421 among them, which closes), refuses with a 5xx, or
drops the connection, and it may first wait a few milliseconds.  It offers
PIPELINING and answers pipelined commands in order.  At the end of the
data it may also send its 250 and drop the connection at once, with a FIN
or a reset: the one case where a client may not learn that its message was
taken.

It logs every decision as a JSON line, and above all each message it took
at the end of the data, with its Message-ID, the recipients it had
accepted and whether it dropped the connection right after that 250.  It
also logs what the client did against the protocol (a command sent before
the reply it must wait for, a command out of sequence).

Every connection draws from its own generator, seeded with the run's seed
and the connection's number, so a connection that sees the same commands
makes the same decisions.  The seed is printed on the first line of
standard output and written on the log's first line.

Run as a program (loopback only)::

    python tests/random_server.py --seed 42 --log /tmp/server.jsonl

It prints ``random_server port=P seed=S`` once it listens and stops on
SIGTERM or SIGINT, or after ``--max-seconds``.  `RandomServer` starts it as
a child process for the tests and reads its log back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

HOST = "127.0.0.1"
LINE_MAX = 4096

# The replies a verdict may take, per stage: (accept, 4xx, 5xx).  A 421
# among the 4xx closes the connection after it, as a server shutting down.
REPLIES: dict[str, tuple[list[str], list[str], list[str]]] = {
    "banner": (
        ["220 random.test ESMTP"],
        ["421 4.3.2 too busy, closing", "450 4.3.2 not now"],
        ["554 5.7.1 no service for you"],
    ),
    "ehlo": (
        ["250-random.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10000000"],
        ["421 4.3.2 closing", "451 4.3.0 EHLO later"],
        ["502 5.5.1 no EHLO here", "550 5.7.1 go away"],
    ),
    "helo": (
        ["250 random.test"],
        ["421 4.3.2 closing", "451 4.3.0 HELO later"],
        ["550 5.7.1 no HELO either"],
    ),
    "mail": (
        ["250 2.1.0 sender ok"],
        ["421 4.3.2 closing", "451 4.3.0 sender later", "452 4.3.1 no room"],
        ["550 5.7.1 sender refused", "553 5.1.8 bad sender"],
    ),
    "rcpt": (
        ["250 2.1.5 recipient ok", "251 2.1.5 will forward"],
        [
            "421 4.3.2 closing",
            "450 4.2.1 mailbox busy",
            "451 4.3.0 later",
            "452 4.5.3 too many recipients",
        ],
        ["550 5.1.1 no such user", "553 5.1.3 bad address", "554 5.7.1 denied"],
    ),
    "data": (
        ["354 go ahead"],
        ["421 4.3.2 closing", "451 4.3.0 no data now"],
        ["554 5.5.1 no data for you"],
    ),
    "eod": (
        ["250 2.0.0 queued"],
        ["421 4.3.2 closing", "451 4.3.0 not stored", "452 4.3.1 disk full"],
        ["550 5.7.1 content refused", "552 5.3.4 too big", "554 5.6.0 broken"],
    ),
    "rset": (
        ["250 2.0.0 reset"],
        ["421 4.3.2 closing", "451 4.3.0 no reset"],
        ["502 5.5.1 no RSET"],
    ),
    "quit": (
        ["221 2.0.0 bye"],
        ["421 4.3.2 closing"],
        ["554 5.3.0 bye anyway"],
    ),
    "idle": ([], ["421 4.4.2 idle too long, closing"], []),
}

STAGES = tuple(REPLIES)

# A session sees a banner, EHLO or QUIT once, a RSET or HELO rarely, and
# MAIL, RCPT, DATA and the end of the data once per message: the rare
# stages draw their faults and delays this many times as often, so a run
# of thousands of messages meets every fault at every stage.
STAGE_SCALE = {"banner": 2.0, "ehlo": 4.0, "helo": 6.0, "rset": 6.0, "quit": 6.0}


@dataclass(frozen=True)
class Faults:
    """How often each verdict is drawn at a stage (the rest accept)."""

    tempfail: float = 0.02
    permfail: float = 0.02
    drop: float = 0.01
    delay: float = 0.03  # independent of the verdict
    max_delay_ms: int = 15
    drop_after_250: float = 0.04  # at the end of the data, after a 250
    drop_in_body: float = 0.005  # after the 354, at the body's first bytes
    data_354_unwanted: float = 0.3  # DATA with no recipient: 354 anyway
    idle_421: float = 0.05  # per transaction: a 421 if the client idles
    idle_ms: int = 1
    old_server: float = 0.25  # per connection: EHLO unknown (502), HELO then
    multiline: float = 0.2  # a refusal spread over two lines
    split: float = 0.3  # a delayed reply: its first bytes before the wait


@dataclass
class Decision:
    verdict: str  # accept, tempfail, permfail or drop
    reply: str = ""
    delay_ms: int = 0
    close: bool = False  # after the reply (a 421, or the 250 then drop)
    sent: int = 0  # bytes of the reply sent before its delay


def _reset_socket(transport: asyncio.BaseTransport) -> None:
    """Makes the coming close a reset instead of a FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )


_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]*>)", re.I | re.M)


def message_id(body: bytes) -> str | None:
    """The Message-ID of the header section, as sent."""
    end = body.find(b"\r\n\r\n")
    match = _MESSAGE_ID.search(body if end < 0 else body[: end + 2])
    return match.group(1).decode("ascii", "replace") if match else None


class Log:
    """JSON lines, buffered; written out at the end or when flushed."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, **record: Any) -> None:
        if self._out.closed:
            return  # a callback that ran after the end
        self._out.write(json.dumps(record, separators=(",", ":")) + "\n")

    def flush(self) -> None:
        self._out.flush()


class Session(asyncio.Protocol):
    """One connection: commands in order, one decision per reply."""

    def __init__(self, server: Server, number: int) -> None:
        self.server = server
        self.number = number
        self.faults = server.faults
        self.rng = random.Random(f"{server.seed}/{number}")
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.out: list[bytes] = []
        self.waiting = False  # a delayed reply is pending: commands wait
        self.closed = False
        self.in_body = False
        self.drop_in_body = False
        self.body_scan = 0
        self.greeted = False
        self.pipelining = False
        self.mail = False
        self.rcpts: list[str] = []
        self.idle_timer: asyncio.TimerHandle | None = None
        self.old_server = self.rng.random() < self.faults.old_server

    # ---- logging -------------------------------------------------------

    def log(self, **record: Any) -> None:
        self.server.log.write(c=self.number, **record)

    def violation(self, what: str) -> None:
        self.log(ev="violation", what=what)

    # ---- decisions -----------------------------------------------------

    def decide(self, stage: str) -> Decision:
        """Draws a verdict for a reply at `stage`."""
        rng, f = self.rng, self.faults
        scale = STAGE_SCALE.get(stage, 1.0)
        accepts, temps, perms = REPLIES[stage]
        delay = 0
        if rng.random() < f.delay * scale:
            delay = rng.randint(1, f.max_delay_ms)
        roll = rng.random()
        if roll < f.drop * scale:
            return Decision("drop", delay_ms=delay)
        roll -= f.drop * scale
        if roll < f.tempfail * scale and temps:
            reply = rng.choice(temps)
            return Decision(
                "tempfail", self._lines(reply), delay, reply.startswith("421")
            )
        roll -= f.tempfail * scale
        if roll < f.permfail * scale and perms:
            return Decision("permfail", self._lines(rng.choice(perms)), delay)
        return Decision("accept", rng.choice(accepts), delay)

    def _lines(self, reply: str) -> str:
        """Now and then a refusal in two lines, as some servers send."""
        if self.rng.random() >= self.faults.multiline:
            return reply
        return f"{reply[:3]}-{reply[4:]}\r\n{reply[:3]} (more text)"

    def answer(
        self,
        stage: str,
        decision: Decision,
        then: Callable[[], None] | None = None,
        **extra: Any,
    ) -> None:
        """Logs the decision and sends its reply (or drops), after its delay
        if it has one; `then` runs once the reply is out."""
        code = int(decision.reply[:3]) if decision.reply else 0
        self.log(
            st=stage, v=decision.verdict, code=code, delay=decision.delay_ms, **extra
        )
        if decision.delay_ms:
            self.waiting = True
            if decision.reply and self.rng.random() < self.faults.split:
                decision.sent = self.rng.randint(1, len(decision.reply))
                self.out.append(decision.reply[: decision.sent].encode())
            self.flush()
            loop = asyncio.get_running_loop()
            loop.call_later(
                decision.delay_ms / 1000, self._deliver, stage, decision, then
            )
            return
        self._deliver(stage, decision, then)

    def _deliver(
        self, stage: str, decision: Decision, then: Callable[[], None] | None
    ) -> None:
        if self.closed:
            return
        if decision.verdict == "drop":
            self.drop("reset" if self.rng.random() < 0.5 else "fin")
            return
        self.check_waited(stage)
        self.out.append(decision.reply[decision.sent :].encode() + b"\r\n")
        if then is not None:
            then()
        if decision.close:
            self.drop("fin", "close")
            return
        if self.waiting:
            self.waiting = False
            self.process()

    def check_waited(self, stage: str) -> None:
        """A client must wait for the reply to the banner, EHLO, HELO, DATA
        and QUIT, and for every reply without PIPELINING: bytes already
        here when the reply goes out were sent before it."""
        if not self.buf:
            return
        if stage in ("banner", "ehlo", "helo", "data", "quit") or (
            not self.pipelining and stage != "eod"
        ):
            self.violation(f"bytes before the reply to {stage}")

    def drop(self, how: str, event: str = "drop") -> None:
        """Closes now: what is queued goes first, then a FIN or a reset.
        `event` is "close" after a 421 or QUIT's reply, else "drop"."""
        if self.closed or self.transport is None:
            return
        self.flush()
        self.closed = True
        self.log(ev=event, how=how)
        if how == "reset":
            _reset_socket(self.transport)
            self.transport.abort()
        else:
            self.transport.close()

    def flush(self) -> None:
        if self.out and self.transport is not None and not self.closed:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    # ---- asyncio -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.sessions[self.number] = self
        self.log(ev="open")
        decision = self.decide("banner")
        self.answer("banner", decision, self._greeted)
        self.flush()

    def _greeted(self) -> None:
        self.greeted = True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.log(ev="closed", by="client")
        self.closed = True
        self.cancel_idle()
        self.server.sessions.pop(self.number, None)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.cancel_idle()
        self.buf += data
        if self.in_body and self.drop_in_body:
            self.log(st="body", v="drop", code=0, delay=0)
            self.drop("reset" if self.rng.random() < 0.5 else "fin")
            return
        if not self.waiting:
            self.process()

    def process(self) -> None:
        while not self.waiting and not self.closed and self.buf:
            if self.in_body:
                if not self.end_of_data():
                    break
                continue
            nl = self.buf.find(b"\n")
            if nl < 0:
                if len(self.buf) > LINE_MAX:
                    self.violation("command line too long")
                    self.drop("fin")
                break
            line = bytes(self.buf[: nl + 1])
            del self.buf[: nl + 1]
            self.command(line.rstrip(b"\r\n").decode("utf-8", "replace"))
        self.flush()
        if not self.waiting and not self.closed and not self.buf:
            self.maybe_idle()

    # ---- idle 421 ------------------------------------------------------

    def maybe_idle(self) -> None:
        """Between transactions, now and then: a 421 if nothing comes."""
        if (
            self.idle_timer is not None
            or self.mail
            or not self.greeted
            or self.rng.random() >= self.faults.idle_421
        ):
            return
        loop = asyncio.get_running_loop()
        self.idle_timer = loop.call_later(self.faults.idle_ms / 1000, self.idle)

    def cancel_idle(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def idle(self) -> None:
        self.idle_timer = None
        if self.closed or self.waiting or self.buf or self.in_body:
            return
        self.log(st="idle", v="tempfail", code=421, delay=0)
        self.out.append(REPLIES["idle"][1][0].encode() + b"\r\n")
        self.drop("fin", "close")

    # ---- commands ------------------------------------------------------

    def command(self, line: str) -> None:
        verb = line[:4].upper()
        arg = line[5:] if len(line) > 5 else ""
        if verb == "EHLO":
            self.hello("ehlo")
        elif verb == "HELO":
            self.hello("helo")
        elif verb == "MAIL":
            self.mail_from()
        elif verb == "RCPT":
            self.rcpt_to(arg)
        elif verb == "DATA":
            self.data()
        elif verb == "RSET":
            self.answer("rset", self.decide("rset"), self.reset)
        elif verb == "QUIT":
            decision = self.decide("quit")
            decision.close = True
            self.answer("quit", decision)
        else:
            self.violation(f"unknown command {line[:40]!r}")
            self.answer("unknown", Decision("permfail", "500 5.5.2 unknown command"))

    def hello(self, stage: str) -> None:
        if not self.greeted:
            self.violation(f"{stage.upper()} after a refused banner")
        decision = self.decide(stage)
        if stage == "ehlo" and self.old_server:
            decision = Decision("permfail", "502 5.5.2 EHLO not known", 0)
        if decision.verdict == "accept":
            self.reset()
            self.pipelining = stage == "ehlo"
        self.answer(stage, decision)

    def reset(self) -> None:
        self.mail = False
        self.rcpts = []

    def out_of_sequence(self, stage: str, what: str, reply: str) -> None:
        """A command the session's state refuses.  Under PIPELINING it is
        the client's due after an earlier refusal in the same group;
        without PIPELINING the client should have known better."""
        if not self.pipelining:
            self.violation(what)
        self.answer(stage, Decision("permfail", reply), sequence=what)

    def mail_from(self) -> None:
        if not self.greeted:
            self.violation("MAIL after a refused banner")
        if self.mail:
            self.violation("MAIL inside a transaction")
            self.answer("mail", Decision("permfail", "503 5.5.1 nested MAIL"))
            return
        decision = self.decide("mail")
        if decision.verdict == "accept":
            self.mail = True
            self.rcpts = []
        self.answer("mail", decision)

    def rcpt_to(self, arg: str) -> None:
        if not self.mail:
            self.out_of_sequence("rcpt", "RCPT without MAIL", "503 5.5.1 need MAIL")
            return
        match = re.search(r"<([^>]*)>", arg)
        rcpt = match.group(1) if match else arg
        decision = self.decide("rcpt")
        if decision.verdict == "accept":
            self.rcpts.append(rcpt)
        self.answer("rcpt", decision, rcpt=rcpt)

    def data(self) -> None:
        if not self.mail:
            self.out_of_sequence("data", "DATA without MAIL", "503 5.5.1 need MAIL")
            return
        unwanted = not self.rcpts
        if unwanted and not self.pipelining:
            self.violation("DATA with no recipient accepted")
        decision = self.decide("data")
        if unwanted and decision.verdict == "accept":
            if self.rng.random() >= self.faults.data_354_unwanted:
                decision = Decision("permfail", "554 5.5.1 no valid recipients")
        self.drop_in_body = (
            decision.verdict == "accept"
            and self.rng.random() < self.faults.drop_in_body
        )
        self.answer(
            "data",
            decision,
            self._start_body if decision.verdict == "accept" else None,
            rcpts=len(self.rcpts),
        )

    def _start_body(self) -> None:
        self.in_body = True
        self.body_scan = 0

    def end_of_data(self) -> bool:
        """Takes a complete body from the buffer; False while it is not all
        here.  The body ends at CRLF.CRLF, or at once with a lone dot."""
        if self.buf.startswith(b".\r\n"):
            body, end = b"", 3
        else:
            at = self.buf.find(b"\r\n.\r\n", self.body_scan)
            if at < 0:
                self.body_scan = max(0, len(self.buf) - 4)
                return False
            body, end = bytes(self.buf[: at + 2]), at + 5
        del self.buf[:end]
        self.in_body = False
        self.drop_in_body = False
        rcpts = self.rcpts
        mid = message_id(body)
        self.reset()
        if not rcpts:
            self.answer(
                "eod",
                Decision("permfail", "554 5.5.1 no valid recipients"),
                mid=mid,
                rcpts=[],
            )
            return True
        decision = self.decide("eod")
        after = None
        if decision.verdict == "accept":
            if self.rng.random() < self.faults.drop_after_250:
                decision.close = True
                after = "reset" if self.rng.random() < 0.5 else "fin"

            def taken() -> None:
                self.log(
                    ev="accepted", mid=mid, rcpts=rcpts, drop=after, size=len(body)
                )
                if after == "reset":
                    # The 250 goes out first; then the reset, not a FIN.
                    self.flush()
                    self.drop("reset")

            self.answer("eod", decision, taken, mid=mid, rcpts=rcpts)
            return True
        self.answer("eod", decision, mid=mid, rcpts=rcpts)
        return True


class Server:
    """The listening socket and its sessions."""

    def __init__(self, seed: int, faults: Faults, log: Log) -> None:
        self.seed = seed
        self.faults = faults
        self.log = log
        self.sessions: dict[int, Session] = {}
        self._numbers = iter(range(1, 1 << 62))

    def session(self) -> Session:
        return Session(self, next(self._numbers))


async def serve(args: argparse.Namespace) -> None:
    faults = Faults(
        **{
            name: getattr(args, name)
            for name in Faults.__dataclass_fields__
            if getattr(args, name, None) is not None
        }
    )
    with open(args.log, "w", buffering=1 << 20) as out:
        log = Log(out)
        server = Server(args.seed, faults, log)
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(
            server.session, HOST, args.port, backlog=1024, reuse_address=True
        )
        port = listener.sockets[0].getsockname()[1]
        log.write(ev="start", seed=args.seed, port=port, faults=faults.__dict__)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"random_server port={port} seed={args.seed}", flush=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), args.max_seconds)
        listener.close()
        for session in list(server.sessions.values()):
            if session.transport is not None and not session.closed:
                session.closed = True
                session.log(ev="closed", by="stop")
                session.transport.abort()
        log.write(ev="stop", timed_out=not stop.is_set())
        log.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--seed",
        type=int,
        default=int(os.environ.get("RANDOM_SERVER_SEED", "0"))
        or random.SystemRandom().randrange(1, 1 << 31),
        help="the run's seed (default: $RANDOM_SERVER_SEED, else random)",
    )
    parser.add_argument("--log", required=True, help="JSON lines written here")
    parser.add_argument("--max-seconds", type=float, default=600)
    for name, spec in Faults.__dataclass_fields__.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=type(spec.default) if isinstance(spec.default, int) else float,
            default=None,
        )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    asyncio.run(serve(parse_args(argv)))
    return 0


# --------------------------------------------------------------------------
# Starting it from a test, and reading its log
# --------------------------------------------------------------------------


@dataclass
class Accepted:
    """A message the server took at the end of its data."""

    connection: int
    message_id: str | None
    recipients: list[str]
    dropped: str | None  # "fin" or "reset" right after the 250, else None


@dataclass
class ServerLog:
    """The log of one run, parsed."""

    seed: int
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accepted(self) -> list[Accepted]:
        return [
            Accepted(r["c"], r["mid"], r["rcpts"], r["drop"])
            for r in self.records
            if r.get("ev") == "accepted"
        ]

    @property
    def violations(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("ev") == "violation"]

    def verdicts(self) -> dict[str, set[str]]:
        """Per stage, the verdicts drawn at least once (with "delay")."""
        seen: dict[str, set[str]] = {}
        for r in self.records:
            if "st" in r:
                kinds = seen.setdefault(r["st"], set())
                kinds.add(r["v"])
                if r["delay"]:
                    kinds.add("delay")
        return seen

    def connections(self) -> int:
        return sum(1 for r in self.records if r.get("ev") == "open")

    def max_open(self) -> int:
        """The most connections the server held open at once."""
        now = most = 0
        for r in self.records:
            event = r.get("ev")
            if event == "open":
                now += 1
                most = max(most, now)
            elif event in ("drop", "close", "closed"):
                now -= 1
        return most


def read_log(path: Path) -> ServerLog:
    records = [json.loads(line) for line in path.read_text().splitlines() if line]
    if not records or records[0].get("ev") != "start":
        raise ValueError(f"{path}: no start record")
    return ServerLog(records[0]["seed"], records)


class RandomServer:
    """The server as a child process: `start()`, `stop()`, then `log()`.

    A process of its own keeps its work off the test's interpreter, whose
    lock the Python binding's loop holds between C calls."""

    def __init__(self, log_path: Path, seed: int | None = None, **faults: Any):
        self.log_path = log_path
        self.seed = seed
        self.faults = faults
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def start(self, max_seconds: float = 300) -> RandomServer:
        cmd = [sys.executable, __file__, "--log", str(self.log_path)]
        cmd += ["--max-seconds", str(max_seconds)]
        if self.seed is not None:
            cmd += ["--seed", str(self.seed)]
        for name, value in self.faults.items():
            cmd += ["--" + name.replace("_", "-"), str(value)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else ""
        fields = dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
        if "port" not in fields:
            self.stop()
            raise RuntimeError(f"random_server did not start: {line!r}")
        self.port = int(fields["port"])
        self.seed = int(fields["seed"])
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def log(self) -> ServerLog:
        return read_log(self.log_path)

    def __enter__(self) -> RandomServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
