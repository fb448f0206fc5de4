"""Engine events into Python's ``logging`` and, on request, JSON lines.

Each event becomes one ``key=value`` line on the ``smtpstate`` logger:
``session=<id> state=<name> stage=<code> event=<what> ...``.  Connections,
outcomes and closes log at INFO; state changes (``change=from->to``),
replies and the wire trace at DEBUG.  Message bodies never reach the log:
the wire trace is for commands and replies (AUTH is never logged, as the
engine has none yet).
"""

from __future__ import annotations

import functools
from typing import IO, TYPE_CHECKING, Any

from ._smtpstate_cffi import ffi, lib
from .errors import InvalidTypeError

if TYPE_CHECKING:
    import logging

__all__ = ["EventSink", "format_fields", "sink_for"]


# logging and json are imported when an event is first written: most
# deliveries ask for none, and the two are a fifth of the package's
# import time.
@functools.cache
def _logger() -> logging.Logger:
    import logging

    return logging.getLogger("smtpstate")


def __getattr__(name: str) -> Any:
    """``logger``, the ``smtpstate`` logger, made on first use."""
    if name == "logger":
        return _logger()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _json_dumps(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


_NAMES = {
    lib.SMTP_EVENT_CONNECT: "connect",
    lib.SMTP_EVENT_STATE: "state",
    lib.SMTP_EVENT_REPLY: "reply",
    lib.SMTP_EVENT_OUTCOME: "outcome",
    lib.SMTP_EVENT_CLOSE: "close",
    lib.SMTP_EVENT_WIRE: "wire",
}
_INFO = {lib.SMTP_EVENT_CONNECT, lib.SMTP_EVENT_OUTCOME, lib.SMTP_EVENT_CLOSE}
# logging.INFO and logging.DEBUG, fixed by the logging module's API.
_INFO_LEVEL, _DEBUG_LEVEL = 20, 10


def _quote(text: str) -> str:
    if text and all(c.isprintable() and c not in ' "=\\' for c in text):
        return text
    return _json_dumps(text)


def format_fields(fields: dict[str, Any]) -> str:
    """One ``key=value`` line; values with spaces or quotes are JSON-quoted."""
    return " ".join(f"{key}={_quote(str(value))}" for key, value in fields.items())


class EventSink:
    """Turns a batch of collected C events into log lines and JSON lines."""

    def __init__(self, log: bool, json_file: IO[str] | None) -> None:
        self.log = log
        self.json_file = json_file

    def emit_batch(self, events: Any, count: int, text: bytes) -> None:
        for i in range(count):
            self.emit(events[i].type in _INFO, self._fields(events[i], text))

    def emit(self, info: bool, fields: dict[str, Any]) -> None:
        """Writes one event's fields: a log line at INFO (``info``) or DEBUG,
        and a JSON line.  Worker processes forward their events here."""
        if self.log:
            logger = _logger()
            level = _INFO_LEVEL if info else _DEBUG_LEVEL
            if logger.isEnabledFor(level):
                logger.log(level, "%s", format_fields(fields))
        if self.json_file is not None:
            self.json_file.write(_json_dumps(fields) + "\n")

    @staticmethod
    def _fields(ev: Any, text: bytes) -> dict[str, Any]:
        kind = _NAMES.get(ev.type, str(ev.type))
        fields: dict[str, Any] = {
            "session": f"{ev.session_id:x}",
            "state": ffi.string(ev.state).decode("utf-8", "replace") or "-",
            "stage": int(ev.stage),
            "event": kind,
        }
        body = text[ev.text_at : ev.text_at + ev.text_len].decode("utf-8", "replace")
        if ev.type == lib.SMTP_EVENT_STATE:
            old = ffi.string(getattr(ev, "from")).decode("utf-8", "replace") or "-"
            fields["change"] = f"{old}->{fields['state']}"
        elif ev.type == lib.SMTP_EVENT_REPLY:
            fields["code"] = int(ev.code)
            fields["text"] = body
        elif ev.type == lib.SMTP_EVENT_CLOSE:
            error = ffi.string(lib.smtp_error_name(ev.error)).decode()
            fields["error"] = error if ev.error else "-"
            fields["reason"] = body
        elif ev.type == lib.SMTP_EVENT_OUTCOME:
            fields["code"] = int(ev.code)
            fields["text"] = body
        elif ev.type == lib.SMTP_EVENT_WIRE:
            fields["direction"] = "sent" if ev.sent else "received"
            # Message bodies never reach a log: only their size does.
            in_body = fields["state"] == "body" and ev.sent
            fields["bytes"] = f"<{ev.text_len} body bytes>" if in_body else body
        fields["connections"] = int(ev.connections)
        return fields


def sink_for(log: bool, json_file: IO[str] | None) -> EventSink | None:
    """The sink for these options, or None when no event is wanted (the C
    engine then collects none)."""
    if json_file is not None and not callable(getattr(json_file, "write", None)):
        raise InvalidTypeError(
            f"json_events={json_file!r} is not a file object with write(), open "
            "for text (rule: json_events)"
        )
    if not log and json_file is None:
        return None
    return EventSink(log, json_file)
