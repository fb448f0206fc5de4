"""When one FILE of several is refused at submit, the driver exits without
an outcome for the messages it already handed to the engine, and (under
LeakSanitizer) leaks the scheduler.

The brief: every message handed to the engine must end with exactly one
outcome per recipient; the driver must never leak.  smtp.h:
smtp_scheduler_free "Each message not yet settled gets a transient
outcome first, so none is lost."

Cause: examples/smtpstate-send.c:514-515 returns 1 when submit_all fails,
without smtp_scheduler_free(sched) (which would settle the submitted
messages transiently) and without freeing `msgs`.  submit_one
(examples/smtpstate-send.c:336-338) treats SMTP_EINVAL for one message as fatal
for the whole run.  Under ASan, LSan reports the scheduler (scheduler.c:125),
its destination and `msgs` (smtpstate-send.c:473) as leaked.
"""

from __future__ import annotations

from hr_util import SENDER, message_file, run_bounded, sanitizer_report


def test_good_file_then_missing_file_still_settles_the_good_one(
    tmp_path, c_build, scripted_server_factory
):
    server = scripted_server_factory()
    good = message_file(tmp_path)
    missing = tmp_path / "does-not-exist.eml"
    run = run_bounded(
        server.port,
        "--from",
        SENDER,
        "--to",
        "r@server.test",
        str(good),
        str(missing),
        timeout=30,
    )
    assert run is not None
    # Observed: exit 1, "smtpstate-send: smtp_scheduler_submit: cannot read
    # .../does-not-exist.eml", no outcome line for message 1 (submitted and
    # never settled), and an LSan report under ASan.
    assert [o["id"] for o in run.outcomes] == ["1"], (run.outcomes, run.stderr)
    assert sanitizer_report(run) == [], run.stderr[-3000:]


def test_refused_envelope_does_not_leak(tmp_path, c_build, scripted_server_factory):
    server = scripted_server_factory()
    run = run_bounded(
        server.port,
        "--from",
        SENDER,
        "--to",
        "bad<rcpt>@server.test",
        str(message_file(tmp_path)),
        timeout=30,
    )
    assert run is not None
    assert run.returncode != 0
    # Observed under ASan: "ERROR: LeakSanitizer: detected memory leaks",
    # 216 bytes from smtp_scheduler_new and 64 from build_messages.
    assert sanitizer_report(run) == [], run.stderr[-3000:]
