"""Pytest fixtures for the loopback test servers in `servers`.

Plain fixtures, to be imported by a conftest (or listed in its
``pytest_plugins``).  Every server a fixture starts is stopped at teardown;
a `ScriptedServer` whose script raised fails the test there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from servers import (
    SMTP_SINK,
    Script,
    ScriptedServer,
    ScriptError,
    SmtpSink,
    smtp_sink_available,
)

__all__ = [
    "scripted_server",
    "scripted_server_factory",
    "smtp_sink",
    "smtp_sink_factory",
]


@pytest.fixture
def scripted_server_factory() -> Iterator[Callable[..., ScriptedServer]]:
    """A function `(script=None, **options) -> ScriptedServer` that starts a
    scripted server (options as `ScriptedServer`'s); all stop at teardown."""
    started: list[ScriptedServer] = []

    def start(script: Script | None = None, **options: Any) -> ScriptedServer:
        server = ScriptedServer(script, **options).start()
        started.append(server)
        return server

    yield start
    errors: list[ScriptError] = []
    for server in started:
        try:
            server.stop()
        except ScriptError as error:
            errors.append(error)
    if errors:
        raise errors[0]


@pytest.fixture
def scripted_server(
    scripted_server_factory: Callable[..., ScriptedServer],
) -> ScriptedServer:
    """A started `ScriptedServer` with the default `Script` (a plain server
    that accepts everything)."""
    return scripted_server_factory()


@pytest.fixture
def smtp_sink_factory() -> Iterator[Callable[..., SmtpSink]]:
    """A function `(**options) -> SmtpSink` that starts Postfix's smtp-sink
    (options as `SmtpSink`'s); all stop at teardown.  Skips the test when
    smtp-sink is not installed."""
    if not smtp_sink_available():
        pytest.skip(
            f"{SMTP_SINK} is not installed; as root, "
            "bash scripts/install-test-deps.sh installs it (Debian postfix)"
        )
    started: list[SmtpSink] = []

    def start(**options: Any) -> SmtpSink:
        sink = SmtpSink(**options).start()
        started.append(sink)
        return sink

    yield start
    for sink in started:
        sink.stop()


@pytest.fixture
def smtp_sink(smtp_sink_factory: Callable[..., SmtpSink]) -> SmtpSink:
    """A started smtp-sink with default options (PIPELINING on, no dump)."""
    return smtp_sink_factory()
