"""A reply that was already buffered is consumed by the "anything buffered?"
check and then merged with the next reply.

DESIGN 9: "Bytes that arrive when no reply is due are a protocol error,
except a 421 ... and replies PIPELINING makes due" (PIPELINING is not used
yet).  DESIGN 8: "code outside 200-599, or a malformed line: transient,
SMTP_EPROTO; close".

Cause: smtp__conn_check_buffered (csrc/scheduler.c:758) calls
smtp__conn_has_unread (csrc/reader.c:32), which runs the *stateful*
smtp__reply_scan over the buffered bytes and so advances c->scan past the
complete buffered reply without taking it.  The next read_smtp_codes
(csrc/reader.c:106-116) resumes the scan at scan.scanned == len, sees
"incomplete", receives more, and treats the next reply's lines as further
lines of the first one.  Two replies become one (first code, texts joined),
or, when the codes differ, a well-formed reply is reported as SMTP_EPROTO.
Once PIPELINING is used, several replies per read are the normal case.
"""

from __future__ import annotations

from driver import run_driver
from hr_util import SENDER, SHORT, message_file
from servers import Script


def test_two_replies_to_mail_are_a_protocol_error_not_merged(
    tmp_path, c_build, scripted_server_factory
):
    """MAIL gets two 250 replies in one write; only one was due."""
    server = scripted_server_factory(
        Script(mail="250 2.1.0 first\r\n250 2.1.0 unsolicited extra")
    )
    run = run_driver(
        server.port,
        "--from",
        SENDER,
        "--to",
        "r@server.test",
        *SHORT,
        str(message_file(tmp_path)),
    )
    (outcome,) = run.outcomes
    # Observed: result=delivered; the RCPT state's reply was the extra line
    # merged with the real RCPT reply (text "2.1.0 unsolicited extra\n2.1.5 Ok"
    # in the trace), so the extra reply was silently absorbed.
    assert outcome["result"] == "transient", outcome
    assert outcome["error"] == "SMTP_EPROTO", outcome


def test_reply_sent_with_the_354_is_not_the_reply_to_the_body(
    tmp_path, c_build, scripted_server_factory
):
    """The server writes "354" and "250" together, before any body byte was
    sent.  That 250 cannot be the reply to the end of data."""
    server = scripted_server_factory(
        Script(data="354 go ahead\r\n250 2.0.0 sent before the body")
    )
    run = run_driver(
        server.port,
        "--from",
        SENDER,
        "--to",
        "r@server.test",
        *SHORT,
        str(message_file(tmp_path)),
    )
    (outcome,) = run.outcomes
    # Observed: delivered, and the deciding reply's text is the early line
    # joined with the real reply: "2.0.0 sent before the body\n2.0.0 Ok: ...".
    assert "sent before the body" not in outcome["text"], outcome
    assert outcome["result"] == "transient", outcome
    assert outcome["error"] == "SMTP_EPROTO", outcome
