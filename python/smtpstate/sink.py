"""The embedded sink: an aiosmtpd server on loopback that keeps every
message it receives, byte for byte, in a folder.

The ``smtpstate`` command uses it when no ``--server`` is given, so a
newcomer sees real messages cross a real SMTP session without a mail
server.  aiosmtpd's line limit is raised (it refuses lines over 1,001
octets by default), and each message is stored as received after
un-stuffing (``envelope.original_content``) with its envelope beside it.
"""

from __future__ import annotations

import json
import pathlib
import socket
import tempfile
import threading
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

__all__ = ["EmbeddedSink"]

LINE_LIMIT = 8 * 1024 * 1024
SIZE_LIMIT = 256 * 1024 * 1024


class _LongLineSMTP(SMTP):
    line_length_limit = LINE_LIMIT


class _Handler:
    def __init__(self, folder: pathlib.Path) -> None:
        self.folder = folder
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.count += 1
            number = self.count
        stem = self.folder / f"{number:06d}"
        stem.with_suffix(".eml").write_bytes(envelope.original_content)
        envelope_json = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}
        stem.with_suffix(".json").write_text(json.dumps(envelope_json) + "\n")
        return f"250 2.0.0 Ok: stored as {stem.name}.eml"


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _LongLineSMTP(self.handler, data_size_limit=SIZE_LIMIT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedSink:
    """An aiosmtpd server on 127.0.0.1 storing messages in ``folder``
    (a new temporary folder when none is given).  Use as a context
    manager, or call :meth:`start` and :meth:`stop`."""

    def __init__(self, folder: str | pathlib.Path | None = None) -> None:
        if folder is None:
            folder = tempfile.mkdtemp(prefix="smtpstate-sink-")
        self.folder = pathlib.Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.handler = _Handler(self.folder)
        self.port = _free_port()
        self._controller = _Controller(
            self.handler, hostname="127.0.0.1", port=self.port
        )

    @property
    def received(self) -> int:
        """How many messages the sink has stored."""
        return self.handler.count

    def start(self) -> EmbeddedSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> EmbeddedSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
