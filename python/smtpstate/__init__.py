"""smtpstate: a modular SMTP client state machine in C, driven from Python.

The C library keeps one table of states per process and runs the loop that
sends mail; this package copies Python states into that same table, sends
messages through the loop and returns one result per recipient.
"""

from .delivery import (
    BounceClass,
    Destination,
    Message,
    MessageResult,
    Outcome,
    RecipientResult,
    deliver,
    deliver_async,
)
from .errors import (
    BuiltinStateError,
    DuplicateStateNameError,
    FrozenStateError,
    InvalidArgumentError,
    InvalidTypeError,
    LoopBusyError,
    MissingCallbackError,
    SessionExpiredError,
    SmtpStateError,
    StateBusyError,
    StateLayoutError,
    StateNameError,
    StateTableFullError,
    UnknownStateError,
    WrongThreadError,
)
from .states import (
    SKIP,
    WANT_READ,
    WANT_WRITE,
    BuiltinState,
    Events,
    Reply,
    Session,
    SmtpState,
    Stage,
    StateInfo,
    command_state,
    register_smtp_client_state,
    smtp_get_state,
    smtp_get_state_machine,
    smtp_unregister_client_state,
)

__version__ = "0.1.0"

__all__ = [
    "SKIP",
    "WANT_READ",
    "WANT_WRITE",
    "BounceClass",
    "BuiltinState",
    "BuiltinStateError",
    "Destination",
    "DuplicateStateNameError",
    "Events",
    "FrozenStateError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "LoopBusyError",
    "Message",
    "MessageResult",
    "MissingCallbackError",
    "Outcome",
    "RecipientResult",
    "Reply",
    "Session",
    "SessionExpiredError",
    "SmtpState",
    "SmtpStateError",
    "Stage",
    "StateBusyError",
    "StateInfo",
    "StateLayoutError",
    "StateNameError",
    "StateTableFullError",
    "UnknownStateError",
    "WrongThreadError",
    "command_state",
    "deliver",
    "deliver_async",
    "register_smtp_client_state",
    "smtp_get_state",
    "smtp_get_state_machine",
    "smtp_unregister_client_state",
]
