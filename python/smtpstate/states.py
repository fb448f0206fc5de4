"""Python states in the C state table.

A :class:`SmtpState` is copied into the same static table that C states
live in.  Its C record points at four trampolines declared
``extern "Python"`` in the binding; the record's ``closure`` is a cffi
handle to the registration, through which a trampoline finds the Python
callables.  The setup, which runs once per message for a state in the
transaction, has a leaner C entry (``_state_setup.c``) that holds the
registration by state id.  The registry below holds each registration
(and so its callables and closure) alive exactly while the state is
registered.
"""

from __future__ import annotations

import atexit
import enum
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import _raw
from ._smtpstate_cffi import ffi, lib
from .errors import (
    FrozenStateError,
    InvalidArgumentError,
    InvalidTypeError,
    SessionExpiredError,
    SessionMovedError,
    error_from_code,
)

__all__ = [
    "SKIP",
    "WANT_READ",
    "WANT_WRITE",
    "BuiltinState",
    "Events",
    "Reply",
    "command_state",
    "Session",
    "SmtpState",
    "Stage",
    "StateInfo",
    "register_smtp_client_state",
    "smtp_get_state",
    "smtp_get_state_machine",
    "smtp_unregister_client_state",
]

_raw.smtp_library_init()


class BuiltinState(enum.IntEnum):
    """Ids of the built-in states, as defined by the C library."""

    BANNER = lib.SMTP_STATE_BANNER
    EHLO = lib.SMTP_STATE_EHLO
    STARTTLS = lib.SMTP_STATE_STARTTLS
    AUTH = lib.SMTP_STATE_AUTH
    XCLIENT = lib.SMTP_STATE_XCLIENT
    SESSION_READY = lib.SMTP_STATE_SESSION_READY
    TRANSACTION = lib.SMTP_STATE_TRANSACTION
    MAIL_FROM = lib.SMTP_STATE_MAIL_FROM
    RCPT_TO = lib.SMTP_STATE_RCPT_TO
    DATA = lib.SMTP_STATE_DATA
    BODY = lib.SMTP_STATE_BODY
    CONFIRMATION = lib.SMTP_STATE_CONFIRMATION
    RSET = lib.SMTP_STATE_RSET
    QUIT = lib.SMTP_STATE_QUIT


class Stage(enum.IntEnum):
    """Connection stage codes, as defined by the C library."""

    NOT_CONNECTED = lib.SMTP_STAGE_NOT_CONNECTED
    IDLE = lib.SMTP_STAGE_IDLE
    MAIL_FROM = lib.SMTP_STAGE_MAIL_FROM
    AFTER_MAIL_FROM = lib.SMTP_STAGE_AFTER_MAIL_FROM
    RCPT_TO = lib.SMTP_STAGE_RCPT_TO
    AFTER_RCPT_TO = lib.SMTP_STAGE_AFTER_RCPT_TO
    DATA = lib.SMTP_STAGE_DATA
    AFTER_DATA = lib.SMTP_STAGE_AFTER_DATA
    BODY = lib.SMTP_STAGE_BODY
    CONFIRMATION = lib.SMTP_STAGE_CONFIRMATION
    EHLO = lib.SMTP_STAGE_EHLO
    AFTER_EHLO = lib.SMTP_STAGE_AFTER_EHLO
    BANNER = lib.SMTP_STAGE_BANNER
    RSET = lib.SMTP_STAGE_RSET
    AFTER_RSET = lib.SMTP_STAGE_AFTER_RSET
    STARTTLS = lib.SMTP_STAGE_STARTTLS
    AFTER_STARTTLS = lib.SMTP_STAGE_AFTER_STARTTLS
    TLS_HANDSHAKE = lib.SMTP_STAGE_TLS_HANDSHAKE
    TLS_RENEGOTIATE = lib.SMTP_STAGE_TLS_RENEGOTIATE
    XCLIENT = lib.SMTP_STAGE_XCLIENT
    AFTER_XCLIENT = lib.SMTP_STAGE_AFTER_XCLIENT
    OUT_OF_BAND = lib.SMTP_STAGE_OUT_OF_BAND
    UNKNOWN = lib.SMTP_STAGE_UNKNOWN

    @property
    def text(self) -> str:
        """The stage's text in logs, such as ``"during MAIL FROM"``."""
        return ffi.string(lib.smtp_stage_name(self.value)).decode()


class Events(enum.IntFlag):
    """The event bits a state's callback receives (values from C)."""

    READ = lib.E_READ
    WRITE = lib.E_WRITE
    EXCEPTION = lib.E_EXCEPTION
    TIMEOUT = lib.E_TIMEOUT
    ASYNC = lib.E_ASYNC


#: Returned by a ``setup`` callable to pass straight to the next state.
SKIP = lib.SMTP_STATE_SKIP
#: What a callable may return to say which events it waits for.
WANT_READ = lib.SMTP_WANT_READ
WANT_WRITE = lib.SMTP_WANT_WRITE
_WANT_BITS = lib.SMTP_WANT_READ | lib.SMTP_WANT_WRITE
# The outcomes Session.fail may decide (smtp_outcome_set's rule).
_FAIL_KINDS = (lib.SMTP_OUTCOME_TRANSIENT, lib.SMTP_OUTCOME_PERMANENT)


@dataclass(frozen=True)
class Reply:
    """A server reply as a Python state reads it."""

    code: int
    enhanced: str
    text: str

    @property
    def transient(self) -> bool:
        """A 4xx reply."""
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        """A 5xx reply."""
        return self.code >= 500


_NULL = ffi.NULL
_next_state = lib.smtp_next_state


class Session:
    """A connection as a Python state sees it, valid only during one call.

    Every method acts on the C connection; using the session after the
    callable returned raises
    :class:`~smtpstate.errors.SessionExpiredError`.  A call moves the
    connection on once, with :meth:`next`, :meth:`fail` or :meth:`close`: a
    second of these raises :class:`~smtpstate.errors.SessionMovedError` and
    does nothing.
    """

    __slots__ = ("_conn", "_dc", "_connh", "_closed", "_moved", "_read")

    def __init__(self, conn: Any, dc: Any = None, connh: Any = None) -> None:
        self._conn = conn
        self._dc = dc
        self._connh = connh
        self._closed = False
        self._moved: str | None = None  # the first of next, fail, close
        # The connection's last reply may be an earlier state's (EHLO's, or
        # the previous message's confirmation): fail() cites it only when
        # this call read it.
        self._read = False

    def _live(self) -> Any:
        if self._conn is None:
            raise SessionExpiredError(
                "Session used after its callable returned "
                "(rule: a Session is valid only during the call)"
            )
        return self._conn

    def _expire(self) -> None:
        self._conn = None

    def _once(self, move: str) -> None:
        """A call moves the connection on at most once: a second move would
        act for the state the first one entered (next() twice skips that
        state's reply), or on a connection already closed."""
        if self._moved is not None:
            raise SessionMovedError(
                f"Session.{move}() after {self._moved}() in the same call "
                "does nothing (rule: one move per call: next, fail or close)"
            )

    def _need_dc(self) -> Any:
        self._live()
        if self._dc is None or self._dc == ffi.NULL:
            raise SessionExpiredError(
                "this call has no delivery context (rule: only setup and "
                "callback can send, read or move on)"
            )
        return self._dc

    @property
    def session_id(self) -> int:
        """The connection's 64-bit session id, unique in the process."""
        return int(self._live().session_id)

    @property
    def state_id(self) -> int:
        """The id of the state the connection is in."""
        return int(self._live().state.id)

    @property
    def local_state(self) -> int:
        """The current state's own progress counter (``conn->local_state``)."""
        return int(self._live().local_state)

    @local_state.setter
    def local_state(self, value: int) -> None:
        self._live().local_state = value

    @property
    def esmtp(self) -> bool:
        """True when the server accepted EHLO."""
        return bool(self._live().esmtp)

    @property
    def capabilities(self) -> int:
        """The ``SMTP_CAP_*`` bits the server offered in its EHLO reply."""
        return int(self._live().capabilities)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` or :meth:`fail` ended the connection."""
        return self._closed

    def send(self, command: str | bytes) -> None:
        """Queues one command; CRLF is added when missing.  Raises
        :class:`~smtpstate.errors.InvalidArgumentError` for a CR, LF or NUL
        inside it or a command over ``SMTP_WRITE_BUFFER_MAX`` (64 KiB) with
        its CRLF, and :class:`~smtpstate.errors.SmtpStateError` when it does
        not fit now."""
        if isinstance(command, str):
            try:
                line = command.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidArgumentError(
                    "command holds a lone surrogate, which has no UTF-8 form "
                    "(rule: command)"
                ) from None
        elif isinstance(command, bytes | bytearray):
            line = bytes(command)
        else:
            raise InvalidTypeError(
                f"command must be str or bytes, not {type(command).__name__}"
            )
        line = line.removesuffix(b"\r\n")
        if b"\r" in line or b"\n" in line or b"\0" in line:
            raise InvalidArgumentError(
                "command contains CR, LF or NUL (rule: one command per line)"
            )
        if len(line) + 2 > lib.SMTP_WRITE_BUFFER_MAX:
            raise InvalidArgumentError(
                f"command of {len(line) + 2} bytes with its CRLF is over the "
                f"{lib.SMTP_WRITE_BUFFER_MAX}-byte output buffer (rule: command "
                "size)"
            )
        conn = self._live()
        if self._closed:
            raise SessionMovedError(
                "Session.send() after the connection was closed in this call"
            )
        rc = lib.smtp_conn_write(conn, line + b"\r\n", len(line) + 2)
        if rc != 0:
            reason = ffi.string(lib.smtp_strerror(rc)).decode()
            if rc == lib.SMTP_EPROTO:  # every such refusal records why
                reason = ffi.string(lib.smtp_last_error()).decode()
            raise error_from_code(rc, f"cannot queue the command: {reason}")

    def read_reply(self, *codes: int) -> Reply | None:
        """The next complete reply, or ``None`` when it has not all arrived
        (return to wait for more).  Raises
        :class:`~smtpstate.errors.SmtpStateError` when the connection failed
        or the reply was malformed."""
        dc = self._need_dc()
        wanted = ffi.new("int[]", list(codes) or [0])
        mask = ffi.new("int *")
        rc = lib.read_smtp_codes(dc, ffi.NULL, mask, wanted, len(wanted))
        if rc == 0:
            return None
        if rc <= lib.SMTP_EAGAIN:
            self._read = False
            reason = ffi.string(lib.smtp_error_name(rc)).decode() + " reading a reply"
            registration = _registration_of(self._conn.state)
            if registration is not None and registration.state.observer:
                reason = ffi.string(lib.smtp_last_error()).decode()  # the rule
            raise error_from_code(rc, reason)
        self._read = True
        return self.reply

    @property
    def reply(self) -> Reply:
        """The last reply read on this connection."""
        r = self._need_dc().last_reply
        text = ffi.string(r.text).decode("utf-8", "replace") if r.text else ""
        return Reply(
            int(r.code), ffi.string(r.enhanced).decode("ascii", "replace"), text
        )

    def next(self, state_id: int | None = None) -> None:
        """Moves on: to the default next state, or to ``state_id``."""
        dc = self._dc
        # The usual call (live, with a context, first move, default next
        # state) is checked inline: a state that runs per message calls it
        # once per message.
        if self._conn is None or dc is None or self._moved is not None:
            dc = self._need_dc()
            self._once("next")
        target = _NULL
        if state_id is not None:
            dc = self._need_dc()
            target = lib.smtp_get_state(_state_id(state_id))
            if target == ffi.NULL:
                _raise_last_error()
        _next_state(dc, self._connh, target, _NULL)
        self._moved = "next"

    def fail(self, outcome: int, stage: int | None = None) -> None:
        """Decides every unsettled recipient on the connection with the reply
        this call read, then closes; when this call read none, the outcome
        has no code, ``error`` is ``SMTP_ESTATE`` and the text names the
        state.  ``outcome`` is ``Outcome.TRANSIENT`` or
        ``Outcome.PERMANENT``; anything else, ``Outcome.DELIVERED`` included
        (only the server's 2xx to the end of the data delivers), raises
        :class:`~smtpstate.errors.InvalidArgumentError` and settles nothing."""
        dc = self._need_dc()
        conn = self._live()
        self._once("fail")
        if isinstance(outcome, bool) or outcome not in _FAIL_KINDS:
            raise InvalidArgumentError(
                f"Session.fail({outcome!r}): a state decides TRANSIENT or "
                "PERMANENT only (rule: only a 2xx to the end of the data makes "
                "DELIVERED)"
            )
        if stage is None:
            stage = conn.state.tostage(conn.state, conn) if conn.state.tostage else 22
        reply = ffi.addressof(dc.last_reply) if self._read else ffi.NULL
        lib.smtp_outcome_set(dc, -1, -1, int(outcome), reply, int(stage))
        self._close(f"state {_state_name(conn)} failed the session")
        self._moved = "fail"

    def close(self, reason: str) -> None:
        """Fails every message still on the connection transiently with
        ``reason`` and closes it."""
        self._live()
        self._once("close")
        self._close(reason)
        self._moved = "close"

    def _close(self, reason: str) -> None:
        conn = self._live()
        if not self._closed:
            self._closed = True
            lib.smtp_conn_fail(conn, lib.SMTP_ESTATE, reason.encode("utf-8", "replace"))

    def wake(self) -> None:
        """Asks for an ``E_ASYNC`` event on the loop's next turn."""
        lib.smtp_conn_wake(self._live())

    def set_deadline(self, seconds: float) -> None:
        """Sets the connection's deadline ``seconds`` from now."""
        lib.smtp_conn_set_deadline(self._live(), max(1, int(seconds * 1000)))


class _SetupSession(Session):
    """The Session a setup gets.  A move to the default next state is handed
    back to the engine as the setup's SKIP, which the engine takes exactly
    as a smtp_next_state to the default next made inside the setup, without
    a second call into C from inside this one."""

    __slots__ = ()

    def next(self, state_id: int | None = None) -> None:
        """Moves on: to the default next state, or to ``state_id``."""
        if (
            state_id is None
            and self._conn is not None
            and self._dc is not None
            and self._moved is None
        ):
            self._moved = "next"
            return
        Session.next(self, state_id)


def _state_name(conn: Any) -> str:
    return ffi.string(conn.state.name).decode("utf-8", "replace")


StateCallback = Callable[[Session, int], int | None]
StateSetup = Callable[[Session], int | None]
StateFree = Callable[[Session], None]
StateToStage = Callable[[int], int]
StageToString = Callable[[int], str]


class SmtpState:
    """A state written in Python: its name, callables and closure.

    ``callback(session, events)`` runs for every event on a connection in
    the state and returns ``None`` to wait for the next reply, or the
    ``SMTP_WANT_*`` events it wants.  ``setup(session)`` runs on entry and
    may return :data:`SKIP`; ``free(session)`` runs on exit;
    ``tostage(local_state)`` gives a stage code and ``tostring(stage)`` its
    text.  Only ``callback`` is required.  Once registered the object is
    frozen: setting an attribute raises
    :class:`~smtpstate.errors.FrozenStateError`.

    ``observer=True`` declares a state whose ``setup`` only looks and then
    calls :meth:`Session.next` with no argument (or closes): it never sends
    and never jumps elsewhere.  Observers between
    :data:`BuiltinState.TRANSACTION` and MAIL FROM keep PIPELINING's one
    round trip a message (the next message's commands go out with the
    previous end of data, and the observers run for it once that body's
    reply is in); any other state there costs a second round trip.  An
    observer's :meth:`Session.send` and :meth:`Session.read_reply` raise
    (a reply read there would be its group's), and a setup that waits or
    jumps fails the connection's messages transiently.
    """

    name: str
    callback: StateCallback | None
    setup: StateSetup | None
    free: StateFree | None
    tostage: StateToStage | None
    tostring: StageToString | None
    init_local_state: int
    closure: Any
    observer: bool

    def __init__(
        self,
        name: str,
        callback: StateCallback | None,
        *,
        setup: StateSetup | None = None,
        free: StateFree | None = None,
        tostage: StateToStage | None = None,
        tostring: StageToString | None = None,
        init_local_state: int = 0,
        closure: Any = None,
        observer: bool = False,
    ) -> None:
        object.__setattr__(self, "_id", None)
        self.name = name
        self.callback = callback
        self.setup = setup
        self.free = free
        self.tostage = tostage
        self.tostring = tostring
        self.init_local_state = init_local_state
        self.closure = closure
        self.observer = observer

    @property
    def id(self) -> int | None:
        """The id the table gave this state, or ``None`` when unregistered."""
        return self._id  # type: ignore[no-any-return]

    @property
    def registered(self) -> bool:
        """True while the state is in the table."""
        return self._id is not None

    def __setattr__(self, attr: str, value: Any) -> None:
        if getattr(self, "_frozen", False):
            raise FrozenStateError(
                f"SmtpState {self.name!r} is frozen once registered "
                f"(rule: frozen state); cannot set {attr!r}"
            )
        object.__setattr__(self, attr, value)

    def __repr__(self) -> str:
        return f"SmtpState(name={self.name!r}, id={self._id!r})"


class _Registration:
    """What the table's closure points at while a Python state is registered."""

    __slots__ = ("state", "handle", "stage_texts", "last_exception")

    def __init__(self, state: SmtpState) -> None:
        self.state = state
        self.handle = ffi.new_handle(self)
        self.stage_texts: dict[int, Any] = {}
        self.last_exception: BaseException | None = None


_registry: dict[int, _Registration] = {}
_interpreter_exiting = False


def _mark_dead() -> None:
    global _interpreter_exiting
    _interpreter_exiting = True


atexit.register(_mark_dead)


def _state_id(value: object, what: str = "state id") -> int:
    """``value`` as a C state id.  An int outside C's range names no state,
    so it becomes 0, which no state has and the table refuses as such."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError(
            f"{what} must be a state id (int), not {type(value).__name__} "
            "(rule: state id)"
        )
    return int(value) if -(1 << 31) <= value < 1 << 31 else 0


def _raise_last_error() -> None:
    code, message = _raw.last_error()
    raise error_from_code(code, message)


def _build_record(state: SmtpState, registration: _Registration) -> tuple[Any, Any]:
    name = state.name
    if not isinstance(name, str):
        raise InvalidTypeError(
            f"SmtpState name must be str, not {type(name).__name__} (rule: name)"
        )
    encoded = name.encode("utf-8")
    if b"\0" in encoded:
        encoded = b""  # refused by the C name rule, which names it
    name_buf = ffi.new("char[]", encoded)
    record = ffi.new("smtp_state *")
    record.sizeof_smtp_state = ffi.sizeof("smtp_state")
    record.name = name_buf
    record.init_local_state = int(state.init_local_state)
    record.callback = lib._py_state_callback if state.callback else ffi.NULL
    record.setup = lib.smtpstate_py_setup if state.setup else ffi.NULL
    record.free = lib._py_state_free if state.free else ffi.NULL
    record.tostage = lib._py_state_tostage if state.tostage else ffi.NULL
    record.tostring = lib._py_state_tostring if state.tostring else ffi.NULL
    record.closure = registration.handle
    return record, name_buf


def register_smtp_client_state(state: SmtpState, insert_after: int) -> int:
    """Copy ``state`` into the C table after the state ``insert_after``.

    ``insert_after`` is a state id (a :class:`BuiltinState` or a custom id)
    or ``-1`` for first, before the banner.  Returns the new id and freezes
    ``state``.  Raises a :class:`~smtpstate.errors.SmtpStateError` subclass
    naming the rule when the table refuses it (bad or duplicate name,
    missing callback, unknown ``insert_after``, full table, wrong thread);
    the table is then unchanged.
    """
    if not isinstance(state, SmtpState):
        raise InvalidTypeError(f"expected SmtpState, not {type(state).__name__}")
    insert_after = _state_id(insert_after, "insert_after")
    for role in ("callback", "setup", "free", "tostage", "tostring"):
        value = getattr(state, role)
        if value is not None and not callable(value):
            raise InvalidTypeError(
                f"SmtpState {state.name!r}: {role} is not callable (rule: {role})"
            )
    if not isinstance(state.observer, bool):
        raise InvalidTypeError(
            f"SmtpState {state.name!r}: observer must be True or False, not "
            f"{type(state.observer).__name__} (rule: observer)"
        )
    if state.registered:
        raise FrozenStateError(
            f"SmtpState {state.name!r} is already registered as id {state.id} "
            "(rule: register a state once)"
        )
    registration = _Registration(state)
    record, _name_buf = _build_record(state, registration)
    state_id = _raw.register_smtp_client_state(record, insert_after)
    if state_id < 0:
        _raise_last_error()
    if state.observer and _raw.smtp_state_set_observer(state_id) != 0:
        code, message = _raw.last_error()
        _raw.smtp_unregister_client_state(state_id)
        raise error_from_code(code, message)
    _registry[state_id] = registration
    # The setup's C entry finds the registration by id (_state_setup.c).
    lib.smtpstate_py_bind_setup(state_id, ffi.cast("void *", id(registration)))
    object.__setattr__(state, "_id", state_id)
    object.__setattr__(state, "_frozen", True)
    return state_id


def smtp_unregister_client_state(state_id: int) -> None:
    """Remove the custom state ``state_id`` from the chain.

    A Python state's callables and closure are released.  Raises
    :class:`~smtpstate.errors.UnknownStateError`,
    :class:`~smtpstate.errors.BuiltinStateError`,
    :class:`~smtpstate.errors.StateBusyError` or
    :class:`~smtpstate.errors.WrongThreadError`; the table is then unchanged.
    """
    state_id = _state_id(state_id)
    if _raw.smtp_unregister_client_state(state_id) != 0:
        _raise_last_error()
    registration = _registry.pop(state_id, None)
    lib.smtpstate_py_bind_setup(state_id, ffi.NULL)
    if registration is not None:
        object.__setattr__(registration.state, "_id", None)


def _expected_codes(expect: int | Iterable[int]) -> tuple[int, ...]:
    """``expect`` as a tuple of reply codes, or the error naming the rule."""
    codes = (expect,) if isinstance(expect, int) else expect
    if isinstance(codes, str | bytes | bytearray) or not isinstance(codes, Iterable):
        raise InvalidTypeError(
            f"expect={expect!r}: a reply code or a sequence of reply codes "
            "(rule: expect holds int codes)"
        )
    codes = tuple(codes)
    for code in codes:
        if isinstance(code, bool) or not isinstance(code, int):
            raise InvalidTypeError(
                f"expect={expect!r} holds {code!r}, not an int (rule: expect "
                "holds int codes)"
            )
    if not codes or not all(200 <= code <= 599 for code in codes):
        raise InvalidArgumentError(
            f"expect={expect!r}: one or more reply codes from 200 to 599 "
            "(rule: expect holds reply codes)"
        )
    return codes


def _checked_stage(stage: int) -> int:
    """A custom state's stage: a code of DESIGN 7 or its own from 100 up."""
    if isinstance(stage, bool) or not isinstance(stage, int):
        raise InvalidTypeError(f"stage={stage!r} is not an int (rule: stage)")
    if not (
        0 <= stage <= lib.SMTP_STAGE_UNKNOWN
        or lib.SMTP_STAGE_CUSTOM <= stage <= _STAGE_MAX
    ):
        raise InvalidArgumentError(
            f"stage={stage} is neither a built-in stage (0-22) nor a custom "
            "one (100 and up) (rule: stage)"
        )
    return stage


# The largest stage code: stages travel as C ints.
_STAGE_MAX = (1 << 31) - 1


def command_state(
    name: str,
    command: str,
    *,
    expect: int | Iterable[int] = (250,),
    on_failure: str = "fail",
    stage: int = lib.SMTP_STAGE_CUSTOM,
) -> SmtpState:
    """A state that sends one command and checks its reply.

    On a code in ``expect`` (one reply code or several, 200 to 599) it moves
    to its next state.  Otherwise the reply's class decides for every
    unsettled message on the connection (4xx transient, 5xx permanent,
    reported with this state's ``stage``), unless ``on_failure="continue"``,
    which moves on whatever the reply.  ``stage`` is a built-in stage code
    (0 to 22, :class:`Stage`) or the state's own, from 100 up.  Raises
    ``TypeError`` or :class:`~smtpstate.errors.InvalidArgumentError` naming
    the rule for anything else.  Register the result with
    :func:`register_smtp_client_state`.
    """
    if on_failure not in ("fail", "continue"):
        raise InvalidArgumentError("on_failure must be 'fail' or 'continue'")
    expect = _expected_codes(expect)
    stage = _checked_stage(stage)
    if not command or any(c in command for c in "\r\n\0"):
        raise InvalidArgumentError(
            f"command {command!r} is empty or holds CR, LF or NUL (rule: one "
            "command per line)"
        )
    verb = command.split(" ", 1)[0].upper()

    def setup(session: Session) -> int:
        session.send(command)
        return WANT_READ

    def callback(session: Session, events: int) -> None:
        if events & Events.TIMEOUT:
            session.close(f"no reply to {verb} before the deadline")
            return
        reply = session.read_reply(*expect)
        if reply is None:
            return
        if reply.code in expect or on_failure == "continue":
            session.next()
            return
        kind = lib.SMTP_OUTCOME_PERMANENT if reply.permanent else 0
        session.fail(kind or lib.SMTP_OUTCOME_TRANSIENT, stage)

    return SmtpState(
        name,
        callback,
        setup=setup,
        tostage=lambda local_state: stage,
        tostring=lambda code: f"during {verb}" if code == stage else "",
    )


@dataclass(frozen=True)
class StateInfo:
    """A read-only view of one entry of the C state table."""

    id: int
    name: str
    init_local_state: int
    next_id: int | None
    builtin: bool
    python_state: SmtpState | None


def _info(record: Any) -> StateInfo:
    state_id = int(record.id)
    nxt = _raw.smtp_state_next(record)
    registration = _registry.get(state_id)
    return StateInfo(
        id=state_id,
        name=ffi.string(record.name).decode("utf-8"),
        init_local_state=int(record.init_local_state),
        next_id=None if nxt == ffi.NULL else int(nxt.id),
        builtin=state_id <= lib.SMTP_BUILTIN_ID_MAX,
        python_state=registration.state if registration else None,
    )


def smtp_get_state(state_id: int) -> StateInfo | None:
    """The registered state ``state_id``, or ``None`` when there is none.

    Raises :class:`~smtpstate.errors.WrongThreadError` off the owner thread.
    """
    record = _raw.smtp_get_state(_state_id(state_id))
    if record == ffi.NULL:
        code, message = _raw.last_error()
        if code == lib.SMTP_ENOSTATE:
            return None
        raise error_from_code(code, message)
    return _info(record)


def smtp_get_state_machine() -> list[StateInfo]:
    """Every state of the default chain, in order.  Any thread."""
    chain = []
    record = _raw.smtp_get_state_machine()
    while record != ffi.NULL:
        chain.append(_info(record))
        record = _raw.smtp_state_next(record)
    return chain


# The trampolines: C calls these for every Python state.  None lets an
# exception cross into C: each records it on the registration and answers
# as the contract says for a state that failed.  An interrupt
# (KeyboardInterrupt, SystemExit: a BaseException that is not an
# Exception) fails its connection the same way and is also kept in
# _interrupts, for the code that called into C to raise once C returns
# (take_interrupt); cffi would otherwise print it and carry on.

_interrupts: list[BaseException] = []


def take_interrupt() -> BaseException | None:
    """The first interrupt a Python callable raised since the last call, or
    ``None``; forgets them all."""
    if not _interrupts:
        return None
    first = _interrupts[0]
    _interrupts.clear()
    return first


def _note(registration: _Registration, exc: BaseException) -> None:
    registration.last_exception = exc
    if not isinstance(exc, Exception):
        _interrupts.append(exc)
        lib.smtpstate_py_request_stop()


def _escaped(default: Any) -> Callable[..., Any]:
    """cffi's onerror for a trampoline: an interrupt that arrived outside
    the trampoline's own handling (between two of its lines) is kept like
    any other, and C gets `default`, an answer that fails the connection."""

    def onerror(exc_type: Any, exc: BaseException | None, tb: Any) -> Any:
        if exc is not None and not isinstance(exc, Exception):
            _interrupts.append(exc)
            lib.smtpstate_py_request_stop()
            return default
        return None  # a bug of the trampoline: cffi reports it

    return onerror


_ESTATE = int(lib.SMTP_ESTATE)
_index = operator.index
_SKIP = int(SKIP)


def _registration_of(record: Any) -> _Registration | None:
    if _interpreter_exiting or record == ffi.NULL or record.closure == ffi.NULL:
        return None
    found: _Registration = ffi.from_handle(record.closure)
    return found


def _contain(registration: _Registration, session: Session, exc: BaseException) -> None:
    """Records an exception from a Python callable and fails only its
    connection's messages, transiently, with the exception as the reason."""
    _note(registration, exc)
    if session._conn is not None and not session._closed:
        session._close(
            f"state {registration.state.name} raised {type(exc).__name__}: {exc}"
        )


def _call_with_session(
    registration: _Registration, fn: Callable[..., Any], session: Session, *args: Any
) -> tuple[bool, Any]:
    """Runs ``fn(session, *args)``; (False, None) when it raised."""
    try:
        return True, fn(session, *args)
    except BaseException as exc:
        _contain(registration, session, exc)
        return False, None
    finally:
        session._expire()


@ffi.def_extern(onerror=_escaped(0))
def _py_state_callback(
    dc: Any,
    e: Any,
    conn: Any,
    connh: Any,
    domain: Any,
    binding_slot: int,
    am: Any,
    now: Any,
    events: int,
) -> int:
    registration = _registration_of(conn.state)
    if registration is None or registration.state.callback is None:
        return int(lib.smtp_conn_fail(conn, lib.SMTP_ESTATE, b"Python state is gone"))
    session = Session(conn, dc if dc != ffi.NULL else None, connh)
    ok, wanted = _call_with_session(
        registration, registration.state.callback, session, int(events)
    )
    if session._closed:
        return 0
    if not ok:
        return 0
    if wanted is None:
        return int(lib.SMTP_WANT_READ)
    if isinstance(wanted, int):
        value = _index(wanted)  # as the setup's answer: the plain value
        if value and not value & ~_WANT_BITS:
            return value
    message = (
        f"state {registration.state.name!r} callback returned {wanted!r}; "
        "return None or SMTP_WANT_* flags"
    )
    registration.last_exception = TypeError(message)
    return int(lib.smtp_conn_fail(conn, lib.SMTP_ESTATE, message.encode()))


# A connection's (conn, dc, connh) cdata by the context's address, kept
# from one setup to the next.  The engine keeps the three in one record per
# connection and smtpstate_py_setup checks that the context points at the
# handle it was given, so an address always names the same three, also
# after the record's memory serves a new connection.
_contexts: dict[int, tuple[Any, Any, Any]] = {}
_MAX_CONTEXTS = 16384


def _py_state_setup(registration: _Registration, dc_address: int) -> int:
    # Called by smtpstate_py_setup (_state_setup.c) for every Python state
    # with a setup.  _call_with_session is written out: a state's setup
    # runs once per message when it sits in the transaction.
    if _interpreter_exiting:
        return 0
    setup = registration.state.setup
    if setup is None:
        return 0
    args = _contexts.get(dc_address)
    if args is None:
        if len(_contexts) >= _MAX_CONTEXTS:
            _contexts.clear()
        dc = ffi.cast("delivery_construct *", dc_address)
        connh = dc.conn_handle
        args = _contexts[dc_address] = (connh.conn, dc, connh)
    session = _SetupSession(*args)
    try:
        result = setup(session)
    except BaseException as exc:
        _contain(registration, session, exc)
        return _ESTATE
    finally:
        session._conn = None
    if session._closed:
        return _ESTATE
    if session._moved == "next":
        # A move made in a setup wins over what it returns, as in C.
        return _SKIP
    if result is None:
        return 0
    if isinstance(result, int):
        # The plain value: an int subclass's own int() or & could make the
        # bits checked differ from those C gets, cut to a C int.
        value = _index(result)
        if not value & ~(_WANT_BITS | SKIP):
            return value
    registration.last_exception = TypeError(
        f"state {registration.state.name!r} setup returned {result!r}"
    )
    return _ESTATE


_setup_onerror = _escaped(_ESTATE)
lib.smtpstate_py_bind_setup_entry(
    ffi.cast("void *", id(_py_state_setup)), ffi.cast("void *", id(_setup_onerror))
)


@ffi.def_extern(onerror=_escaped(None))
def _py_state_free(self: Any, conn: Any) -> None:
    registration = _registration_of(self)
    if registration is not None and registration.state.free is not None:
        session = Session(conn)
        try:
            registration.state.free(session)
        except BaseException as exc:
            _note(registration, exc)
        finally:
            session._expire()


@ffi.def_extern(onerror=_escaped(lib.SMTP_STAGE_UNKNOWN))
def _py_state_tostage(self: Any, conn: Any) -> int:
    unknown = int(lib.SMTP_STAGE_UNKNOWN)
    registration = _registration_of(self)
    if registration is None or registration.state.tostage is None:
        return unknown
    try:
        stage = registration.state.tostage(int(conn.local_state))
    except BaseException as exc:
        _note(registration, exc)
        return unknown
    return int(stage) if isinstance(stage, int) and stage >= 0 else unknown


_MAX_STAGE_TEXTS = 256


@ffi.def_extern(onerror=_escaped(lib.smtp_stage_name(lib.SMTP_STAGE_UNKNOWN)))
def _py_state_tostring(self: Any, stage: int) -> Any:
    fallback = lib.smtp_stage_name(stage)
    registration = _registration_of(self)
    if registration is None or registration.state.tostring is None:
        return fallback
    texts = registration.stage_texts
    if stage not in texts:
        try:
            text = registration.state.tostring(int(stage))
        except BaseException as exc:
            _note(registration, exc)
            return fallback
        if not isinstance(text, str) or not text or len(texts) >= _MAX_STAGE_TEXTS:
            return fallback
        encoded = text.encode("utf-8", "replace").replace(b"\0", b"?")
        texts[stage] = ffi.new("char[]", encoded)
    return texts[stage]
