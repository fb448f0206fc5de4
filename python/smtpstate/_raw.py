"""The raw layer: the C functions one to one, returning C values.

Nothing here raises for a refusal; the typed layer (``states.py``) turns
return codes into exceptions in one place.  Tests of the binding itself use
this layer to build records the typed layer would never build.
"""

from __future__ import annotations

from typing import Any

from ._smtpstate_cffi import ffi, lib

__all__ = [
    "ffi",
    "lib",
    "last_error",
    "register_smtp_client_state",
    "smtp_get_state",
    "smtp_get_state_machine",
    "smtp_library_init",
    "smtp_state_next",
    "smtp_state_set_observer",
    "smtp_unregister_client_state",
]


def smtp_library_init() -> int:
    return int(lib.smtp_library_init())


def register_smtp_client_state(record: Any, insert_after: int) -> int:
    return int(lib.register_smtp_client_state(record, insert_after))


def smtp_unregister_client_state(state_id: int) -> int:
    return int(lib.smtp_unregister_client_state(state_id))


def smtp_state_set_observer(state_id: int) -> int:
    return int(lib.smtp_state_set_observer(state_id))


def smtp_get_state(state_id: int) -> Any:
    return lib.smtp_get_state(state_id)


def smtp_get_state_machine() -> Any:
    return lib.smtp_get_state_machine()


def smtp_state_next(record: Any) -> Any:
    return lib.smtp_state_next(record)


def last_error() -> tuple[int, str]:
    """This thread's last error: (SMTP_E* code or 0, reason)."""
    code = int(lib.smtp_last_error_code())
    return code, ffi.string(lib.smtp_last_error()).decode("utf-8", "replace")
