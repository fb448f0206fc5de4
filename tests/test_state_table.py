"""The state table through the typed Python API."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import weakref

import pytest

import smtpstate
from conftest import assert_unchanged, take_snapshot
from servers import Script
from smtpstate import BuiltinState, SmtpState
from smtpstate._raw import ffi, lib

EXPECTED_CHAIN = [
    (1, "banner"),
    (2, "ehlo"),
    (3, "starttls"),
    (4, "auth"),
    (5, "xclient"),
    (6, "session-ready"),
    (7, "transaction"),
    (8, "mail-from"),
    (9, "rcpt-to"),
    (10, "data"),
    (11, "body"),
    (12, "confirmation"),
]


def chain() -> list[tuple[int, str]]:
    return [(s.id, s.name) for s in smtpstate.smtp_get_state_machine()]


def test_builtin_chain_reads_in_design_order_with_fixed_ids():
    assert chain() == EXPECTED_CHAIN
    assert [int(b) for b in BuiltinState][:12] == [i for i, _ in EXPECTED_CHAIN]
    rset = smtpstate.smtp_get_state(BuiltinState.RSET)
    quit_ = smtpstate.smtp_get_state(BuiltinState.QUIT)
    assert rset is not None and rset.name == "rset"
    assert rset.next_id == BuiltinState.TRANSACTION
    assert quit_ is not None and quit_.name == "quit" and quit_.next_id is None
    assert all(s.builtin for s in smtpstate.smtp_get_state_machine())


def test_stage_texts_come_from_c():
    assert smtpstate.Stage.MAIL_FROM.text == "during MAIL FROM"
    assert smtpstate.Stage.UNKNOWN == 22


def test_register_after_session_ready_then_unregister_restores_chain(noop):
    before = chain()
    state = SmtpState("py-probe", noop)
    state_id = smtpstate.register_smtp_client_state(state, BuiltinState.SESSION_READY)
    assert state_id >= 64 and state.id == state_id
    ids = [i for i, _ in chain()]
    assert ids[ids.index(BuiltinState.SESSION_READY) + 1] == state_id
    assert ids[ids.index(state_id) + 1] == BuiltinState.TRANSACTION
    info = smtpstate.smtp_get_state(state_id)
    assert info is not None and info.python_state is state and not info.builtin
    smtpstate.smtp_unregister_client_state(state_id)
    assert chain() == before
    assert state.id is None


def test_minus_one_goes_first_and_later_registration_runs_first(noop):
    before = chain()
    first = smtpstate.register_smtp_client_state(SmtpState("py-first", noop), -1)
    firster = smtpstate.register_smtp_client_state(SmtpState("py-firster", noop), -1)
    a = smtpstate.register_smtp_client_state(SmtpState("py-a", noop), 10)
    b = smtpstate.register_smtp_client_state(SmtpState("py-b", noop), 10)
    ids = [i for i, _ in chain()]
    assert ids[:3] == [firster, first, BuiltinState.BANNER]
    assert ids[ids.index(10) + 1 : ids.index(10) + 4] == [b, a, 11]
    for state_id in (a, firster, b, first):
        smtpstate.smtp_unregister_client_state(state_id)
    assert chain() == before


def test_name_is_copied_and_may_be_reused_after_unregister(noop):
    state = SmtpState("py-reuse", noop)
    first_id = smtpstate.register_smtp_client_state(state, BuiltinState.EHLO)
    smtpstate.smtp_unregister_client_state(first_id)
    again = SmtpState("py-reuse", noop)
    second_id = smtpstate.register_smtp_client_state(again, BuiltinState.EHLO)
    assert second_id > first_id
    smtpstate.smtp_unregister_client_state(second_id)


BAD_NAMES = ["", "has space", "x" * 64, "new\nline", "été", "nul\0byte", "a:b"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_name_is_refused_and_changes_nothing(name, noop, snapshot):
    with pytest.raises(smtpstate.StateNameError, match="rule: name") as info:
        smtpstate.register_smtp_client_state(SmtpState(name, noop), -1)
    assert isinstance(info.value, ValueError)
    assert info.value.code_name == "SMTP_ENAME"
    assert_unchanged(snapshot, take_snapshot())


def test_name_of_63_bytes_is_accepted(noop):
    state_id = smtpstate.register_smtp_client_state(SmtpState("y" * 63, noop), -1)
    smtpstate.smtp_unregister_client_state(state_id)


def test_non_string_name_is_a_type_error(noop, snapshot):
    with pytest.raises(TypeError):
        smtpstate.register_smtp_client_state(SmtpState(b"bytes", noop), -1)
    assert_unchanged(snapshot, take_snapshot())


@pytest.mark.parametrize("name", ["banner", "session-ready", "py-held"])
def test_duplicate_name_is_refused_and_changes_nothing(name, noop):
    held = smtpstate.register_smtp_client_state(SmtpState("py-held", noop), 2)
    before = take_snapshot()
    with pytest.raises(smtpstate.DuplicateStateNameError, match="rule: unique name"):
        smtpstate.register_smtp_client_state(SmtpState(name, noop), -1)
    assert_unchanged(before, take_snapshot())
    smtpstate.smtp_unregister_client_state(held)


def test_missing_callback_is_refused_and_changes_nothing(snapshot):
    with pytest.raises(smtpstate.MissingCallbackError, match="rule: callback"):
        smtpstate.register_smtp_client_state(SmtpState("no-callback", None), -1)
    assert_unchanged(snapshot, take_snapshot())


@pytest.mark.parametrize("after", [0, -2, -7, 15, 31, 63, 999, 1024, 2**31 - 1])
def test_unknown_insert_after_is_refused_and_changes_nothing(after, noop, snapshot):
    with pytest.raises(smtpstate.UnknownStateError, match="rule: insert_after"):
        smtpstate.register_smtp_client_state(SmtpState("lost", noop), after)
    assert_unchanged(snapshot, take_snapshot())


def test_insert_after_an_unregistered_id_is_refused(noop):
    gone = smtpstate.register_smtp_client_state(SmtpState("gone", noop), 2)
    smtpstate.smtp_unregister_client_state(gone)
    before = take_snapshot()
    with pytest.raises(smtpstate.UnknownStateError):
        smtpstate.register_smtp_client_state(SmtpState("orphan", noop), gone)
    assert_unchanged(before, take_snapshot())


def _raw_record(name_buf, size):
    record = ffi.new("smtp_state *")
    record.sizeof_smtp_state = size
    record.name = name_buf
    record.callback = lib._py_state_callback
    return record


@pytest.mark.parametrize("delta", [-8, -1, 1, 8])
def test_record_with_another_sizeof_is_refused(delta, snapshot):
    name = ffi.new("char[]", b"other-layout")
    record = _raw_record(name, ffi.sizeof("smtp_state") + delta)
    assert lib.register_smtp_client_state(record, -1) == -1
    assert lib.smtp_last_error_code() == lib.SMTP_ESIZE
    assert b"rule: record built against the same layout" in ffi.string(
        lib.smtp_last_error()
    )
    assert_unchanged(snapshot, take_snapshot())


def test_null_record_is_refused(snapshot):
    assert lib.register_smtp_client_state(ffi.NULL, -1) == -1
    assert lib.smtp_last_error_code() == lib.SMTP_ENULL
    assert b"rule: a state record is required" in ffi.string(lib.smtp_last_error())
    assert_unchanged(snapshot, take_snapshot())


def test_raw_record_is_copied_and_not_written_back():
    name = ffi.new("char[]", b"raw-copy")
    record = _raw_record(name, ffi.sizeof("smtp_state"))
    record.id = 4242
    record.next = record
    state_id = lib.register_smtp_client_state(record, 2)
    assert state_id >= 64
    assert record.id == 4242 and record.next == record
    name[0:3] = b"ZZZ"  # the table keeps its own copy of the name
    entry = lib.smtp_get_state(state_id)
    assert ffi.string(entry.name) == b"raw-copy"
    assert entry != record
    assert lib.smtp_unregister_client_state(state_id) == 0


def _in_thread(fn):
    result: dict = {}

    def run():
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result


def test_registration_from_another_thread_is_refused(noop, snapshot):
    result = _in_thread(
        lambda: smtpstate.register_smtp_client_state(SmtpState("t", noop), 2)
    )
    if "value" in result:  # wrongly taken: leave no state for later tests
        smtpstate.smtp_unregister_client_state(result["value"])
    error = result.get("error")
    assert isinstance(error, smtpstate.WrongThreadError)
    assert isinstance(error, RuntimeError)
    assert "rule: owner thread only" in str(error)
    assert_unchanged(snapshot, take_snapshot())


def test_unregister_and_get_from_another_thread_are_refused(noop):
    state_id = smtpstate.register_smtp_client_state(SmtpState("owned", noop), 2)
    before = take_snapshot()
    unreg = _in_thread(lambda: smtpstate.smtp_unregister_client_state(state_id))
    get = _in_thread(lambda: smtpstate.smtp_get_state(state_id))
    walk = _in_thread(lambda: [s.id for s in smtpstate.smtp_get_state_machine()])
    assert isinstance(unreg["error"], smtpstate.WrongThreadError)
    assert isinstance(get["error"], smtpstate.WrongThreadError)
    assert walk["value"] == [i for i, _ in before.chain]  # reading is allowed
    assert_unchanged(before, take_snapshot())
    smtpstate.smtp_unregister_client_state(state_id)


def test_unregister_while_a_connection_is_in_the_state_is_refused(
    scripted_server_factory,
):
    server = scripted_server_factory(Script())
    seen: dict = {}

    def setup(session):
        session.wake()
        return smtpstate.WANT_READ

    def callback(session, events):
        seen["before"] = take_snapshot()
        try:
            smtpstate.smtp_unregister_client_state(state.id)
        except smtpstate.SmtpStateError as exc:
            seen["error"] = exc
        seen["after"] = take_snapshot()
        session.next()

    state = SmtpState("py-in-use", callback, setup=setup)
    state_id = smtpstate.register_smtp_client_state(state, BuiltinState.SESSION_READY)
    message = smtpstate.Message("s@client.test", ["r@server.test"], b"x\r\n")
    try:
        (result,) = smtpstate.deliver([message], "127.0.0.1", server.port)
    finally:
        if smtpstate.smtp_get_state(state_id) is not None:
            smtpstate.smtp_unregister_client_state(state_id)
    error = seen["error"]
    assert isinstance(error, smtpstate.StateBusyError)
    assert isinstance(error, RuntimeError) and error.code_name == "SMTP_EBUSY"
    assert "rule: not while in use" in str(error) and "py-in-use" in str(error)
    assert_unchanged(seen["before"], seen["after"])
    assert state_id in [i for i, _ in seen["after"].chain]
    assert result.delivered  # the refused call left the connection working
    assert len(server.wait_for_messages(1)) == 1
    # The `finally` above unregistered it once the connection had left.
    assert smtpstate.smtp_get_state(state_id) is None and state.id is None


@pytest.mark.parametrize("state_id", [1, 6, 12, 13, 14])
def test_builtin_cannot_be_unregistered(state_id, snapshot):
    with pytest.raises(smtpstate.BuiltinStateError, match="rule: built-in"):
        smtpstate.smtp_unregister_client_state(state_id)
    assert_unchanged(snapshot, take_snapshot())


@pytest.mark.parametrize("state_id", [-1, 0, 15, 63, 5000])
def test_unknown_id_cannot_be_unregistered(state_id, snapshot):
    with pytest.raises(smtpstate.UnknownStateError, match="rule: known id"):
        smtpstate.smtp_unregister_client_state(state_id)
    assert_unchanged(snapshot, take_snapshot())
    assert smtpstate.smtp_get_state(state_id) is None


def test_state_is_frozen_once_registered(noop):
    state = SmtpState("frozen", noop)
    state.init_local_state = 3  # still editable before registration
    state_id = smtpstate.register_smtp_client_state(state, 2)
    with pytest.raises(smtpstate.FrozenStateError, match="frozen"):
        state.name = "other"
    with pytest.raises(AttributeError):
        state.callback = None
    with pytest.raises(smtpstate.FrozenStateError, match="register a state once"):
        smtpstate.register_smtp_client_state(state, 2)
    info = smtpstate.smtp_get_state(state_id)
    assert info is not None and info.init_local_state == 3
    smtpstate.smtp_unregister_client_state(state_id)


def _register_closure_state() -> tuple[int, weakref.ref]:
    """Builds a state whose callables are closures local to this call."""
    seen: list[int] = []

    def callback(session, events):
        seen.append(events)

    def tostage(local_state):
        return 100 + local_state + len(seen)

    state = SmtpState("closure-state", callback, tostage=tostage)
    state_id = smtpstate.register_smtp_client_state(state, BuiltinState.EHLO)
    return state_id, weakref.ref(callback)


def test_closure_survives_gc_while_registered_and_dies_after():
    state_id, callback_ref = _register_closure_state()
    gc.collect()
    assert callback_ref() is not None
    record = lib.smtp_get_state(state_id)
    conn = ffi.new("connection *")
    conn.state = record
    conn.local_state = 2
    assert record.tostage(record, conn) == 102  # the closure still runs
    smtpstate.smtp_unregister_client_state(state_id)
    del record, conn
    gc.collect()
    assert callback_ref() is None


def test_tostring_and_tostage_reach_python_and_fall_back(noop):
    state = SmtpState(
        "staged",
        noop,
        tostage=lambda local: 100 + local,
        tostring=lambda stage: f"custom stage {stage}",
    )
    state_id = smtpstate.register_smtp_client_state(state, BuiltinState.EHLO)
    record = lib.smtp_get_state(state_id)
    assert ffi.string(record.tostring(record, 101)) == b"custom stage 101"
    builtin = lib.smtp_get_state(BuiltinState.MAIL_FROM)
    conn = ffi.new("connection *")
    conn.state = builtin
    assert builtin.tostage(builtin, conn) == smtpstate.Stage.MAIL_FROM
    smtpstate.smtp_unregister_client_state(state_id)


FULL_TABLE_SCRIPT = """
import smtpstate
from smtpstate import SmtpState
ids = []
while True:
    try:
        ids.append(smtpstate.register_smtp_client_state(
            SmtpState(f"fill-{len(ids)}", lambda s, e: None), 2))
    except smtpstate.StateTableFullError as exc:
        assert "rule: table capacity" in str(exc), exc
        break
def table():
    entries = []
    for state_id in range(1, 1024):
        info = smtpstate.smtp_get_state(state_id)
        if info is not None:
            entries.append((info.id, info.name, info.next_id))
    return [s.id for s in smtpstate.smtp_get_state_machine()], entries
before = table()
try:
    smtpstate.register_smtp_client_state(SmtpState("one-more", lambda s, e: None), 2)
except smtpstate.StateTableFullError:
    pass
else:
    raise SystemExit("registration past the end was accepted")
assert table() == before
print(len(ids), ids[0], ids[-1])
"""


def test_full_table_is_refused_in_a_subprocess():
    out = subprocess.run(
        [sys.executable, "-c", FULL_TABLE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["960", "64", "1023"]
