"""Exceptions of smtpstate, made from the C library's SMTP_E* codes.

Every exception subclasses :class:`SmtpStateError` and the fitting builtin,
carries the C code and its symbolic name, and its message is the C
library's sentence naming the rule that was broken.
"""

from __future__ import annotations

from ._smtpstate_cffi import ffi, lib

__all__ = [
    "BuiltinStateError",
    "DuplicateStateNameError",
    "FrozenStateError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "LoopBusyError",
    "MissingCallbackError",
    "SessionExpiredError",
    "SessionMovedError",
    "SmtpStateError",
    "StateBusyError",
    "StateLayoutError",
    "StateNameError",
    "StateTableFullError",
    "UnknownStateError",
    "WrongThreadError",
    "error_from_code",
]


class SmtpStateError(Exception):
    """Base of every smtpstate error; ``code`` is the C SMTP_E* value."""

    code: int = 0

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def code_name(self) -> str:
        """The symbolic name of ``code``, such as ``"SMTP_EDUPNAME"``."""
        return ffi.string(lib.smtp_error_name(self.code)).decode()


class StateLayoutError(SmtpStateError, ValueError):
    """The record was built against another ``smtp_state`` layout."""

    code = lib.SMTP_ESIZE


class StateNameError(SmtpStateError, ValueError):
    """The name is not 1-63 bytes of ``[A-Za-z0-9_.-]``."""

    code = lib.SMTP_ENAME


class DuplicateStateNameError(SmtpStateError, ValueError):
    """A registered state already has this name."""

    code = lib.SMTP_EDUPNAME


class MissingCallbackError(SmtpStateError, TypeError):
    """The state has no callback."""

    code = lib.SMTP_ENOCALLBACK


class UnknownStateError(SmtpStateError, LookupError):
    """No registered state has the id given."""

    code = lib.SMTP_ENOSTATE


class StateTableFullError(SmtpStateError, RuntimeError):
    """Every slot of the state table has been used."""

    code = lib.SMTP_EFULL


class WrongThreadError(SmtpStateError, RuntimeError):
    """Called from a thread that is not the library's owner thread."""

    code = lib.SMTP_ETHREAD


class BuiltinStateError(SmtpStateError, ValueError):
    """Built-in states cannot be unregistered."""

    code = lib.SMTP_EBUILTIN


class StateBusyError(SmtpStateError, RuntimeError):
    """Connections are in the state, so it cannot be unregistered."""

    code = lib.SMTP_EBUSY


class LoopBusyError(SmtpStateError, RuntimeError):
    """A delivery was started from inside the loop (from a state's
    callable): the loop is not re-entrant."""

    code = lib.SMTP_EBUSY


class InvalidArgumentError(SmtpStateError, ValueError):
    """An argument was refused (NULL record, bad value)."""

    code = lib.SMTP_EINVAL


class InvalidTypeError(SmtpStateError, TypeError):
    """An argument was of the wrong type (a str where codes were due)."""

    code = lib.SMTP_EINVAL


class FrozenStateError(SmtpStateError, AttributeError):
    """A registered :class:`~smtpstate.SmtpState` cannot be changed."""

    code = lib.SMTP_EINVAL


class SessionExpiredError(SmtpStateError, RuntimeError):
    """A :class:`~smtpstate.Session` was used after its callable returned."""

    code = lib.SMTP_ESTATE


class SessionMovedError(SmtpStateError, RuntimeError):
    """A second ``next()``, ``fail()`` or ``close()`` in one call of a
    state's callable: the first already moved the connection on."""

    code = lib.SMTP_ESTATE


_BY_CODE: dict[int, type[SmtpStateError]] = {
    cls.code: cls
    for cls in (
        StateLayoutError,
        StateNameError,
        DuplicateStateNameError,
        MissingCallbackError,
        UnknownStateError,
        StateTableFullError,
        WrongThreadError,
        BuiltinStateError,
        StateBusyError,
        InvalidArgumentError,
    )
}
_BY_CODE[lib.SMTP_ENULL] = InvalidArgumentError


def error_from_code(code: int, message: str) -> SmtpStateError:
    """The exception for a C SMTP_E* ``code`` with the C library's message."""
    cls = _BY_CODE.get(code, SmtpStateError)
    return cls(message, code)
