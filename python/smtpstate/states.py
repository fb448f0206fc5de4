"""Python states in the C state table.

A :class:`SmtpState` is copied into the same static table that C states
live in.  Its C record points at five trampolines declared
``extern "Python"`` in the binding; the record's ``closure`` is a cffi
handle to the registration, through which a trampoline finds the Python
callables.  The registry below holds each registration (and so its
callables and closure) alive exactly while the state is registered.
"""

from __future__ import annotations

import atexit
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import _raw
from ._smtpstate_cffi import ffi, lib
from .errors import (
    FrozenStateError,
    SessionExpiredError,
    error_from_code,
)

__all__ = [
    "SKIP",
    "BuiltinState",
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


#: Returned by a ``setup`` callable to pass straight to the next state.
SKIP = lib.SMTP_STATE_SKIP
_WANT_BITS = lib.SMTP_WANT_READ | lib.SMTP_WANT_WRITE


class Session:
    """A connection as a Python state sees it, valid only during one call.

    Using it after the callable returned raises
    :class:`~smtpstate.errors.SessionExpiredError`.
    """

    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def _live(self) -> Any:
        if self._conn is None:
            raise SessionExpiredError(
                "Session used after its callable returned "
                "(rule: a Session is valid only during the call)"
            )
        return self._conn

    def _expire(self) -> None:
        self._conn = None

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
    """

    name: str
    callback: StateCallback | None
    setup: StateSetup | None
    free: StateFree | None
    tostage: StateToStage | None
    tostring: StageToString | None
    init_local_state: int
    closure: Any

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


def _raise_last_error() -> None:
    code, message = _raw.last_error()
    raise error_from_code(code, message)


def _build_record(state: SmtpState, registration: _Registration) -> tuple[Any, Any]:
    name = state.name
    if not isinstance(name, str):
        raise TypeError(f"SmtpState name must be str, not {type(name).__name__}")
    encoded = name.encode("utf-8")
    if b"\0" in encoded:
        encoded = b""  # refused by the C name rule, which names it
    name_buf = ffi.new("char[]", encoded)
    record = ffi.new("smtp_state *")
    record.sizeof_smtp_state = ffi.sizeof("smtp_state")
    record.name = name_buf
    record.init_local_state = int(state.init_local_state)
    record.callback = lib._py_state_callback if state.callback else ffi.NULL
    record.setup = lib._py_state_setup if state.setup else ffi.NULL
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
        raise TypeError(f"expected SmtpState, not {type(state).__name__}")
    if state.registered:
        raise FrozenStateError(
            f"SmtpState {state.name!r} is already registered as id {state.id} "
            "(rule: register a state once)"
        )
    registration = _Registration(state)
    record, _name_buf = _build_record(state, registration)
    state_id = _raw.register_smtp_client_state(record, int(insert_after))
    if state_id < 0:
        _raise_last_error()
    _registry[state_id] = registration
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
    if _raw.smtp_unregister_client_state(int(state_id)) != 0:
        _raise_last_error()
    registration = _registry.pop(int(state_id), None)
    if registration is not None:
        object.__setattr__(registration.state, "_id", None)


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
    record = _raw.smtp_get_state(int(state_id))
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
# as the contract says for a state that failed.


def _registration_of(record: Any) -> _Registration | None:
    if _interpreter_exiting or record == ffi.NULL or record.closure == ffi.NULL:
        return None
    found: _Registration = ffi.from_handle(record.closure)
    return found


def _call_with_session(
    registration: _Registration, fn: Callable[..., Any], conn: Any, *args: Any
) -> tuple[bool, Any]:
    """Runs ``fn(session, *args)``; (False, None) when it raised."""
    session = Session(conn)
    try:
        return True, fn(session, *args)
    except Exception as exc:
        registration.last_exception = exc
        return False, None
    finally:
        session._expire()


@ffi.def_extern()
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
    # Returning 0 without a close is how a failed state is reported: the
    # engine fails the connection's messages transiently, naming the state.
    registration = _registration_of(conn.state)
    if registration is None or registration.state.callback is None:
        return 0
    ok, wanted = _call_with_session(
        registration, registration.state.callback, conn, int(events)
    )
    if not ok:
        return 0
    if wanted is None:
        return int(lib.SMTP_WANT_READ)
    if isinstance(wanted, int) and wanted and not wanted & ~_WANT_BITS:
        return int(wanted)
    registration.last_exception = TypeError(
        f"state {registration.state.name!r} callback returned {wanted!r}; "
        "return None or SMTP_WANT_* flags"
    )
    return 0


@ffi.def_extern()
def _py_state_setup(self: Any, dc: Any, connh: Any, now: Any) -> int:
    registration = _registration_of(self)
    if registration is None or registration.state.setup is None:
        return 0
    ok, result = _call_with_session(registration, registration.state.setup, connh.conn)
    if ok and result is None:
        return 0
    if ok and isinstance(result, int) and not result & ~(_WANT_BITS | SKIP):
        return int(result)
    return int(lib.SMTP_ESTATE)


@ffi.def_extern()
def _py_state_free(self: Any, conn: Any) -> None:
    registration = _registration_of(self)
    if registration is not None and registration.state.free is not None:
        _call_with_session(registration, registration.state.free, conn)


@ffi.def_extern()
def _py_state_tostage(self: Any, conn: Any) -> int:
    unknown = int(lib.SMTP_STAGE_UNKNOWN)
    registration = _registration_of(self)
    if registration is None or registration.state.tostage is None:
        return unknown
    try:
        stage = registration.state.tostage(int(conn.local_state))
    except Exception as exc:
        registration.last_exception = exc
        return unknown
    return int(stage) if isinstance(stage, int) and stage >= 0 else unknown


_MAX_STAGE_TEXTS = 256


@ffi.def_extern()
def _py_state_tostring(self: Any, stage: int) -> Any:
    fallback = lib.smtp_stage_name(stage)
    registration = _registration_of(self)
    if registration is None or registration.state.tostring is None:
        return fallback
    texts = registration.stage_texts
    if stage not in texts:
        try:
            text = registration.state.tostring(int(stage))
        except Exception as exc:
            registration.last_exception = exc
            return fallback
        if not isinstance(text, str) or len(texts) >= _MAX_STAGE_TEXTS:
            return fallback
        encoded = text.encode("utf-8", "replace").replace(b"\0", b"?")
        texts[stage] = ffi.new("char[]", encoded)
    return texts[stage]
