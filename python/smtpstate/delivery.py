"""Sending messages from Python through the C engine.

:func:`deliver` returns one :class:`MessageResult` per message, in input
order; :func:`deliver_iter` yields them as messages complete;
:func:`deliver_async` does so as an async generator, stepping the C loop
on the asyncio thread through the scheduler's descriptor.  Python is
entered once per batch of outcomes gathered in C (at most once per loop
turn for asyncio), plus once per call of a Python state's callable, never
per reply or per recipient.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import os
import re
import struct
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import FrozenInstanceError, dataclass, field
from typing import TYPE_CHECKING, Any

from . import events as _events
from . import states as _states
from ._smtpstate_cffi import ffi, lib
from .errors import (
    InvalidArgumentError,
    InvalidTypeError,
    LoopBusyError,
    SmtpStateError,
    error_from_code,
)
from .states import Stage

if TYPE_CHECKING:
    import asyncio  # imported where used: most callers never need it

__all__ = [
    "BounceClass",
    "Destination",
    "Message",
    "MessageResult",
    "Outcome",
    "RecipientResult",
    "deliver",
    "deliver_async",
    "deliver_iter",
]


class Outcome(enum.IntEnum):
    """How a recipient's delivery ended (values from C)."""

    DELIVERED = lib.SMTP_OUTCOME_DELIVERED
    TRANSIENT = lib.SMTP_OUTCOME_TRANSIENT
    PERMANENT = lib.SMTP_OUTCOME_PERMANENT


class BounceClass(enum.IntEnum):
    """Bounce classification codes (values from C); 0 when delivered."""

    NONE = 0
    UNDETERMINED = lib.SMTP_BOUNCE_UNDETERMINED
    INVALID_RECIPIENT = lib.SMTP_BOUNCE_INVALID_RECIPIENT
    SOFT = lib.SMTP_BOUNCE_SOFT
    DNS_FAILURE = lib.SMTP_BOUNCE_DNS_FAILURE
    MAILBOX_FULL = lib.SMTP_BOUNCE_MAILBOX_FULL
    TOO_LARGE = lib.SMTP_BOUNCE_TOO_LARGE
    TIMEOUT = lib.SMTP_BOUNCE_TIMEOUT
    ADMIN_FAILURE = lib.SMTP_BOUNCE_ADMIN_FAILURE
    NO_RCPT = lib.SMTP_BOUNCE_NO_RCPT
    GENERIC = lib.SMTP_BOUNCE_GENERIC
    MAIL_BLOCK = lib.SMTP_BOUNCE_MAIL_BLOCK
    SPAM_BLOCK = lib.SMTP_BOUNCE_SPAM_BLOCK
    SPAM_CONTENT = lib.SMTP_BOUNCE_SPAM_CONTENT
    PROHIBITED_ATTACHMENT = lib.SMTP_BOUNCE_PROHIBITED_ATTACHMENT
    RELAY_DENIED = lib.SMTP_BOUNCE_RELAY_DENIED
    AUTO_REPLY = lib.SMTP_BOUNCE_AUTO_REPLY
    TRANSIENT = lib.SMTP_BOUNCE_TRANSIENT
    SUBSCRIBE = lib.SMTP_BOUNCE_SUBSCRIBE
    UNSUBSCRIBE = lib.SMTP_BOUNCE_UNSUBSCRIBE
    CHALLENGE_RESPONSE = lib.SMTP_BOUNCE_CHALLENGE_RESPONSE


_ADDRESS_FORBIDDEN = re.compile("[\x00-\x1f\x7f<>]")
# isinstance() arguments built once: `a | b` makes a new union each call.
_STRINGS = (str, bytes)
_BYTES = (bytes, bytearray, memoryview)
_PATHS = (str, os.PathLike)

# Addresses that passed _check_address: a sender or recipient repeated
# across a batch is checked once.  Bounded, so a stream of distinct
# addresses costs a full check each and no memory.
_CHECKED_ADDRESSES: set[str] = set()
_CHECKED_MAX = 4096


def _check_address(what: str, value: object) -> str:
    """The envelope rule the C engine applies, checked before anything is
    built: no control bytes or angle brackets, spaces only inside a quoted
    local part, at most 254 octets."""
    if type(value) is str and value in _CHECKED_ADDRESSES:
        return value
    if not isinstance(value, str):
        raise InvalidTypeError(
            f"{what} must be str, not {type(value).__name__} (rule: address)"
        )
    _check_encodable(what, value, "address")
    bad = _ADDRESS_FORBIDDEN.search(value)
    if bad:
        raise InvalidArgumentError(
            f"{what} {value!r} contains {bad.group()!r} (rule: address without "
            "control bytes or angle brackets)"
        )
    if '"' in value or " " in value:
        unquoted = "".join(value.split('"')[::2])
        if " " in unquoted or value.count('"') % 2:
            raise InvalidArgumentError(
                f"{what} {value!r} has a space outside a quoted local part "
                "(rule: address)"
            )
    if (len(value) > 254 or not value.isascii()) and len(value.encode()) > 254:
        raise InvalidArgumentError(
            f"{what} is longer than 254 octets (rule: address, RFC 5321 4.5.3.1.3)"
        )
    if value and len(_CHECKED_ADDRESSES) < _CHECKED_MAX and type(value) is str:
        _CHECKED_ADDRESSES.add(value)
    return value


class _WeakReferable:
    """Gives Message, a slotted class, its weak reference slot: the
    dataclass option for it (weakref_slot) needs Python 3.11."""

    __slots__ = ("__weakref__",)


@dataclass(frozen=True, slots=True, init=False)
class Message(_WeakReferable):
    """A message to send: envelope sender, recipients and the RFC 5322 bytes.

    ``data`` is a bytes-like object or a path (``str`` or ``os.PathLike``) to
    a readable file.  ``sender`` may be ``""`` for the null reverse-path.
    ``id`` is the caller's own and is carried to the result.  Raises
    :class:`~smtpstate.errors.InvalidArgumentError` (a ``ValueError``) for a
    CR, LF, NUL, angle bracket or lone surrogate in an address, no
    recipients, an unreadable file or a memoryview that is not contiguous,
    and
    :class:`~smtpstate.errors.InvalidTypeError` (a ``TypeError``) for an
    address, recipients or data of another type.
    """

    sender: str
    recipients: Sequence[str]
    data: bytes | bytearray | memoryview | str | os.PathLike[str] = field(repr=False)
    id: Any = None

    # Written by hand, checks first: one is made per message sent, and the
    # generated frozen __init__ costs an object.__setattr__ call per field.
    def __init__(
        self,
        sender: str,
        recipients: Sequence[str],
        data: bytes | bytearray | memoryview | str | os.PathLike[str],
        id: Any = None,
    ) -> None:
        # The cache test inline: a call per address is most of the cost of
        # a message whose envelope repeats.
        if type(sender) is not str or sender not in _CHECKED_ADDRESSES:
            _check_address("sender", sender)
        if type(recipients) is list:
            recipients = tuple(recipients)
        elif type(recipients) is not tuple:
            if isinstance(recipients, _STRINGS) or not isinstance(recipients, Iterable):
                raise InvalidTypeError(
                    "recipients must be a sequence of str, not "
                    f"{type(recipients).__name__} (rule: recipients)"
                )
            recipients = tuple(recipients)
        if not recipients:
            raise InvalidArgumentError("no recipients (rule: at least one recipient)")
        for rcpt in recipients:
            if type(rcpt) is str and rcpt in _CHECKED_ADDRESSES:
                continue
            if not _check_address("recipient", rcpt):
                raise InvalidArgumentError("empty recipient (rule: address)")
        if type(data) is not bytes:
            if type(data) is memoryview:
                _check_view(data)
            elif not isinstance(data, _BYTES):
                _check_message_file(data)
        _set_sender(self, sender)
        _set_message_recipients(self, recipients)
        _set_data(self, data)
        _set_id(self, id)


def _check_view(data: memoryview) -> None:
    """The engine reads a body in one piece: a strided view, which the
    binding cannot hand over, would fail only at submission, after the
    messages before it had been sent."""
    if not data.c_contiguous:
        raise InvalidArgumentError(
            "message data is a memoryview that is not C-contiguous; pass "
            "bytes(view) (rule: body)"
        )


def _check_message_file(data: object) -> None:
    if not isinstance(data, _PATHS):
        raise InvalidTypeError(
            "message data must be bytes or a path to a readable file, not "
            f"{type(data).__name__}"
        )
    path = os.fspath(data)
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise InvalidArgumentError(
            f"message file {path!r} is not a readable file (rule: body)"
        )


# The slots' own setters: they pass by the frozen __setattr__.
_set_sender = Message.sender.__set__  # type: ignore[attr-defined]
_set_message_recipients = Message.recipients.__set__  # type: ignore[attr-defined]
_set_data = Message.data.__set__  # type: ignore[attr-defined]
_set_id = Message.id.__set__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Destination:
    """Where to deliver and the settings a reused connection must share."""

    host: str = "127.0.0.1"
    port: int = 25
    helo: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class RecipientResult:
    """One recipient's outcome with the reply (or error) that decided it."""

    recipient: str
    outcome: Outcome
    code: int
    enhanced: str
    text: str
    stage: int
    state: str
    bounce_class: int
    error: str | None
    session_id: int

    @property
    def delivered(self) -> bool:
        """True when the server accepted the message for this recipient."""
        return self.outcome is Outcome.DELIVERED

    @property
    def stage_text(self) -> str:
        """The stage as logs name it, such as ``"during RCPT TO"``."""
        try:
            return Stage(self.stage).text
        except ValueError:
            return f"custom stage {self.stage}"


class MessageResult:
    """A message's results, one per recipient in the message's order.

    Frozen, like the other records.  ``recipients`` is made from the
    engine's outcome rows the first time it is read, so a caller that only
    asks ``delivered`` or ``outcome`` (most of a bulk run) creates no
    per-recipient objects, and a kept result is one object for the cyclic
    garbage collector to walk instead of five.
    """

    __slots__ = ("message", "_rows", "_recipients")
    message: Message

    def __init__(self, message: Message, recipients: Iterable[RecipientResult]) -> None:
        made = tuple(recipients)
        if not made:
            raise InvalidArgumentError(
                "a MessageResult needs one RecipientResult per recipient, not "
                "none (rule: every recipient gets exactly one outcome)"
            )
        _set_message(self, message)
        _set_rows(self, None)
        _set_recipients(self, made)

    @property
    def recipients(self) -> tuple[RecipientResult, ...]:
        """One :class:`RecipientResult` per recipient, in the message's order."""
        try:
            return self._recipients  # type: ignore[no-any-return]
        except AttributeError:
            # A result made from rows (message_result) leaves the slot
            # empty until this first read: one store less per message.
            made = recipient_results(self.message, self._rows)
            _set_recipients(self, made)
            return made

    @property
    def delivered(self) -> bool:
        """True when every recipient was delivered."""
        rows = self._rows
        if rows is not None:
            for row in rows:
                if row[0] != _DELIVERED:
                    return False
            return True
        for r in self.recipients:
            if r.outcome is not Outcome.DELIVERED:
                return False
        return True

    @property
    def outcome(self) -> Outcome:
        """The worst outcome among the recipients."""
        rows = self._rows
        if rows is not None:
            return _OUTCOME_OF[max(row[0] for row in rows)]
        return max(r.outcome for r in self.recipients)

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, MessageResult)
        return (self.message, self.recipients) == (other.message, other.recipients)

    def __hash__(self) -> int:
        return hash((self.message, self.recipients))

    def __repr__(self) -> str:
        return (
            f"MessageResult(message={self.message!r}, recipients={self.recipients!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (MessageResult, (self.message, self.recipients))


_set_message = MessageResult.message.__set__  # type: ignore[attr-defined]
_set_rows = MessageResult._rows.__set__  # type: ignore[attr-defined]
_set_recipients = MessageResult._recipients.__set__  # type: ignore[attr-defined]
_OUTCOME_OF = {int(o): o for o in Outcome}
_DELIVERED = int(Outcome.DELIVERED)
_new = object.__new__


def recipient_results(
    message: Message, rows: Sequence[Sequence[Any]]
) -> tuple[RecipientResult, ...]:
    """Results from rows of (outcome, code, enhanced, text, stage, state,
    bounce class, error, session id), one per recipient in order.

    The frozen records are filled in directly rather than through their
    generated ``__init__`` (one ``object.__setattr__`` per field)."""
    out = []
    for rcpt, (kind, code, enhanced, text, stage, state, bounce, error, session) in zip(
        message.recipients, rows, strict=True
    ):
        r = _new(RecipientResult)
        d = r.__dict__
        d["recipient"] = rcpt
        d["outcome"] = _OUTCOME_OF[kind]
        d["code"] = code
        d["enhanced"] = enhanced
        d["text"] = text
        d["stage"] = stage
        d["state"] = state
        d["bounce_class"] = bounce
        d["error"] = error
        d["session_id"] = session
        out.append(r)
    return tuple(out)


def message_result(
    message: Message, rows: tuple[tuple[Any, ...], ...]
) -> MessageResult:
    """The result of ``message`` from its recipients' outcome rows (as
    :func:`recipient_results` takes them), which must be plain tuples of
    plain values: they are kept as they are until ``recipients`` is read."""
    r = _new(MessageResult)
    _set_message(r, message)
    _set_rows(r, rows)
    return r


TIMEOUT_NAMES = {
    "connect": lib.SMTP_TIMEOUT_CONNECT,
    "banner": lib.SMTP_TIMEOUT_BANNER,
    "ehlo": lib.SMTP_TIMEOUT_EHLO,
    "mail": lib.SMTP_TIMEOUT_MAIL,
    "rcpt": lib.SMTP_TIMEOUT_RCPT,
    "data": lib.SMTP_TIMEOUT_DATA,
    "body": lib.SMTP_TIMEOUT_BODY,
    "confirm": lib.SMTP_TIMEOUT_CONFIRM,
    "rset": lib.SMTP_TIMEOUT_RSET,
    "quit": lib.SMTP_TIMEOUT_QUIT,
    "tls": lib.SMTP_TIMEOUT_TLS,
    "idle": lib.SMTP_TIMEOUT_IDLE,
    "custom": lib.SMTP_TIMEOUT_CUSTOM,
}


@dataclass(frozen=True)
class Settings:
    """Engine settings for one delivery call (DESIGN 9 defaults)."""

    concurrency: int = 20
    max_messages_per_connection: int = 100
    max_recipients_per_transaction: int = 100
    queue_capacity: int = 10000
    fold_long_lines: int = 0
    timeouts: Mapping[str, float] = field(default_factory=dict)
    wire_trace: bool = False


_EAGAIN = lib.SMTP_EAGAIN
_submit = lib.smtpstate_py_submit
_from_buffer = ffi.from_buffer
_NULL = ffi.NULL
# Outcomes gathered in C before Python converts them: few enough that the
# results stream and the collector stays small, enough that entering
# Python costs little per message.
_BATCH = 256
# Half a window settles between refills, and a refill costs a return to
# Python and often a wait in the kernel (some 20 us where the benchmarks
# ran): 64 messages between refills rather than 32 save about 0.3 us a
# message at concurrency 10.
_MIN_WINDOW = 128
# An outcome's row as C lays it out: OUTCOME_COLUMNS int64_t.
_ROW = struct.Struct(f"={lib.SMTPSTATE_PY_OUTCOME_COLUMNS}q")


def _utf8(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


@functools.cache
def _error_name(code: int) -> str:
    return ffi.string(lib.smtp_error_name(code)).decode()


# A message handed to C is a list: [its place in the input, the Message,
# its recipients' outcome rows as they come (None for one recipient, whose
# one outcome settles it), outcomes still due, then what its C record
# points into: envelope strings and body buffer, held until its last
# outcome].  A list, not a record class: one is made per message sent.
_INDEX, _MESSAGE, _ROWS, _DUE = range(4)


class _Engine:
    """One C scheduler, its collector and the messages it holds."""

    #: Schedulers open in this process; worker processes are forked only
    #: when there are none, so no worker holds copies of their sockets.
    live = 0
    #: True while a C call that may run Python states is under way: Python
    #: code that runs then is a state's callable (DESIGN 12).
    in_loop = False

    def __init__(
        self, dest: Destination, settings: Settings, event_sink: Any | None
    ) -> None:
        self._collector = ffi.new("struct smtpstate_py_collector *")
        self._event_sink = event_sink
        self._config = self._build_config(settings, event_sink is not None)
        self._dest_keep = self._build_destination(dest)
        self._sched = lib.smtp_scheduler_new(self._config)
        if self._sched == ffi.NULL:
            code = lib.smtp_last_error_code()
            raise error_from_code(code, ffi.string(lib.smtp_last_error()).decode())
        lib.smtpstate_py_use_destination(self._collector, self._sched, self.dest)
        _Engine.live += 1
        self._refused: list[tuple[int, Any]] = []
        # The last envelope and its C strings (_use_envelope):
        # (sender, recipients, count, char[], [char[]], char *[]).
        self._envelope: tuple[Any, ...] = (None, None, 0, None, None, None)
        self.in_flight: dict[int, Any] = {}
        # Messages handed to C at a time: enough to keep every connection
        # busy with one queued behind it, few enough that a message and its
        # entry die young (the cyclic collector's cheap generation) and
        # the caller's iterable is read just ahead of the wire.
        self.window = min(
            settings.queue_capacity, max(_MIN_WINDOW, 4 * settings.concurrency)
        )

    def _build_config(self, s: Settings, with_events: bool) -> Any:
        cfg = ffi.new("smtp_config *")
        lib.smtp_config_init(cfg)
        cfg.max_connections = s.concurrency
        cfg.max_connections_per_destination = s.concurrency
        cfg.max_messages_per_connection = s.max_messages_per_connection
        cfg.max_recipients_per_transaction = s.max_recipients_per_transaction
        cfg.queue_capacity = s.queue_capacity
        cfg.fold_long_lines = s.fold_long_lines
        cfg.wire_trace = 1 if s.wire_trace else 0
        for name, seconds in s.timeouts.items():
            cfg.timeout_ms[TIMEOUT_NAMES[name]] = max(1, round(seconds * 1000))
        cfg.on_outcome = lib.smtpstate_py_on_outcome
        cfg.outcome_arg = self._collector
        if with_events:
            cfg.on_event = lib.smtpstate_py_on_event
            cfg.event_arg = self._collector
        return cfg

    def _build_destination(self, dest: Destination) -> tuple[Any, ...]:
        self.dest = ffi.new("smtp_destination *")
        host = ffi.new("char[]", dest.host.encode())
        self.dest.host = host
        self.dest.port = dest.port
        keep: list[Any] = [host]
        if dest.helo is not None:
            helo = ffi.new("char[]", dest.helo.encode())
            self.dest.helo = helo
            keep.append(helo)
        if dest.source is not None:
            source = ffi.new("char[]", dest.source.encode())
            self.dest.source = source
            keep.append(source)
        return tuple(keep)

    def submit(self, index: int, message: Message) -> bool:
        """Hands a message to C; False when the queue is full (nothing was
        queued: submit it again after a step)."""
        envelope = self._envelope
        if message.sender != envelope[0] or message.recipients != envelope[1]:
            envelope = self._use_envelope(message)
        data = message.data
        if type(data) is bytes or isinstance(data, _BYTES):
            buf = _from_buffer(data)
            msg_id = _submit(self._collector, buf, len(buf), _NULL)
        else:
            buf = ffi.new("char[]", os.fsencode(data))
            msg_id = _submit(self._collector, _NULL, 0, buf)
        if msg_id > 0:
            # What C points into (the body, the envelope's strings) is held
            # until the message's last outcome.  The outcomes due are the
            # recipients C was given, counted from its strings: a Message
            # subclass may answer `recipients` differently at each read.
            # A lone recipient's entry is a tuple, never changed; more
            # recipients' is a list whose rows and count fill as they come.
            n = envelope[2]
            self.in_flight[msg_id] = (
                (index, message, None, 1, envelope, buf)
                if n == 1
                else [index, message, [None] * n, n, envelope, buf]
            )
            return True
        if msg_id == _EAGAIN:
            return False
        why = ffi.string(lib.smtp_last_error()).decode("utf-8", "replace")
        if msg_id != lib.SMTP_EINVAL or not isinstance(data, _PATHS):
            raise error_from_code(msg_id, why)
        # Message() found the file readable, so it went since: a local
        # condition of this message alone, which may pass (transient), and
        # the others' results must not be lost to an exception.
        self._refused.append(
            (index, self._finish(message, self._local_rows(message, msg_id, why)))
        )
        return True

    def _use_envelope(self, message: Message) -> tuple[Any, ...]:
        """The C strings of the message's envelope, for this and the next
        messages until one differs (a batch usually repeats its sender and
        recipients): (sender, recipients, their count, the C strings).
        Each in-flight entry holds the envelope it was sent with, so its
        strings live until the entry's last outcome."""
        sender, recipients = message.sender, message.recipients
        old = self._envelope
        sender_c = old[3] if sender == old[0] else ffi.new("char[]", sender.encode())
        if recipients == old[1]:
            rcpts, rcpt_array = old[4], old[5]
        else:
            rcpts = [ffi.new("char[]", r.encode()) for r in recipients]
            rcpt_array = ffi.new("char *[]", rcpts)
        self._envelope = (sender, recipients, len(rcpts), sender_c, rcpts, rcpt_array)
        lib.smtpstate_py_use_envelope(self._collector, sender_c, rcpt_array, len(rcpts))
        return self._envelope

    @staticmethod
    def _local_rows(message: Message, rc: int, why: str) -> tuple[Any, ...]:
        """Rows for a message settled here, before any connection: every
        recipient transient, with the error's name and reason."""
        name = ffi.string(lib.smtp_error_name(rc)).decode()
        row = (int(Outcome.TRANSIENT), 0, "", why, int(Stage.NOT_CONNECTED), "",
               int(BounceClass.UNDETERMINED), name, 0)  # fmt: skip
        return (row,) * len(message.recipients)

    def step(
        self, timeout_ms: int, refill_at: int = 0, batch: int = _BATCH
    ) -> list[tuple[int, MessageResult]]:
        """Turns of the C loop, then the messages that completed in them.

        The first turn waits up to ``timeout_ms``.  More turns follow in C
        until ``batch`` outcomes are in (0: one turn only, as an asyncio
        caller wants), a turn finds nothing to do, no more than
        ``refill_at`` messages are left unsettled (the caller has more to
        submit), or 50 ms have passed since the first turn (so a signal is
        seen).  An interrupt a Python state raised is raised here."""
        outer, _Engine.in_loop = _Engine.in_loop, True
        try:
            rc = lib.smtpstate_py_run(
                self._sched, self._collector, timeout_ms, batch, refill_at
            )
        finally:
            _Engine.in_loop = outer
        _raise_interrupt()
        if rc == lib.SMTP_EBUSY:
            raise LoopBusyError(ffi.string(lib.smtp_last_error()).decode())
        if rc < 0:
            raise error_from_code(rc, ffi.string(lib.smtp_last_error()).decode())
        return self.collect()

    def collect(self) -> list[tuple[int, MessageResult]]:
        """The (index, result) pairs of the messages settled since the last
        call.  The collector is emptied however this ends: rows left in it
        after an exception (an events file that fails, an interrupt) would
        be read again by close(), for messages already taken out of
        in_flight."""
        c = self._collector
        if c.failed:
            raise SmtpStateError("out of memory while collecting outcomes")
        try:
            return self._read(c)
        finally:
            lib.smtpstate_py_collector_reset(c)

    def _read(self, c: Any) -> list[tuple[int, MessageResult]]:
        done, self._refused = self._refused, []
        text = ffi.unpack(c.text, c.text_len) if c.text_len else b""
        if c.n_outcomes:
            cells = ffi.buffer(c.outcomes, c.n_outcomes * _ROW.size)
            # Replies are ASCII as a rule: then the arena is decoded once
            # and each string is a slice of it.
            arena = text.decode("ascii") if text.isascii() else None
            in_flight = self.in_flight
            finish = self._finish
            # C gives a string equal to the one above it in its column the
            # same place, so a repeated one is decoded once.
            e_at = e_len = t_at = t_len = s_at = s_len = -1
            for (message_id, rcpt, kind, code, enh_at, enh_len, text_at, text_len,
                 stage, state_at, state_len, bounce, error, session) in (
                     _ROW.iter_unpack(cells)):  # fmt: skip
                if enh_at != e_at or enh_len != e_len:
                    e_at, e_len = enh_at, enh_len
                    enhanced = (
                        arena[enh_at : enh_at + enh_len]
                        if arena is not None
                        else _utf8(text[enh_at : enh_at + enh_len])
                    )
                if text_at != t_at or text_len != t_len:
                    t_at, t_len = text_at, text_len
                    reply = (
                        arena[text_at : text_at + text_len]
                        if arena is not None
                        else _utf8(text[text_at : text_at + text_len])
                    )
                if state_at != s_at or state_len != s_len:
                    s_at, s_len = state_at, state_len
                    state = (
                        arena[state_at : state_at + state_len]
                        if arena is not None
                        else _utf8(text[state_at : state_at + state_len])
                    )
                # The fields in RecipientResult's order after the recipient,
                # as plain values: a result keeps them until they are read,
                # and a worker process sends them as they are.
                row = (kind, code, enhanced, reply, stage, state, bounce,
                       _error_name(error) if error else None, session)  # fmt: skip
                flight = in_flight[message_id]
                rows = flight[_ROWS]
                if rows is None:
                    rows = (row,)
                else:
                    rows[rcpt] = row
                    flight[_DUE] -= 1
                    if flight[_DUE]:
                        continue
                    rows = tuple(rows)
                del in_flight[message_id]
                done.append((flight[_INDEX], finish(flight[_MESSAGE], rows)))
        if c.n_events and self._event_sink is not None:
            self._event_sink.emit_batch(c.events, c.n_events, text)
        return done

    #: A message's result from its recipients' rows, all in by now (a
    #: worker's engine returns the rows instead).
    _finish = staticmethod(message_result)

    @property
    def open(self) -> bool:
        return self._sched != ffi.NULL

    @property
    def fd(self) -> int:
        return int(lib.smtp_scheduler_fd(self._sched))

    def next_deadline(self) -> int:
        return int(lib.smtp_scheduler_next_deadline(self._sched))

    def drain(self) -> None:
        lib.smtp_scheduler_drain(self._sched)

    @property
    def idle(self) -> bool:
        """Nothing pending and no connection open."""
        return (
            lib.smtp_scheduler_pending(self._sched) == 0
            and lib.smtp_scheduler_connections(self._sched) == 0
        )

    def close(self) -> list[tuple[int, MessageResult]]:
        """Frees the scheduler; anything unsettled gets a transient outcome."""
        if self._sched == ffi.NULL:
            return []
        outer, _Engine.in_loop = _Engine.in_loop, True
        try:
            lib.smtp_scheduler_free(self._sched)
        finally:
            _Engine.in_loop = outer
        self._sched = ffi.NULL
        _Engine.live -= 1
        try:
            done = self.collect()
        finally:
            lib.smtpstate_py_collector_free(self._collector)
        _raise_interrupt()
        return done


def _raise_interrupt() -> None:
    """Raises the KeyboardInterrupt or SystemExit a Python state raised
    inside the C call that just returned (cffi cannot pass it through)."""
    interrupt = _states.take_interrupt()
    if interrupt is not None:
        raise interrupt


def _settings(kwargs: dict[str, Any]) -> Settings:
    """The settings, each checked (DESIGN 9's limits), or the error naming
    the rule."""
    known = Settings.__dataclass_fields__
    for name in kwargs:
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidTypeError(
                f"unknown delivery setting {name!r}{hint}; known: "
                f"{', '.join(known)} (rule: settings)"
            )
    s = Settings(**kwargs)
    for name in (
        "concurrency",
        "max_messages_per_connection",
        "max_recipients_per_transaction",
        "queue_capacity",
    ):
        _check_int(name, getattr(s, name), 1, 1_000_000)
    _check_int("fold_long_lines", s.fold_long_lines, 0, 1_000_000)
    if not isinstance(s.timeouts, Mapping):
        raise InvalidTypeError(
            f"timeouts={s.timeouts!r} is not a mapping of names to seconds "
            "(rule: timeouts)"
        )
    for name, seconds in s.timeouts.items():
        if name not in TIMEOUT_NAMES:
            raise InvalidArgumentError(
                f"unknown timeout {name!r}; known: {', '.join(TIMEOUT_NAMES)}"
            )
        if not isinstance(seconds, int | float) or not 0 < seconds <= 86400:
            raise InvalidArgumentError(
                f"timeout {name}={seconds!r} must be a number of seconds "
                "above 0 and at most a day (rule: timeout)"
            )
    return s


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError(
            f"{name} must be an int, not {type(value).__name__} (rule: {name})"
        )
    if not low <= value <= high:
        raise InvalidArgumentError(
            f"{name} must be an integer from {low:,} to {high:,}, not {value!r} "
            f"(rule: {name})"
        )


def _check_encodable(what: str, value: str, rule: str) -> None:
    """Text the engine sends must encode: a lone surrogate cannot."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(
            f"{what} {value!r} holds a lone surrogate, which has no UTF-8 form "
            f"(rule: {rule})"
        ) from None


def _check_token(what: str, value: object, max_len: int, rule: str) -> None:
    """The engine's rule for a host, EHLO name or source address: one token
    of printable ASCII without space or angle brackets."""
    if not isinstance(value, str):
        raise InvalidTypeError(
            f"{what} must be str, not {type(value).__name__} (rule: {rule})"
        )
    if (
        not value
        or len(value) > max_len
        or any(not "!" <= c <= "~" or c in "<>" for c in value)
    ):
        raise InvalidArgumentError(
            f"{what} {value!r} is empty, longer than {max_len} or holds a space, "
            f"control byte, non-ASCII character or angle bracket (rule: {rule})"
        )


def _check_destination(dest: Destination) -> Destination:
    """The rules smtp_scheduler_submit applies, checked in Python first so
    that a wrong type is a clear error too."""
    _check_token("host", dest.host, 255, "host")
    if isinstance(dest.port, bool) or not isinstance(dest.port, int):
        raise InvalidTypeError(
            f"port {dest.port!r} must be an int, not {type(dest.port).__name__} "
            "(rule: port)"
        )
    if not 0 < dest.port < 65536:
        raise InvalidArgumentError(f"port {dest.port!r} is not 1-65535 (rule: port)")
    if dest.helo is not None:
        _check_token("EHLO name", dest.helo, 255, "EHLO name")
    if dest.source is not None:
        _check_token("source address", dest.source, 64, "source")
    return dest


def _not_in_loop(func: str) -> None:
    """Refuses a delivery started by a state's callable, which would run
    the same states again inside the running loop."""
    if _Engine.in_loop:
        raise LoopBusyError(
            f"{func}() called from inside a state's callable while the loop "
            "runs (rule: no delivery from inside a state; the loop is not "
            "re-entrant)"
        )


def _check_iterable(messages: object) -> None:
    if not isinstance(messages, Iterable):
        raise InvalidTypeError(
            f"messages must be an iterable of Message, not "
            f"{type(messages).__name__} (rule: messages)"
        )


def _checked(messages: Iterable[Message]) -> Iterator[Message]:
    _check_iterable(messages)
    for message in messages:
        if not isinstance(message, Message):
            raise InvalidTypeError(f"expected Message, not {type(message).__name__}")
        yield message


def _call_arguments(
    func: str,
    host: str,
    port: int,
    helo: str | None,
    source: str | None,
    log_events: bool,
    json_events: Any,
    settings: dict[str, Any],
) -> tuple[Destination, Settings, Any]:
    """The checks every delivery function makes before anything is sent:
    not from inside a state; the destination, the settings and the event
    options each by its rule."""
    _not_in_loop(func)
    dest = _check_destination(Destination(host, port, helo, source))
    config = _settings(settings)
    return dest, config, _events.sink_for(log_events, json_events)


def deliver(
    messages: Iterable[Message],
    host: str = "127.0.0.1",
    port: int = 25,
    *,
    helo: str | None = None,
    source: str | None = None,
    log_events: bool = False,
    json_events: Any = None,
    workers: int = 1,
    **settings: Any,
) -> list[MessageResult]:
    """Sends every message to ``host:port`` and returns their results in
    input order, once every recipient has an outcome.

    Settings: ``concurrency`` (connections at once, 20),
    ``max_messages_per_connection`` (100), ``max_recipients_per_transaction``
    (100), ``queue_capacity`` (10,000), ``fold_long_lines`` (0: never),
    ``timeouts`` (seconds by name: connect, banner, ehlo, mail, rcpt, data,
    body, confirm, rset, quit, idle, custom), ``wire_trace``.  Events go to
    the ``smtpstate`` logger with ``log_events`` and as JSON lines to the
    file object ``json_events``.  Raises
    :class:`~smtpstate.errors.InvalidTypeError` or
    :class:`~smtpstate.errors.InvalidArgumentError` for bad arguments before
    anything is sent, and :class:`~smtpstate.errors.WrongThreadError` off the
    thread that imported smtpstate.  A message file that is gone or
    unreadable by the time the engine takes it fails that message alone:
    every recipient TRANSIENT, ``error="SMTP_EINVAL"``, stage 0, the
    engine's reason as text; the others are still sent.

    ``workers=N`` (1 to 64) forks N worker processes, each with its own
    scheduler and a copy of the state table, that share the messages; the
    results are the same, in the same order (see :mod:`smtpstate.workers`).
    A message a worker took and never reported, because the worker died,
    gets a transient result with ``error="SMTP_EWORKER"``.  The default, 1,
    sends from this process.

    Called from a state's callable it raises
    :class:`~smtpstate.errors.LoopBusyError`: the loop is not re-entrant.
    """
    dest, config, sink = _call_arguments(
        "deliver", host, port, helo, source, log_events, json_events, settings
    )
    items = list(_checked(messages))
    if workers != 1:
        from . import workers as _workers

        pairs = _workers.results(items, dest, config, sink, workers)
    else:
        engine = _Engine(dest, config, sink)
        pairs = (p for done in _run(engine, enumerate(items), config) for p in done)
    results: list[MessageResult | None] = [None] * len(items)
    for index, result in pairs:
        results[index] = result
    return [r for r in results if r is not None]


def deliver_iter(
    messages: Iterable[Message],
    host: str = "127.0.0.1",
    port: int = 25,
    *,
    helo: str | None = None,
    source: str | None = None,
    log_events: bool = False,
    json_events: Any = None,
    workers: int = 1,
    **settings: Any,
) -> Iterator[MessageResult]:
    """Sends the messages and yields each :class:`MessageResult` as its last
    recipient is settled, in completion order, without asyncio.

    Messages are taken from ``messages`` just ahead of the connections (a
    few per connection, never more than ``queue_capacity`` unsettled), so
    a generator of millions of messages is sent in flat memory, and a
    result the caller drops is freed.  The
    arguments and settings are checked before anything is sent, as for
    :func:`deliver`; an item of ``messages`` that is not a
    :class:`Message` raises :class:`~smtpstate.errors.InvalidTypeError` when
    it is reached (the messages before it have been handed over).  With
    ``workers=N`` the messages are read in full first.

    Closing the iterator before the end (``break``, or an exception in the
    caller's loop) closes every connection at once: the results of messages
    still in flight are not yielded, and any of them may have been
    delivered.  Read it to the end to know every message's fate.
    """
    dest, config, sink = _call_arguments(
        "deliver_iter", host, port, helo, source, log_events, json_events, settings
    )
    if workers != 1:
        from . import workers as _workers

        pairs = _workers.results(list(_checked(messages)), dest, config, sink, workers)
        return (result for _, result in pairs)
    _check_iterable(messages)
    return _stream(messages, dest, config, sink)


def _stream(
    messages: Iterable[Message],
    dest: Destination,
    config: Settings,
    sink: Any | None,
) -> Iterator[MessageResult]:
    """deliver_iter's results; the engine is made at the first ``next()``,
    so an iterator never read holds no scheduler."""
    engine = _Engine(dest, config, sink)
    for done in _run(engine, enumerate(messages), config):
        for _, result in done:
            yield result


def _run(
    engine: _Engine, queue: Iterator[tuple[int, Any]], config: Settings
) -> Iterator[list[tuple[int, MessageResult]]]:
    """Sends what ``queue`` holds through ``engine``, taking messages as the
    queue has room, and yields the (index, result) pairs of each step, as
    messages complete; closes the engine however it ends.  Each item is
    checked to be a Message as it is taken."""
    try:
        feed = _Feed(queue)
        while True:
            feed.fill(engine)
            if feed.exhausted and not engine.in_flight:
                break
            refill_at = 0 if feed.exhausted else engine.window // 2
            # Results settled at submission are due now, with no wait.
            yield engine.step(0 if engine._refused else -1, refill_at)
        engine.drain()
        while not engine.idle:
            yield engine.step(-1)
        done = engine.close()
    finally:
        if engine.open:
            engine.close()
    yield done


class _Feed:
    """The caller's (index, message) pairs, handed to an engine as its
    window has room; each item is checked to be a Message as it is taken."""

    __slots__ = ("items", "waiting", "exhausted")

    def __init__(self, items: Iterator[tuple[int, Any]]) -> None:
        self.items = items
        self.waiting: tuple[int, Message] | None = None
        self.exhausted = False

    def fill(self, engine: _Engine) -> None:
        """Submits until the window is full, the queue refuses (the item
        then waits here) or the items run out.  A message settled at
        submission (its file gone) holds its place until its result is
        collected: else a run of them would all be read, and kept, before
        the first result."""
        submit = engine.submit
        # Each submission takes one place, queued or settled at once.
        room = engine.window - len(engine.in_flight) - len(engine._refused)
        while room > 0:
            item = self.waiting
            if item is None:
                item = next(self.items, None)
                if item is None:
                    self.exhausted = True
                    return
            message = item[1]
            if type(message) is not Message and not isinstance(message, Message):
                raise InvalidTypeError(
                    f"expected Message, not {type(message).__name__}"
                )
            if not submit(item[0], message):
                self.waiting = item
                return
            self.waiting = None
            room -= 1


async def deliver_async(
    messages: Iterable[Message],
    host: str = "127.0.0.1",
    port: int = 25,
    *,
    helo: str | None = None,
    source: str | None = None,
    log_events: bool = False,
    json_events: Any = None,
    workers: int = 1,
    **settings: Any,
) -> AsyncIterator[MessageResult]:
    """Sends the messages and yields each :class:`MessageResult` as its last
    recipient is settled, in completion order.

    The C loop runs on the asyncio thread, woken through the scheduler's
    descriptor and its next deadline, so other tasks keep running while mail
    is sent.  Arguments and errors as :func:`deliver`; with ``workers=N``
    the messages are read in full first, and the worker processes' results
    are read on the asyncio thread.
    """
    dest, config, sink = _call_arguments(
        "deliver_async", host, port, helo, source, log_events, json_events, settings
    )
    if workers != 1:
        from . import workers as _workers

        parallel = _workers.deliver_async(
            list(_checked(messages)), dest, config, sink, workers
        )
        async with contextlib.aclosing(parallel):
            async for result in parallel:
                yield result
        return
    import asyncio

    items = _checked(messages)
    engine = _Engine(dest, config, sink)
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    loop.add_reader(engine.fd, ready.set)
    try:
        feed = _Feed(enumerate(items))
        while True:
            if not feed.exhausted:
                feed.fill(engine)
            # Results settled at submission free their places in the
            # window as they are collected: the feed goes on at once, as
            # no descriptor may wake a wait when they were all there is.
            settled_here = bool(engine._refused)
            for _, result in engine.step(0, batch=0):
                yield result
            if feed.exhausted and not engine.in_flight:
                break
            await _wait(ready, 0 if settled_here else engine.next_deadline())
        # Idle is checked after every step: a wait with nothing open and no
        # deadline would never end.
        engine.drain()
        engine.step(0, batch=0)
        while not engine.idle:
            await _wait(ready, engine.next_deadline())
            engine.step(0, batch=0)
        loop.remove_reader(engine.fd)
        for _, result in engine.close():
            yield result
    finally:
        if engine.open:
            loop.remove_reader(engine.fd)
            engine.close()


async def _wait(ready: asyncio.Event, deadline_ms: int) -> None:
    """Waits for the descriptor or the next deadline, whichever is first."""
    import asyncio

    if deadline_ms == 0:
        await asyncio.sleep(0)
        return
    timeout = None if deadline_ms < 0 else deadline_ms / 1000
    ready.clear()
    # Not wait_for: before Python 3.12 it drops a cancellation that comes
    # as the descriptor turns ready, and asyncio.run turns Ctrl-C into one.
    waiter = asyncio.ensure_future(ready.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
