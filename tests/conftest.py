"""Shared fixtures: a snapshot of the whole C state table."""

from __future__ import annotations

import itertools
import pathlib
from dataclasses import dataclass

import pytest

import driver
import smtpstate
from smtpstate import BuiltinState, SmtpState

pytest_plugins = ["server_fixtures"]

_probe_numbers = itertools.count()


def _noop(session: smtpstate.Session, events: int) -> None:
    return None


@dataclass(frozen=True)
class TableSnapshot:
    """Every registered id with its name and next, the chain's order, and
    the id the next successful registration receives."""

    chain: tuple[tuple[int, str], ...]
    entries: tuple[tuple[int, str, int | None], ...]
    next_id: int


def probe_next_id() -> int:
    """Registers and removes a probe; returns the id it received."""
    probe = SmtpState(f"probe-{next(_probe_numbers)}", _noop)
    state_id = smtpstate.register_smtp_client_state(probe, BuiltinState.QUIT)
    smtpstate.smtp_unregister_client_state(state_id)
    return state_id


def take_snapshot() -> TableSnapshot:
    chain = tuple((s.id, s.name) for s in smtpstate.smtp_get_state_machine())
    entries = []
    for state_id in range(1, 1024):
        info = smtpstate.smtp_get_state(state_id)
        if info is not None:
            entries.append((info.id, info.name, info.next_id))
    return TableSnapshot(chain, tuple(entries), probe_next_id())


def assert_unchanged(before: TableSnapshot, after: TableSnapshot) -> None:
    """Equal but for the id the `after` probe itself spent."""
    assert after.chain == before.chain
    assert after.entries == before.entries
    assert after.next_id == before.next_id + 1


@pytest.fixture
def snapshot() -> TableSnapshot:
    return take_snapshot()


@pytest.fixture
def noop():
    return _noop


@pytest.fixture
def registered():
    """Registers states for one test and removes them afterwards."""
    ids: list[int] = []

    def register(state: smtpstate.SmtpState, after: int) -> int:
        state_id = smtpstate.register_smtp_client_state(state, after)
        ids.append(state_id)
        return state_id

    yield register
    for state_id in reversed(ids):
        smtpstate.smtp_unregister_client_state(state_id)


@pytest.fixture(scope="session")
def c_build() -> pathlib.Path:
    """The C library, driver and test programs, built once per session."""
    driver.build()
    return driver.BUILD
