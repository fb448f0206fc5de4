"""SMTP servers the tests talk to over loopback, started and stopped per test.

Two servers live here:

- `SmtpSink` runs Postfix's ``smtp-sink`` (Debian package ``postfix``, installed
  by ``scripts/install-test-deps.sh``) as a child process: fast, offers
  PIPELINING, counts what it received.  It is for counting and speed; its dump
  files are not byte-exact (see the class docstring).
- `ScriptedServer` is an SMTP server in a background thread whose every reply
  comes from a `Script`: per stage a line, raw bytes, or a fault (`CLOSE`,
  `SILENCE`, `HANG_AFTER`, `DELAY`, `CLOSE_AFTER`, `RESET`, `STOP_READING`),
  or a `Stream` too large to hold in memory.  It records what crossed the
  wire byte for byte (streams are counted, not kept): commands, DATA
  sections, envelopes and a timestamped transcript.  A script can also send
  every reply one byte at a time, end reply lines with a bare LF, read at a
  fixed slow pace, or act when a data section reaches a size.

Both listen on loopback only (127.0.0.1, and ::1 on request) and every wait is
bounded in time.  Times are `time.monotonic()` values.
"""

from __future__ import annotations

import collections
import contextlib
import email.parser
import email.policy
import heapq
import itertools
import os
import pwd
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypeAlias

__all__ = [
    "CLOSE",
    "CLOSE_AFTER",
    "DELAY",
    "HANG_AFTER",
    "RESET",
    "SILENCE",
    "STOP_READING",
    "SMTP_SINK",
    "SMTP_SOURCE",
    "Close",
    "CloseAfter",
    "Delay",
    "HangAfter",
    "ReceivedMessage",
    "Reset",
    "Script",
    "ScriptError",
    "ScriptedServer",
    "SessionRecord",
    "Silence",
    "SmtpSink",
    "StopReading",
    "Stream",
    "TranscriptEntry",
    "free_port",
    "smtp_sink_available",
]

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"

CRLF = b"\r\n"


def free_port(host: str = "127.0.0.1") -> int:
    """Returns a TCP port on `host` that was free a moment ago.

    Another process may take it before the caller binds it; `SmtpSink`
    retries with a new port when that happens.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------
# Faults and replies
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Close:
    """Close the connection without a reply (bytes already queued go first)."""


@dataclass(frozen=True)
class Silence:
    """Never answer again; the connection stays open until the client closes
    it or the server stops.  What the client sends is still recorded."""


@dataclass(frozen=True)
class HangAfter:
    """Send `reply`, then behave as `SILENCE`."""

    reply: Reply


@dataclass(frozen=True)
class Delay:
    """Wait `seconds`, then send `reply` (which may itself be a fault).

    Commands that arrive meanwhile wait their turn, so replies stay in order.
    """

    seconds: float
    reply: Reply


@dataclass(frozen=True)
class CloseAfter:
    """Send `reply`, then close the connection (e.g. a 421)."""

    reply: Reply


@dataclass(frozen=True)
class Reset:
    """Abort the connection: close with SO_LINGER 0, so the kernel sends a
    TCP RST and drops whatever is queued either way."""


@dataclass(frozen=True)
class StopReading:
    """Stop reading the socket and never answer again: what the client sends
    piles up in the kernel's buffers until they are full.  The connection
    stays open until the server stops."""


@dataclass(frozen=True)
class Stream:
    """A reply too large to hold: `head`, then `fill` repeated until `size`
    bytes of it have gone, then `tail`.

    It is generated in chunks and written with non-blocking sends as the
    socket takes them, so memory stays small whatever `size` is.  The bytes
    the kernel accepted are counted (`SessionRecord.stream_sent`), not kept
    in the transcript.  The stream ends when everything went ("done"), when
    a send fails because the client closed or reset ("client"), or when the
    kernel accepted nothing for `stall` seconds ("stalled": the client
    stopped reading; the server then closes).  `SessionRecord.stream_end`
    says which.
    """

    size: int
    fill: bytes = b"x"
    head: bytes = b""
    tail: bytes = b"\r\n"
    stall: float = 3.0


CLOSE = Close()
RESET = Reset()
SILENCE = Silence()
STOP_READING = StopReading()
HANG_AFTER = HangAfter
DELAY = Delay
CLOSE_AFTER = CloseAfter

# A reply: a str is one line, sent with CRLF appended (put "\r\n" inside it
# for a multi-line reply); bytes are sent exactly as given; a list or tuple is
# a sequence of parts sent in order, so `["250-a", DELAY(0.2, "250 b")]`
# splits one reply across two writes, and `["250 ok", DELAY(0.1, "250 more")]`
# sends an extra, unsolicited reply after the one that was due.
Reply: TypeAlias = (
    "str | bytes | Close | Silence | HangAfter | Delay | CloseAfter | Reset"
    " | StopReading | Stream | Sequence[Reply]"
)
LineReply: TypeAlias = "Reply | Callable[[bytes], Reply]"
MailReply: TypeAlias = "Reply | Callable[[str], Reply]"
RcptReply: TypeAlias = "Reply | Callable[[str, int], Reply]"
MessageReply: TypeAlias = "Reply | Callable[[ReceivedMessage], Reply]"


class ScriptError(RuntimeError):
    """A script callable (or the server loop itself) raised; the session it
    served was closed.  `stop()` raises this so the test sees it."""


def _flatten(
    reply: Reply, out: list[tuple[str, object]], line_end: bytes = CRLF
) -> None:
    """Turns a reply into a list of actions: send, sleep, silence, close,
    reset, stop reading, stream.  A str's line ends become `line_end`."""
    if isinstance(reply, str):
        out.append(("send", reply.encode("utf-8").replace(CRLF, line_end) + line_end))
    elif isinstance(reply, bytes | bytearray):
        out.append(("send", bytes(reply)))
    elif isinstance(reply, Close):
        out.append(("close", None))
    elif isinstance(reply, Silence):
        out.append(("silence", None))
    elif isinstance(reply, Reset):
        out.append(("reset", None))
    elif isinstance(reply, StopReading):
        out.append(("stop_reading", None))
    elif isinstance(reply, Stream):
        out.append(("stream", reply))
    elif isinstance(reply, HangAfter):
        _flatten(reply.reply, out, line_end)
        out.append(("silence", None))
    elif isinstance(reply, CloseAfter):
        _flatten(reply.reply, out, line_end)
        out.append(("close", None))
    elif isinstance(reply, Delay):
        out.append(("sleep", float(reply.seconds)))
        _flatten(reply.reply, out, line_end)
    elif isinstance(reply, list | tuple):
        for part in reply:
            _flatten(part, out, line_end)
    else:
        raise TypeError(f"not a reply: {reply!r}")


# --------------------------------------------------------------------------
# The script
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    """What a `ScriptedServer` answers, stage by stage.

    Each stage is a `Reply` (str, bytes, a fault, or a sequence of those) or a
    callable returning one; `None` means "what a plain, correct server says".
    The callables receive:

    ======================  ==============================================
    ``ehlo``, ``helo``,     the command line as received (bytes, with its
    ``data``, ``rset``,     line end)
    ``noop``, ``quit``,
    ``unknown``,
    ``commands[VERB]``
    ``mail``                the reverse-path, without angle brackets
    ``rcpt``                the recipient and its 0-based index among the
                            RCPT commands of this transaction
    ``end_of_data``         the `ReceivedMessage` just completed
    ======================  ==============================================

    A reply to DATA that starts with ``354`` switches the session to reading
    the data section.  A reply to RCPT that starts with ``2`` counts the
    recipient as accepted; a reply to MAIL that starts with ``2`` starts the
    transaction.  After QUIT's reply the server closes the connection.

    `pipelining` decides whether EHLO offers PIPELINING; either way, commands
    that arrive together are answered one by one in order, and each command
    records whether it was pipelined (`SessionRecord.pipelined`).
    `commands` maps other verbs (``"STARTTLS"``, ``"VRFY"``) to replies; any
    verb not handled elsewhere gets `unknown`.

    `idle_421_after=N`: once a session has received N messages, when it has
    had no input for `idle_421_delay` seconds and owes no reply, the server
    sends `idle_421_reply` and closes (a server closing an idle connection).

    Hostile servers:

    - `byte_delay`: every reply goes out one byte per write, this many
      seconds apart (each byte its own TCP segment).
    - `line_end`: what ends each line of a str reply (``b"\n"`` for bare
      LF); bytes replies are sent as given.
    - `data_fault=(n, reply)`: once a data section holds `n` bytes, `reply`
      is sent (or done: `RESET`, `CLOSE`, `STOP_READING`, a 421 with
      `CLOSE_AFTER`), while the client is still writing the body.
    - `read_pace=(n, seconds)`: read at most `n` bytes every `seconds`, a
      slow reader that keeps making progress (pair it with the server's
      `rcvbuf` so the client's writes block).
    """

    hostname: str = "scripted.test"
    banner: Reply | None = None
    ehlo: LineReply | None = None
    helo: LineReply | None = None
    mail: MailReply | None = None
    rcpt: RcptReply | None = None
    data: LineReply | None = None
    end_of_data: MessageReply | None = None
    rset: LineReply | None = None
    noop: LineReply | None = None
    quit: LineReply | None = None
    unknown: LineReply | None = None
    commands: Mapping[str, LineReply] = field(default_factory=dict)
    pipelining: bool = True
    ehlo_keywords: tuple[str, ...] = ("8BITMIME", "ENHANCEDSTATUSCODES")
    idle_421_after: int | None = None
    idle_421_delay: float = 0.1
    idle_421_reply: Reply = "421 4.4.2 scripted.test Error: timeout exceeded"
    byte_delay: float | None = None
    line_end: bytes = CRLF
    data_fault: tuple[int, Reply] | None = None
    read_pace: tuple[int, float] | None = None

    def ehlo_lines(self) -> list[str]:
        """The default EHLO reply: hostname, then PIPELINING when offered,
        then `ehlo_keywords`."""
        keywords = (["PIPELINING"] if self.pipelining else []) + list(
            self.ehlo_keywords
        )
        lines = [self.hostname, *keywords]
        return [
            f"250{'-' if i < len(lines) - 1 else ' '}{text}"
            for i, text in enumerate(lines)
        ]


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class TranscriptEntry:
    """One read from (`"C"`) or write to (`"S"`) the client, as bytes."""

    at: float
    direction: str
    data: bytes


_UNSTUFF = re.compile(rb"(\A|\r\n)\.")


def _message_id(content: bytes) -> str | None:
    """The unfolded Message-ID header of a message, or None."""
    parser = email.parser.BytesParser(policy=email.policy.compat32)
    value = parser.parsebytes(content, headersonly=True).get("Message-ID")
    return None if value is None else " ".join(str(value).split())


def unstuff(raw: bytes) -> bytes:
    """Removes the leading dot of each line that starts with one, where a
    line starts at the beginning or after CRLF (bare CR or LF start none)."""
    return _UNSTUFF.sub(rb"\1", raw)


@dataclass
class ReceivedMessage:
    """One data section that ended with CRLF "." CRLF.

    `raw_data` is what crossed the wire between the 354 and the final
    ".\\r\\n", dot-stuffed, line ends untouched; `data` is it un-stuffed (what a
    server stores).  `reply` is the reply sent to the end of data (None until
    sent, and if it never was).
    """

    session: int
    index: int
    mail_from: str | None
    rcpts: tuple[str, ...]
    accepted: tuple[str, ...]
    raw_data: bytes
    received_at: float
    reply: bytes | None = None

    @property
    def data(self) -> bytes:
        return unstuff(self.raw_data)

    @property
    def message_id(self) -> str | None:
        """The Message-ID header of `data` (unfolded), if any."""
        return _message_id(self.data)


class SessionRecord:
    """What one connection saw.  The server thread fills it; every accessor
    returns a snapshot taken under the server's lock."""

    def __init__(self, lock: threading.Condition, index: int, peer: tuple) -> None:
        self._lock = lock
        self.index = index
        self.peer = peer
        self.opened_at = time.monotonic()
        self._closed_at: float | None = None
        self._close_reason: str | None = None
        self._commands: list[bytes] = []
        self._pipelined: list[bool] = []
        self._replies: list[bytes] = []
        self._transcript: list[TranscriptEntry] = []
        self._messages: list[ReceivedMessage] = []
        self._partial_data: bytes | None = None
        self._stream_sent = 0
        self._stream_end: str | None = None
        self.socket_buffers: tuple[int, int] = (0, 0)

    def __repr__(self) -> str:
        return (
            f"<SessionRecord {self.index} peer={self.peer} "
            f"commands={len(self._commands)} messages={len(self._messages)} "
            f"closed={self._close_reason}>"
        )

    @property
    def commands(self) -> tuple[bytes, ...]:
        """Each command line as received, line end included, in order."""
        with self._lock:
            return tuple(self._commands)

    @property
    def verbs(self) -> tuple[str, ...]:
        """The upper-cased first word of each command."""
        return tuple(_verb(line) for line in self.commands)

    @property
    def pipelined(self) -> tuple[bool, ...]:
        """Per command: did it arrive before the reply to the one before it
        was sent (for the first command: before the banner)?"""
        with self._lock:
            return tuple(self._pipelined)

    @property
    def replies(self) -> tuple[bytes, ...]:
        """Each reply as sent, banner first (parts of one reply joined)."""
        with self._lock:
            return tuple(self._replies)

    @property
    def transcript(self) -> tuple[TranscriptEntry, ...]:
        """Both directions, each read and write with its time."""
        with self._lock:
            return tuple(self._transcript)

    @property
    def received(self) -> bytes:
        """Every byte the client sent, joined."""
        return b"".join(e.data for e in self.transcript if e.direction == "C")

    @property
    def sent(self) -> bytes:
        """Every byte the server sent, joined."""
        return b"".join(e.data for e in self.transcript if e.direction == "S")

    @property
    def messages(self) -> tuple[ReceivedMessage, ...]:
        with self._lock:
            return tuple(self._messages)

    @property
    def partial_data(self) -> bytes | None:
        """The data section received when the connection closed inside it."""
        with self._lock:
            return self._partial_data

    @property
    def closed_at(self) -> float | None:
        with self._lock:
            return self._closed_at

    @property
    def close_reason(self) -> str | None:
        """None while open; then "client" (EOF or reset from the client),
        "server" (QUIT, a fault, a limit) or "stop" (the server stopped)."""
        with self._lock:
            return self._close_reason

    @property
    def stream_sent(self) -> int:
        """Bytes of `Stream` replies the kernel accepted from the server."""
        with self._lock:
            return self._stream_sent

    @property
    def stream_end(self) -> str | None:
        """How the last `Stream` ended: None while none has; "done",
        "client" (a send failed: the client closed or reset), "stalled"
        (nothing accepted for its `stall` seconds) or "stop"."""
        with self._lock:
            return self._stream_end


def _verb(line: bytes) -> str:
    words = line.split(None, 1)
    return words[0].decode("ascii", "replace").upper() if words else ""


def _address(line: bytes) -> str:
    """The address of "MAIL FROM:<a> ..." or "RCPT TO:<a> ...", unbracketed."""
    colon = line.find(b":")
    rest = line[colon + 1 :].strip() if colon >= 0 else b""
    if rest.startswith(b"<"):
        end = rest.find(b">")
        value = rest[1:end] if end >= 0 else rest[1:]
    else:
        value = rest.split(None, 1)[0] if rest else b""
    return value.decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------
# The scripted server
# --------------------------------------------------------------------------

_MAX_LINE = 64 * 1024
_READ_SIZE = 256 * 1024
_STREAM_CHUNK = 64 * 1024


class _StreamPump:
    """The progress of one `Stream`: yields its bytes chunk by chunk."""

    def __init__(self, stream: Stream) -> None:
        if not stream.fill:
            raise ValueError("Stream.fill must not be empty")
        self.stream = stream
        repeat = max(1, _STREAM_CHUNK // len(stream.fill))
        self.block = memoryview(stream.fill * repeat)
        self.parts = self._parts()
        self.pending = memoryview(b"")
        self.last_progress = time.monotonic()

    def _parts(self) -> Iterator[memoryview]:
        # The head goes out with the first block, as one write.
        first = min(self.stream.size, len(self.block))
        yield memoryview(self.stream.head + bytes(self.block[:first]))
        left = self.stream.size - first
        while left > 0:
            part = self.block[: min(left, len(self.block))]
            left -= len(part)
            yield part
        yield memoryview(self.stream.tail)

    def chunk(self) -> memoryview | None:
        """What is to be sent next; None at the end."""
        while not self.pending:
            part = next(self.parts, None)
            if part is None:
                return None
            self.pending = part
        return self.pending

    def sent(self, n: int) -> None:
        self.pending = self.pending[n:]
        self.last_progress = time.monotonic()


class _Connection:
    """The server side of one SMTP session: input parsing, the reply queue
    and the transaction.  Runs only on the server thread."""

    def __init__(
        self,
        server: ScriptedServer,
        sock: socket.socket,
        record: SessionRecord,
        script: Script,
    ) -> None:
        self.server = server
        self.sock = sock
        self.record = record
        self.script = script
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.rx_total = 0
        self.consumed = 0
        self.rx_at_last_reply = 0
        self.actions: collections.deque[tuple[str, object]] = collections.deque()
        self.waiting = False
        self.silent = False
        self.closing = False
        self.closed = False
        self.hook: Callable[[bytes, str], None] | None = None
        self.reply_sent = bytearray()
        self.in_data = False
        self.data = bytearray()
        self.scan_from = 0
        self.mail_from: str | None = None
        self.rcpts: list[str] = []
        self.accepted: list[str] = []
        self.rcpt_index = 0
        self.message_count = 0
        self.idle_generation = 0
        self.idle_armed = False
        self.reading = True
        self.interest = 0
        self.pump: _StreamPump | None = None
        self.data_fault_fired = False

    # -- I/O ---------------------------------------------------------------

    def update_interest(self) -> None:
        """Registers the socket for what the session waits for now: input
        unless it stopped reading or reads at a pace (a timer reads then),
        output while bytes or a stream wait for room."""
        if self.closed:
            return
        events = 0
        if self.reading and self.script.read_pace is None:
            events |= selectors.EVENT_READ
        if self.outbuf or self.pump is not None:
            events |= selectors.EVENT_WRITE
        if events == self.interest:
            return
        selector = self.server._selector
        if self.interest == 0:
            selector.register(self.sock, events, self)
        elif events == 0:
            selector.unregister(self.sock)
        else:
            selector.modify(self.sock, events, self)
        self.interest = events

    def on_event(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE and not self.closed:
            self.flush()
            if self.pump is not None and not self.outbuf:
                self.pump_stream()
        if mask & selectors.EVENT_READ and not self.closed:
            self.read()

    def read(self, size: int = _READ_SIZE) -> None:
        try:
            chunk = self.sock.recv(size)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close("client")
            return
        self.server._transcribe(self.record, "C", chunk)
        self.rx_total += len(chunk)
        self.inbuf += chunk
        if self.idle_armed:
            self.arm_idle()
        if not self.closing:
            self.process()

    def paced_read(self) -> None:
        """One read of at most `read_pace[0]` bytes, then the next later."""
        if self.closed or not self.reading or self.script.read_pace is None:
            return
        size, seconds = self.script.read_pace
        self.read(size)
        if not self.closed:
            self.server._call_later(seconds, self.paced_read, self)

    def send(self, data: bytes) -> None:
        if self.closed or not data:
            return
        self.server._transcribe(self.record, "S", data)
        self.outbuf += data
        self.flush()

    def flush(self) -> None:
        while self.outbuf:
            try:
                sent = self.sock.send(self.outbuf)
            except BlockingIOError:
                break
            except OSError:
                self.close("client")
                return
            del self.outbuf[:sent]
        if not self.outbuf and self.closing and self.pump is None:
            self.close("server")
            return
        self.update_interest()

    def pump_stream(self) -> None:
        """Sends the stream's bytes while the socket takes them."""
        pump = self.pump
        while pump is not None and not self.closed:
            chunk = pump.chunk()
            if chunk is None:
                self.end_stream("done")
                return
            try:
                n = self.sock.send(chunk)
            except BlockingIOError:
                self.update_interest()
                return
            except OSError:
                self.end_stream("client", close="client")
                return
            pump.sent(n)
            self.server._stream_progress(self.record, n)

    def check_stall(self) -> None:
        pump = self.pump
        if pump is None or self.closed:
            return
        idle = time.monotonic() - pump.last_progress
        if idle >= pump.stream.stall:
            self.end_stream("stalled", close="server")
            return
        self.server._call_later(pump.stream.stall - idle, self.check_stall, self)

    def start_stream(self, stream: Stream) -> None:
        self.pump = _StreamPump(stream)
        self.waiting = True
        self.server._call_later(stream.stall, self.check_stall, self)
        self.flush()
        if not self.outbuf:
            self.pump_stream()

    def end_stream(self, how: str, close: str | None = None) -> None:
        """Records how the stream ended (after closing, when `close` says
        why, so a waiter sees both); a finished one lets the reply go on."""
        self.pump = None
        if close is not None:
            self.close(close)
        self.server._stream_ended(self.record, how)
        if how == "done":
            self.update_interest()
            self.resume()

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        if self.pump is not None:
            self.pump = None
            self.server._stream_ended(self.record, reason)
        if self.interest:
            with contextlib.suppress(OSError, KeyError, ValueError):
                self.server._selector.unregister(self.sock)
        self.interest = 0
        self.sock.close()
        self.server._connections.discard(self)
        partial = bytes(self.data) if self.in_data else None
        self.server._session_closed(self.record, reason, partial)

    # -- replies -----------------------------------------------------------

    def reply(
        self, reply: Reply, hook: Callable[[bytes, str], None] | None = None
    ) -> None:
        """Queues `reply`'s actions and runs them; `hook(sent, ending)` runs
        when they are done (ending: "sent", "silence" or "close")."""
        actions: list[tuple[str, object]] = []
        _flatten(reply, actions, self.script.line_end)
        delay = self.script.byte_delay
        for kind, arg in actions:
            if kind == "send" and delay is not None:
                assert isinstance(arg, bytes)
                for i in range(len(arg)):
                    if self.actions and self.actions[-1][0] == "send":
                        self.actions.append(("sleep", float(delay)))
                    self.actions.append(("send", arg[i : i + 1]))
                continue
            if kind == "send" and self.actions and self.actions[-1][0] == "send":
                previous = self.actions.pop()[1]
                assert isinstance(previous, bytes) and isinstance(arg, bytes)
                arg = previous + arg
            self.actions.append((kind, arg))
        self.hook = hook
        self.reply_sent = bytearray()
        self.run_actions()

    def run_actions(self) -> None:
        while self.actions and not self.closed:
            kind, arg = self.actions.popleft()
            if kind == "send":
                assert isinstance(arg, bytes)
                self.reply_sent += arg
                self.send(arg)
            elif kind == "sleep":
                assert isinstance(arg, float)
                self.waiting = True
                self.server._call_later(arg, self.resume, self)
                return
            elif kind == "stream":
                assert isinstance(arg, Stream)
                self.start_stream(arg)
                return
            elif kind == "silence":
                self.actions.clear()
                self.finish_reply("silence")
                self.silent = True
                return
            elif kind == "stop_reading":
                self.actions.clear()
                self.finish_reply("silence")
                self.silent = True
                self.reading = False
                self.update_interest()
                return
            elif kind == "reset":
                self.actions.clear()
                self.finish_reply("close")
                with contextlib.suppress(OSError):
                    self.sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                self.close("server")
                return
            else:
                self.actions.clear()
                self.finish_reply("close")
                self.closing = True
                self.flush()
                return
        self.finish_reply("sent")

    def resume(self) -> None:
        if self.closed:
            return
        self.waiting = False
        self.run_actions()
        if not self.closed and not self.closing:
            self.process()

    def finish_reply(self, ending: str) -> None:
        sent = bytes(self.reply_sent)
        if sent:
            self.server._record_reply(self.record, sent)
        self.rx_at_last_reply = self.rx_total
        hook, self.hook = self.hook, None
        if hook is not None:
            hook(sent, ending)

    def busy(self) -> bool:
        return self.waiting or bool(self.actions) or self.closing or self.closed

    # -- input -------------------------------------------------------------

    def process(self) -> None:
        """Handles every complete command (and data section) in the input,
        in order, until a reply has to wait."""
        for _ in range(1_000_000):
            if self.busy():
                return
            if self.in_data:
                if not self.scan_data():
                    return
                continue
            end = self.inbuf.find(b"\n")
            if end < 0:
                if len(self.inbuf) > _MAX_LINE:
                    self.reply(CLOSE_AFTER("500 5.5.0 Error: line too long"))
                return
            line = bytes(self.inbuf[: end + 1])
            del self.inbuf[: end + 1]
            pipelined = self.consumed < self.rx_at_last_reply
            self.consumed += len(line)
            self.server._record_command(self.record, line, pipelined)
            if not self.silent:
                self.command(line)

    def scan_data(self) -> bool:
        """Moves input into the data section; on CRLF "." CRLF records the
        message and returns True, else returns False (needs more input)."""
        self.data += self.inbuf
        self.consumed += len(self.inbuf)
        self.inbuf.clear()
        if len(self.data) > self.server.max_message_bytes:
            self.reply(CLOSE_AFTER("552 5.3.4 Error: message too big"))
            return False
        fault = self.script.data_fault
        if (
            fault is not None
            and not self.data_fault_fired
            and len(self.data) >= fault[0]
        ):
            self.data_fault_fired = True
            self.reply(fault[1])
            if self.busy() or self.silent:
                return False
        if self.data.startswith(b".\r\n"):
            end = 0
        elif len(self.data) < 3:
            return False
        else:
            found = self.data.find(b"\r\n.\r\n", self.scan_from)
            if found < 0:
                self.scan_from = max(0, len(self.data) - 4)
                return False
            end = found + 2
        raw = bytes(self.data[:end])
        rest = bytes(self.data[end + 3 :])
        self.consumed -= len(rest)
        self.inbuf[:0] = rest
        self.data.clear()
        self.scan_from = 0
        self.in_data = False
        self.end_of_data(raw)
        return True

    def end_of_data(self, raw: bytes) -> None:
        message = self.server._record_message(
            self.record, self.mail_from, self.rcpts, self.accepted, raw
        )
        self.message_count += 1
        self.reset_transaction()
        if self.silent:
            return
        spec = self.script.end_of_data
        if spec is None:
            reply: Reply = (
                f"250 2.0.0 Ok: queued as S{self.record.index}M{message.index}"
            )
        else:
            reply = self.call(spec, message)

        def hook(sent: bytes, ending: str) -> None:
            self.server._set_message_reply(message, sent or None)
            limit = self.script.idle_421_after
            if limit is not None and self.message_count >= limit:
                self.arm_idle()

        self.reply(reply, hook)

    def reset_transaction(self) -> None:
        self.mail_from = None
        self.rcpts = []
        self.accepted = []
        self.rcpt_index = 0

    def call(self, spec: object, *args: object) -> Reply:
        """A stage's reply: the value itself, or what its callable returns."""
        if callable(spec):
            return spec(*args)  # type: ignore[no-any-return]
        return spec  # type: ignore[return-value]

    def command(self, line: bytes) -> None:
        verb = _verb(line)
        handler = {
            "EHLO": self.on_ehlo,
            "HELO": self.on_helo,
            "MAIL": self.on_mail,
            "RCPT": self.on_rcpt,
            "DATA": self.on_data,
            "RSET": self.on_rset,
            "NOOP": self.on_noop,
            "QUIT": self.on_quit,
        }.get(verb)
        if verb in self.script.commands:
            self.reply(self.call(self.script.commands[verb], line))
        elif handler is not None:
            handler(line)
        else:
            default = "502 5.5.2 Error: command not recognized"
            self.reply(self.pick(self.script.unknown, default, line))

    def pick(self, spec: object, default: Reply, *args: object) -> Reply:
        return default if spec is None else self.call(spec, *args)

    def on_ehlo(self, line: bytes) -> None:
        self.reset_transaction()
        self.reply(self.pick(self.script.ehlo, self.script.ehlo_lines(), line))

    def on_helo(self, line: bytes) -> None:
        self.reset_transaction()
        default = f"250 {self.script.hostname}"
        self.reply(self.pick(self.script.helo, default, line))

    def on_mail(self, line: bytes) -> None:
        address = _address(line)
        nested = self.mail_from is not None
        self.rcpt_index = 0
        if self.script.mail is not None:
            reply = self.call(self.script.mail, address)
        elif nested:
            reply = "503 5.5.1 Error: nested MAIL command"
        else:
            reply = "250 2.1.0 Ok"

        def hook(sent: bytes, ending: str) -> None:
            if sent.startswith(b"2"):
                self.mail_from = address
                self.rcpts = []
                self.accepted = []

        self.reply(reply, hook)

    def on_rcpt(self, line: bytes) -> None:
        address = _address(line)
        index = self.rcpt_index
        self.rcpt_index += 1
        if self.script.rcpt is not None:
            reply = self.call(self.script.rcpt, address, index)
        elif self.mail_from is None:
            reply = "503 5.5.1 Error: need MAIL command"
        else:
            reply = "250 2.1.5 Ok"

        def hook(sent: bytes, ending: str) -> None:
            self.rcpts.append(address)
            if sent.startswith(b"2"):
                self.accepted.append(address)

        self.reply(reply, hook)

    def on_data(self, line: bytes) -> None:
        if self.script.data is not None:
            reply = self.call(self.script.data, line)
        elif self.mail_from is None:
            reply = "503 5.5.1 Error: need RCPT command"
        elif not self.accepted:
            reply = "554 5.5.1 Error: no valid recipients"
        else:
            reply = "354 End data with <CR><LF>.<CR><LF>"

        def hook(sent: bytes, ending: str) -> None:
            if sent.startswith(b"354") and ending != "close":
                self.in_data = True
                self.data.clear()
                self.scan_from = 0

        self.reply(reply, hook)

    def on_rset(self, line: bytes) -> None:
        self.reset_transaction()
        self.reply(self.pick(self.script.rset, "250 2.0.0 Ok", line))

    def on_noop(self, line: bytes) -> None:
        self.reply(self.pick(self.script.noop, "250 2.0.0 Ok", line))

    def on_quit(self, line: bytes) -> None:
        def hook(sent: bytes, ending: str) -> None:
            if ending == "sent":
                self.closing = True
                self.flush()

        self.reply(self.pick(self.script.quit, "221 2.0.0 Bye", line), hook)

    # -- idle 421 ----------------------------------------------------------

    def arm_idle(self) -> None:
        self.idle_armed = True
        self.idle_generation += 1
        generation = self.idle_generation
        self.server._call_later(
            self.script.idle_421_delay, lambda: self.idle_fired(generation), self
        )

    def idle_fired(self, generation: int) -> None:
        if generation != self.idle_generation or self.closed or self.closing:
            return
        if self.silent:
            return
        if self.busy() or self.inbuf or self.in_data:
            self.arm_idle()
            return
        self.idle_armed = False
        self.reply(CLOSE_AFTER(self.script.idle_421_reply))


class ScriptedServer:
    """A loopback SMTP server in a background thread, answering per `Script`.

    One thread runs a `selectors` loop over every connection, so many
    sessions are served at once.  Session number ``i`` (0-based, in order of
    accept) follows ``per_session[i]`` when given, else `script`.  Everything
    received is recorded (see `SessionRecord`, `ReceivedMessage`).

    The data section is read byte-exact: nothing is normalised, a bare CR or
    LF is kept, and the section ends only at CRLF "." CRLF (the CRLF of the
    DATA line counts, so ".\\r\\n" right after the 354 is an empty message).

    `sndbuf` and `rcvbuf` set SO_SNDBUF and SO_RCVBUF on the listeners, so
    every session has them (and no autotuning); `SessionRecord.socket_buffers`
    holds what the kernel reports for each accepted socket.

    Use as a context manager, or call `start()` and `stop()`.  `stop()` closes
    every socket, joins the thread, and raises `ScriptError` if a script
    callable raised.
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        per_session: Mapping[int, Script] | None = None,
        host: str = "127.0.0.1",
        ipv6: bool = False,
        backlog: int = 512,
        transcript: bool = True,
        max_message_bytes: int = 64 * 1024 * 1024,
        sndbuf: int | None = None,
        rcvbuf: int | None = None,
    ) -> None:
        self.script = script if script is not None else Script()
        self.sndbuf = sndbuf
        self.rcvbuf = rcvbuf
        self.per_session = dict(per_session or {})
        self.host = host
        self.ipv6 = ipv6
        self.backlog = backlog
        self.keep_transcript = transcript
        self.max_message_bytes = max_message_bytes
        self.port = 0
        self._lock = threading.Condition()
        self._selector = selectors.DefaultSelector()
        self._listeners: list[socket.socket] = []
        self._connections: set[_Connection] = set()
        self._sessions: list[SessionRecord] = []
        self._messages: list[ReceivedMessage] = []
        self._closed_count = 0
        self._errors: list[BaseException] = []
        self._timers: list[
            tuple[float, int, Callable[[], None], _Connection | None]
        ] = []
        self._timer_seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    # -- lifecycle ---------------------------------------------------------

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where the server listens: (host, port) pairs."""
        return [(str(s.getsockname()[0]), self.port) for s in self._listeners]

    def start(self) -> ScriptedServer:
        """Binds the listeners (a free port, the same on ::1 when `ipv6`) and
        starts the thread.  Returns self."""
        if self._thread is not None:
            return self
        self._bind()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        for listener in self._listeners:
            self._selector.register(listener, selectors.EVENT_READ, None)
        self._thread = threading.Thread(
            target=self._run, name=f"scripted-smtp-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def _bind(self) -> None:
        last_error: OSError | None = None
        for _ in range(20):
            first = socket.socket(
                socket.AF_INET6 if ":" in self.host else socket.AF_INET
            )
            first.bind((self.host, 0))
            port = int(first.getsockname()[1])
            listeners = [first]
            try:
                if self.ipv6 and self.host != "::1":
                    second = socket.socket(socket.AF_INET6)
                    listeners.append(second)
                    second.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    second.bind(("::1", port))
            except OSError as error:
                last_error = error
                for s in listeners:
                    s.close()
                continue
            for s in listeners:
                # Set before listen, so the window is scaled for them and
                # every accepted socket inherits them.
                if self.sndbuf is not None:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
                if self.rcvbuf is not None:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
                s.listen(self.backlog)
                s.setblocking(False)
            self._listeners = listeners
            self.port = port
            return
        raise OSError(f"no port free on {self.host} and ::1: {last_error}")

    def stop(self, timeout: float = 10.0, raise_errors: bool = True) -> None:
        """Closes every connection and listener and joins the thread (within
        `timeout` seconds); raises `ScriptError` for a script that raised."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._stopping = True
            self._wake()
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError("scripted server thread did not stop")
        self._close_all()
        if raise_errors and self._errors:
            raise ScriptError(
                f"{len(self._errors)} error(s) in the scripted server; "
                f"first: {self._errors[0]!r}"
            ) from self._errors[0]

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(raise_errors=exc_type is None)

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")

    def _close_all(self) -> None:
        for connection in list(self._connections):
            connection.close("stop")
        self._connections.clear()
        for listener in self._listeners:
            listener.close()
        for s in (self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        with contextlib.suppress(OSError, RuntimeError):
            self._selector.close()

    # -- the loop ----------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._turn()
            except Exception as error:
                with self._lock:
                    self._errors.append(error)
                    self._lock.notify_all()
                return
        for connection in list(self._connections):
            connection.close("stop")

    def _turn(self) -> None:
        timeout = 0.5
        if self._timers:
            timeout = min(timeout, max(0.0, self._timers[0][0] - time.monotonic()))
        for key, mask in self._selector.select(timeout):
            if key.fileobj is self._wake_r:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            elif key.data is None:
                self._accept(key.fileobj)  # type: ignore[arg-type]
            else:
                self._guarded(key.data, key.data.on_event, mask)
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, callback, owner = heapq.heappop(self._timers)
            if owner is None or not owner.closed:
                self._guarded(owner, callback)

    def _guarded(
        self, owner: _Connection | None, call: Callable[..., object], *args: object
    ) -> None:
        """Runs `call(*args)`; an exception is kept for `stop()` and closes
        the session it came from."""
        try:
            call(*args)
        except Exception as error:
            with self._lock:
                self._errors.append(error)
                self._lock.notify_all()
            if owner is not None:
                owner.close("server")

    def _call_later(
        self, seconds: float, callback: Callable[[], None], owner: _Connection | None
    ) -> None:
        when = time.monotonic() + max(0.0, seconds)
        entry = (when, next(self._timer_seq), callback, owner)
        heapq.heappush(self._timers, entry)

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(256):
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                index = len(self._sessions)
                record = SessionRecord(self._lock, index, peer)
                self._sessions.append(record)
                self._lock.notify_all()
            script = self.per_session.get(index, self.script)
            record.socket_buffers = (
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            )
            connection = _Connection(self, sock, record, script)
            self._connections.add(connection)
            connection.update_interest()
            if script.read_pace is not None:
                self._call_later(script.read_pace[1], connection.paced_read, connection)
            banner = script.banner
            if banner is None:
                banner = f"220 {script.hostname} ESMTP scripted"
            self._guarded(connection, connection.reply, banner)

    # -- recording (server thread) -----------------------------------------

    def _transcribe(self, record: SessionRecord, direction: str, data: bytes) -> None:
        if not self.keep_transcript:
            return
        entry = TranscriptEntry(time.monotonic(), direction, bytes(data))
        with self._lock:
            record._transcript.append(entry)

    def _record_command(self, record: SessionRecord, line: bytes, pipe: bool) -> None:
        with self._lock:
            record._commands.append(line)
            record._pipelined.append(pipe)

    def _record_reply(self, record: SessionRecord, reply: bytes) -> None:
        with self._lock:
            record._replies.append(reply)

    def _record_message(
        self,
        record: SessionRecord,
        mail_from: str | None,
        rcpts: Iterable[str],
        accepted: Iterable[str],
        raw: bytes,
    ) -> ReceivedMessage:
        with self._lock:
            message = ReceivedMessage(
                session=record.index,
                index=len(self._messages),
                mail_from=mail_from,
                rcpts=tuple(rcpts),
                accepted=tuple(accepted),
                raw_data=raw,
                received_at=time.monotonic(),
            )
            self._messages.append(message)
            record._messages.append(message)
            self._lock.notify_all()
        return message

    def _stream_progress(self, record: SessionRecord, n: int) -> None:
        with self._lock:
            record._stream_sent += n

    def _stream_ended(self, record: SessionRecord, how: str) -> None:
        with self._lock:
            record._stream_end = how
            self._lock.notify_all()

    def _set_message_reply(self, message: ReceivedMessage, reply: bytes | None) -> None:
        with self._lock:
            message.reply = reply
            self._lock.notify_all()

    def _session_closed(
        self, record: SessionRecord, reason: str, partial: bytes | None
    ) -> None:
        with self._lock:
            record._closed_at = time.monotonic()
            record._close_reason = reason
            record._partial_data = partial
            self._closed_count += 1
            self._lock.notify_all()

    # -- what the tests read -----------------------------------------------

    @property
    def sessions(self) -> list[SessionRecord]:
        """Every session so far, in order of accept."""
        with self._lock:
            return list(self._sessions)

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Every completed data section so far, in order of completion."""
        with self._lock:
            return list(self._messages)

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised by script callables or the loop."""
        with self._lock:
            return list(self._errors)

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{what} not seen within {timeout} s: "
                        f"{len(self._sessions)} sessions "
                        f"({self._closed_count} closed), "
                        f"{len(self._messages)} messages, "
                        f"errors={self._errors!r}"
                    )
                self._lock.wait(min(left, 0.5))

    def wait_for_messages(self, n: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Waits until `n` data sections have completed; returns them all.
        Raises TimeoutError after `timeout` seconds."""
        self._wait(lambda: len(self._messages) >= n, timeout, f"{n} messages")
        return self.messages

    def wait_for_replied_messages(
        self, n: int, timeout: float = 10.0
    ) -> list[ReceivedMessage]:
        """Waits until `n` messages have completed and been answered."""
        self._wait(
            lambda: sum(m.reply is not None for m in self._messages) >= n,
            timeout,
            f"{n} answered messages",
        )
        return self.messages

    def wait_for_stream_end(self, timeout: float = 10.0) -> list[SessionRecord]:
        """Waits until a session's `Stream` has ended; returns the sessions."""
        self._wait(
            lambda: any(r._stream_end is not None for r in self._sessions),
            timeout,
            "the end of a stream",
        )
        return self.sessions

    def wait_for_sessions(self, n: int, timeout: float = 10.0) -> list[SessionRecord]:
        """Waits until `n` sessions have been accepted; returns them all."""
        self._wait(lambda: len(self._sessions) >= n, timeout, f"{n} sessions")
        return self.sessions

    def wait_for_closed_sessions(
        self, n: int, timeout: float = 10.0
    ) -> list[SessionRecord]:
        """Waits until `n` sessions have closed (either side); returns all."""
        self._wait(lambda: self._closed_count >= n, timeout, f"{n} closed sessions")
        return self.sessions


class SocketReader:
    """Reads a raw socket up to a marker and keeps what came after it, for
    the few servers a test writes by hand to hold a reply back."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buf = b""

    def until(self, marker: bytes) -> bytes:
        """The bytes up to and including `marker`; raises ConnectionError
        when the client closes first."""
        while marker not in self.buf:
            chunk = self.conn.recv(65536)
            if not chunk:
                raise ConnectionError("client went away")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(marker)
        return head + marker


class OneSessionServer:
    """One session on a raw socket, for a test that holds a reply back in a
    way a `Script` cannot say: the listener is bound at start, a thread
    accepts one client, greets it, answers EHLO offering PIPELINING, then
    runs ``session(conn, until)`` (`until` as `SocketReader.until`)."""

    def __init__(self, session: Callable[[socket.socket, Callable], None]) -> None:
        self._session = session
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> OneSessionServer:
        self._thread.start()
        return self

    def join(self, timeout: float = 15.0) -> None:
        self._thread.join(timeout)

    def _serve(self) -> None:
        with self._listener as listener:
            listener.settimeout(10)
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(10)
                conn.sendall(b"220 one-session.test ESMTP\r\n")
                until = SocketReader(conn).until
                until(b"\r\n")
                conn.sendall(b"250-one-session.test\r\n250 PIPELINING\r\n")
                self._session(conn, until)


# --------------------------------------------------------------------------
# Postfix smtp-sink
# --------------------------------------------------------------------------

_STATS = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)\r")


def smtp_sink_available() -> bool:
    """Is Postfix's smtp-sink installed where `SmtpSink` looks for it?"""
    return os.access(SMTP_SINK, os.X_OK)


class SmtpSink:
    """Postfix's ``smtp-sink`` on loopback and a free port, as a child process.

    How the count is obtained: smtp-sink is always started with ``-c``, which
    makes it print ``sess=N quit=N mesg=N`` followed by a CR (not a newline)
    and flush it, each time a session ends, a QUIT is answered or a final "."
    is received.  Its stdout goes to a file; `message_count()` parses the last
    complete record.  ``mesg`` is smtp-sink's own count of data sections that
    reached CRLF "." CRLF, and it is printed *before* smtp-sink sends the reply
    to the ".", so once a client holds that reply the count includes the
    message.  Counting ``-d`` dump files instead would be wrong: smtp-sink
    creates a dump file at MAIL FROM and deletes it on RSET or a drop, so the
    directory also holds files of transactions still in progress.

    With `dump` (or `dump_dir`) each transaction goes to its own file
    (``-d DIR/msg.``), closed before the count moves; `message_ids()` and
    `dumped_messages()` read those files.  The dump is not byte-exact: LF line
    ends, lone CRs dropped, dots un-stuffed, smtp-sink's own X-* and Received
    headers first.  Files of transactions still in progress are read too, so
    read them once the clients have had their replies.

    As root, smtp-sink requires ``-u USER`` and runs as `run_as` ("nobody");
    the dump directory is then chowned to that user.

    The sink's readiness is checked by one probe connection, which smtp-sink
    counts as a session; `session_count()` leaves it out.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        pipelining: bool = True,
        max_connections: int | None = None,
        backlog: int = 512,
        hostname: str | None = None,
        dump: bool = False,
        dump_dir: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        run_as: str = "nobody",
        executable: str = SMTP_SINK,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.pipelining = pipelining
        self.max_connections = max_connections
        self.backlog = backlog
        self.hostname = hostname
        self.dump = dump or dump_dir is not None
        self.extra_args = tuple(extra_args)
        self.run_as = run_as
        self.executable = executable
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.port = 0
        self._own_dump_dir = dump_dir is None
        self.dump_dir: Path | None = Path(dump_dir) if dump_dir is not None else None
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._probe_sessions = 0
        self._final_stats: tuple[int, int, int] | None = None
        self._final_dumps: list[bytes] | None = None
        self.argv: list[str] = []

    # -- lifecycle ---------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def _listen_spec(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{port}"

    def _command(self, port: int) -> list[str]:
        argv = [self.executable, "-c"]
        if os.geteuid() == 0:
            argv += ["-u", self.run_as]
        if not self.pipelining:
            argv.append("-p")
        if self.max_connections is not None:
            argv += ["-m", str(self.max_connections)]
        if self.hostname is not None:
            argv += ["-h", self.hostname]
        if self.dump_dir is not None:
            argv += ["-d", f"{self.dump_dir}/msg."]
        argv += [*self.extra_args, self._listen_spec(port), str(self.backlog)]
        return argv

    def _prepare_dirs(self) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="smtp-sink-"))
        if not self.dump:
            return
        if self.dump_dir is None:
            # The work dir is private (0700); let the sink's user through to
            # its own dump directory inside it.
            os.chmod(self._workdir, 0o711)
            self.dump_dir = self._workdir / "dump"
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam(self.run_as)
            os.chown(self.dump_dir, user.pw_uid, user.pw_gid)
            check = subprocess.run(
                ["test", "-w", str(self.dump_dir), "-a", "-x", str(self.dump_dir)],
                user=user.pw_uid,
                group=user.pw_gid,
                extra_groups=[],
                timeout=10,
                check=False,
            )
            if check.returncode != 0:
                raise PermissionError(
                    f"{self.run_as} cannot write to {self.dump_dir}; "
                    "leave dump_dir unset to get a directory it can use"
                )

    def start(self) -> SmtpSink:
        """Starts smtp-sink and waits (within `start_timeout`) until it
        answers; retries with another port if the chosen one was taken."""
        if self._process is not None:
            return self
        if not os.access(self.executable, os.X_OK):
            raise FileNotFoundError(
                f"{self.executable} is not installed "
                "(bash scripts/install-test-deps.sh installs it as root)"
            )
        try:
            self._prepare_dirs()
        except BaseException:
            self._cleanup()
            raise
        assert self._workdir is not None
        last_error = ""
        for attempt in range(5):
            port = free_port(self.host)
            self.argv = self._command(port)
            stats = open(self._workdir / "stats", "wb")
            errors = open(self._workdir / f"stderr.{attempt}", "wb")
            try:
                self._process = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=stats,
                    stderr=errors,
                    start_new_session=True,
                )
            finally:
                stats.close()
                errors.close()
            self.port = port
            try:
                ready = self._wait_ready()
            except BaseException:
                self._reap()
                self._cleanup()
                raise
            if ready:
                return self
            last_error = self.stderr()
            self._reap()
            if "in use" not in last_error:
                break
        self._cleanup()
        raise RuntimeError(f"smtp-sink did not start: {self.argv}: {last_error}")

    def _wait_ready(self) -> bool:
        """True once a probe connection gets a reply and the sink has counted
        the probe's session; False if the process died."""
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with socket.create_connection(self.address, timeout=1.0) as probe:
                    probe.recv(512)
                break
            except OSError:
                time.sleep(0.02)
        else:
            raise TimeoutError(f"smtp-sink not listening after {self.start_timeout} s")
        while time.monotonic() < deadline:
            stats = self._read_stats()
            if stats is not None and stats[0] >= 1:
                self._probe_sessions = stats[0]
                return True
            if self._process.poll() is not None:
                return False
            time.sleep(0.01)
        raise TimeoutError("smtp-sink never counted the probe session")

    def stop(self) -> None:
        """SIGTERM to the sink's PID, SIGKILL after `stop_timeout` seconds,
        then reaps it.  Counts and dumps stay readable afterwards."""
        if self._process is None:
            return
        self._reap()
        self._final_stats = self._read_stats()
        if self.dump:
            self._final_dumps = self._read_dumps()
        self._cleanup()

    def _reap(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(self.stop_timeout)

    def _cleanup(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        if self._own_dump_dir:
            self.dump_dir = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def running(self) -> bool:
        """Is the smtp-sink process still alive?"""
        return self._process is not None and self._process.poll() is None

    def stderr(self) -> str:
        """What smtp-sink wrote to stderr (fatal errors, warnings)."""
        if self._workdir is None:
            return ""
        parts = sorted(self._workdir.glob("stderr.*"))
        return "".join(p.read_text("utf-8", "replace") for p in parts[-1:])

    # -- counts ------------------------------------------------------------

    def _read_stats(self) -> tuple[int, int, int] | None:
        if self._workdir is None:
            return self._final_stats
        path = self._workdir / "stats"
        try:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - 256))
                tail = f.read()
        except FileNotFoundError:
            return None
        records = _STATS.findall(tail)
        if not records:
            return None
        sess, quit_, mesg = records[-1]
        return int(sess), int(quit_), int(mesg)

    def message_count(self) -> int:
        """smtp-sink's own count of messages received (final "." seen)."""
        stats = self._read_stats()
        return 0 if stats is None else stats[2]

    def session_count(self) -> int:
        """Sessions that have ended, the readiness probe left out."""
        stats = self._read_stats()
        return 0 if stats is None else stats[0] - self._probe_sessions

    def wait_for_messages(self, n: int, timeout: float = 10.0) -> int:
        """Waits until the sink has counted `n` messages; returns the count.
        Raises TimeoutError (with the sink's stderr) after `timeout`."""
        return self._wait_count(self.message_count, n, timeout, "messages")

    def wait_for_sessions(self, n: int, timeout: float = 10.0) -> int:
        """Waits until `n` sessions have ended (the sink counts a session
        when it sees the client's EOF, after QUIT's reply); returns the count."""
        return self._wait_count(self.session_count, n, timeout, "ended sessions")

    def _wait_count(
        self, count: Callable[[], int], n: int, timeout: float, what: str
    ) -> int:
        deadline = time.monotonic() + timeout
        while True:
            seen = count()
            if seen >= n:
                return seen
            if time.monotonic() >= deadline or not self.running():
                raise TimeoutError(
                    f"smtp-sink counted {seen} of {n} {what} "
                    f"(running={self.running()}): {self.stderr()}"
                )
            time.sleep(0.01)

    # -- dumps -------------------------------------------------------------

    def _read_dumps(self) -> list[bytes]:
        if self.dump_dir is None or not self.dump_dir.is_dir():
            return []
        files = sorted(
            self.dump_dir.glob("msg.*"), key=lambda p: (p.stat().st_mtime_ns, p.name)
        )
        out = []
        for path in files:
            try:
                out.append(path.read_bytes())
            except FileNotFoundError:
                continue
        return out

    def dumped_messages(self) -> list[bytes]:
        """The dump files' contents, oldest first (needs `dump`)."""
        if not self.dump:
            raise ValueError("SmtpSink was started without dump")
        if self._final_dumps is not None and self._workdir is None:
            return list(self._final_dumps)
        return self._read_dumps()

    def message_ids(self) -> list[str]:
        """The Message-ID of each dumped message that has one, oldest first."""
        found = (_message_id(dump) for dump in self.dumped_messages())
        return [value for value in found if value is not None]
