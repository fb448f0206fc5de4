"""An unsolicited line right after the EHLO reply makes the engine reconnect
forever: the message never gets an outcome and the driver never exits.

DESIGN 6: "A failure at any point, including before the first transaction
(a custom state's 5xx, a 421 in session setup), settles every unsettled
message of the batch as section 8 says."  DESIGN 8: "421 at any point:
transient for everything not yet settled"; "code outside 200-599, or a
malformed line [or bytes when no reply is due]: transient, SMTP_EPROTO".

Cause: the EHLO callback moves straight through session-ready to the
transaction anchor, whose setup (csrc/client_transaction.c:122) reads
the bytes buffered behind the EHLO reply and calls unsolicited()
(csrc/client_transaction.c:86-97).  unsolicited() first calls
smtp__conn_requeue_unstarted for *any* code: the batch's message was handed
to this connection by conn_open but not started yet, so it goes back to
the destination queue with no outcome, and open_connections
(csrc/scheduler.c:808) opens a new connection for it at once.  There is no
attempt count or back-off, so a server that always does this causes an
endless connect/EHLO/close loop (a connection storm at full CPU).
"""

from __future__ import annotations

import time

import pytest

from hr_util import SENDER, SHORT, message_file, run_bounded
from servers import CLOSE_AFTER, Script

EHLO_OK = "250-scripted.test\r\n250 8BITMIME"

CASES = {
    # A server shutting down right after greeting the client.
    "421-after-ehlo": CLOSE_AFTER(EHLO_OK + "\r\n421 4.3.2 shutting down"),
    # A server that sends one reply too many.
    "extra-250-after-ehlo": EHLO_OK + "\r\n250 2.0.0 one reply too many",
    # Garbage after the EHLO reply.
    "garbage-after-ehlo": EHLO_OK + "\r\nxyz garbage",
}


@pytest.mark.parametrize("case", list(CASES))
def test_unsolicited_reply_after_ehlo_settles_the_message_once(
    case, tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(Script(ehlo=CASES[case]))
    started = time.monotonic()
    run = run_bounded(
        server.port,
        "--from",
        SENDER,
        "--to",
        "r@server.test",
        *SHORT,
        "--timeout",
        "idle=500",
        str(message_file(tmp_path)),
        timeout=10,
    )
    sessions = len(server.sessions)
    # Observed: the driver is still running after 10 s (killed here) and
    # the server has seen thousands of sessions, each EHLO then a close.
    assert run is not None, (
        f"driver did not finish in {time.monotonic() - started:.0f} s; "
        f"the server saw {sessions} sessions"
    )
    (outcome,) = run.outcomes
    assert outcome["result"] == "transient", outcome
    assert sessions <= 3, sessions
