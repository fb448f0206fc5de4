"""The bounce class of a reply without an enhanced code is computed from
the *previous* reply's enhanced code.

DESIGN 8/10: each outcome carries the bounce class of the reply that
decided it.

Cause: smtp__reply_extract (csrc/reply.c:242 and 200-208, set_enhanced) only
writes enhanced[0] = '\\0' when the new reply has no enhanced code, and
smtp__bounce_class (csrc/outcome.c:32,35,43) compares enh + 1 (".2.2",
".3.4", ".1.1") past that terminator, i.e. the stale bytes of the last
reply that had one.  A "550 unknown user" after a "550 5.2.2 mailbox full"
is classed 22 (Mailbox Full) instead of 10 (Invalid Recipient).  The read
stays inside the 16-byte array, so no sanitizer notices.
"""

from __future__ import annotations

from hr_util import SENDER, message_file, run_bounded
from servers import Script


def test_bounce_class_does_not_use_the_previous_enhanced_code(
    tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory(
        Script(
            rcpt=lambda rcpt, i: (
                "550 5.2.2 mailbox full" if i == 0 else "550 unknown user"
            ),
        )
    )
    run = run_bounded(
        server.port,
        "--from",
        SENDER,
        "--to",
        "full@server.test",
        "--to",
        "nobody@server.test",
        str(message_file(tmp_path)),
        timeout=30,
    )
    assert run is not None
    got = {o["rcpt"]: o for o in run.outcomes}
    assert got["full@server.test"]["class"] == "22"
    # Observed: class=22 (the first reply's 5.2.2) for "550 unknown user".
    assert got["nobody@server.test"]["enhanced"] == "-"
    assert got["nobody@server.test"]["class"] == "10", got["nobody@server.test"]
