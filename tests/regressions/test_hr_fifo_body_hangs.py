"""A named pipe given as the message file blocks the whole event loop
forever, past every deadline.

DESIGN 9: per-command deadlines on a monotonic clock; DESIGN 11: a loop an
embedder can step, which must never block.  smtp.h: submit refuses "no
body" with SMTP_EINVAL.

Cause: check_message (csrc/scheduler.c:275) only checks access(R_OK), so a
FIFO (or a device) passes; body_open (csrc/client_transaction.c:178) then
calls a blocking open(path, O_RDONLY) on the owner thread inside the MAIL
FROM setup.  With no writer on the FIFO, open never returns: no deadline
fires, no other connection is served, and the driver hangs until killed.
"""

from __future__ import annotations

import os

from hr_util import SENDER, SHORT, run_bounded


def test_fifo_as_message_file_fails_instead_of_hanging(
    tmp_path, c_build, scripted_server_factory
):
    fifo = tmp_path / "message.fifo"
    os.mkfifo(fifo)
    server = scripted_server_factory()
    run = run_bounded(
        server.port,
        "--from",
        SENDER,
        "--to",
        "r@server.test",
        *SHORT,
        str(fifo),
        timeout=10,
    )
    # Observed: still blocked in open(2) after 10 s (killed here); the
    # server's session is stuck after EHLO.
    assert run is not None, "driver blocked in open() on the FIFO"
    if run.outcomes:
        (outcome,) = run.outcomes
        assert outcome["result"] == "transient", outcome
    else:
        # Refused at submit: not a regular file (the driver exits 64).
        assert run.returncode == 64 and "not a regular file" in run.stderr
