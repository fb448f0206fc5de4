"""A 421 between two transactions of one message (its recipients split by
--rcpt-per-transaction) fails the recipients not yet tried, with neither
the 421 reply nor an error code, instead of moving them to a new
connection.

DESIGN 8: "a 421 when no reply is due (idle or between messages): close;
settled outcomes stand; the rest of the batch moves to a new connection".
README: an outcome carries "the reply that decided it ... or an SMTP_E*
error when no reply decided it".

Cause: the transaction anchor's setup reads the 421 and calls
unsolicited() (csrc/client_transaction.c:86-97).  It requeues only
messages with started == false (csrc/connection.c:369-379,
smtp__conn_requeue_unstarted); a message whose first transaction is done
has started == true and stays in the batch, so smtp__conn_fail(c, 0, ...)
settles its remaining recipients transient with error 0 and no reply:
code=0 error=- text="the server closed an idle connection (421)".
The same 421 between two *different* messages loses nothing (the second
message is requeued and delivered), so the split message is treated worse
than two messages.
"""

from __future__ import annotations

from hr_util import SENDER, message_file, run_bounded
from servers import CLOSE_AFTER, Script


def test_421_between_transactions_of_one_message(
    tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(
        Script(end_of_data=CLOSE_AFTER("250 2.0.0 Ok\r\n421 4.3.2 closing"))
    )
    rcpts = ["a@server.test", "b@server.test", "c@server.test"]
    run = run_bounded(
        server.port,
        "--from",
        SENDER,
        *[arg for r in rcpts for arg in ("--to", r)],
        "--rcpt-per-transaction",
        "1",
        str(message_file(tmp_path)),
        timeout=30,
    )
    assert run is not None
    got = {o["rcpt"]: o for o in run.outcomes}
    assert got["a@server.test"]["result"] == "delivered"
    for rcpt in rcpts[1:]:
        outcome = got[rcpt]
        # Whatever is decided, an outcome without a reply must name an error.
        assert outcome["code"] != "0" or outcome["error"] != "-", outcome
    # Observed: b and c transient, code=0, error=-, stage=1, on a single
    # session; nothing is retried on a new connection.
    assert len(server.sessions) >= 2, [s.verbs for s in server.sessions]
    assert all(got[r]["result"] == "delivered" for r in rcpts), got
