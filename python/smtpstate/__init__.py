"""smtpstate: a modular SMTP client state machine in C, driven from Python.

The C library keeps one table of states per process; this package copies
Python states into that same table and reads it back.
"""

from .errors import (
    BuiltinStateError,
    DuplicateStateNameError,
    FrozenStateError,
    InvalidArgumentError,
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
    BuiltinState,
    Session,
    SmtpState,
    Stage,
    StateInfo,
    register_smtp_client_state,
    smtp_get_state,
    smtp_get_state_machine,
    smtp_unregister_client_state,
)

__version__ = "0.1.0"

__all__ = [
    "SKIP",
    "BuiltinState",
    "BuiltinStateError",
    "DuplicateStateNameError",
    "FrozenStateError",
    "InvalidArgumentError",
    "MissingCallbackError",
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
    "register_smtp_client_state",
    "smtp_get_state",
    "smtp_get_state_machine",
    "smtp_unregister_client_state",
]
