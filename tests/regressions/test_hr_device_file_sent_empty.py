"""A character device given as the message file (here /dev/zero) is sent as
an empty message and reported delivered.

smtp.h (smtp_scheduler_submit): a message with "no body" is refused with
SMTP_EINVAL.  The bytes of the file are the message: a file whose size
fstat reports as 0 but which is not a regular file has no defined body.

Cause: check_message (csrc/scheduler.c:275) accepts any path access(R_OK)
allows; body_open (csrc/client_transaction.c:178-196) takes st_size (0 for
a device) as the body length without checking S_ISREG, so the data section
is the lone ".".  (A directory passes submit the same way and fails later
at MAIL FROM with SMTP_EIO; a FIFO hangs the loop, see
test_hr_fifo_body_hangs.py.)
"""

from __future__ import annotations

import os

import pytest

from hr_util import SENDER, run_bounded


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_device_file_is_not_delivered_as_an_empty_message(
    c_build, scripted_server_factory
):
    server = scripted_server_factory()
    run = run_bounded(
        server.port,
        "--from",
        SENDER,
        "--to",
        "r@server.test",
        "/dev/zero",
        timeout=30,
    )
    assert run is not None
    # Observed: result=delivered; the server received an empty data section.
    assert [m.raw_data for m in server.messages] == [], server.messages
    assert all(o["result"] != "delivered" for o in run.outcomes), run.outcomes
