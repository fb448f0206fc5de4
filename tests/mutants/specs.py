"""The mutants of the hostile-server cases and of the rules on the caller's
input (issue 6, items 1, 4 and 7), as text replacements:
scripts/mutant_patches.py turns each into its .patch file.  (The workers'
two mutants are written by hand.)

Each mutant breaks one engine behaviour in csrc/ that a case of
tests/test_hostile.py guards, and names the cases that must then fail.  A
legal case (delivered) is broken by making the engine refuse it.  `old`
must occur exactly once in its file; when the code it names changes, edit
it here and regenerate.
"""

from __future__ import annotations

from dataclasses import dataclass

C = "tests/test_hostile.py::test_hostile_server_through_the_c_driver"
PY = "tests/test_hostile.py::test_hostile_server_through_python"


def node(file: str, test: str) -> str:
    """The pytest node id of `test` in tests/`file`."""
    return f"tests/{file}::{test}"


def c(*cases: str) -> tuple[str, ...]:
    """The C-driver test of each case."""
    return tuple(f"{C}[{case}]" for case in cases)


def py(*cases: str) -> tuple[str, ...]:
    """The Python test of each case (needs Build full)."""
    return tuple(f"{PY}[{case}]" for case in cases)


@dataclass(frozen=True)
class Edit:
    path: str
    old: str
    new: str


@dataclass(frozen=True)
class Spec:
    name: str
    breaks: str
    tests: tuple[str, ...]
    edits: tuple[Edit, ...]
    build: str = "c"  # "full" when a Python-level test is named


def reply(old: str, new: str) -> Edit:
    return Edit("csrc/reply.c", old, new)


# The setup entry fails the connection itself when an exception escaped;
# without it only the answer says so, which a jump made before wins over.
ESCAPE_GOES_ON = Edit(
    "python/smtpstate/_state_setup.c",
    "    if (escaped) {\n        snprintf",
    "    if (0) {\n        snprintf",
)


SPECS = [
    # ---- legal replies the engine must take ------------------------------
    Spec(
        "reply-split-refused",
        "a line whose three-digit code has not all arrived is refused, so a "
        "reply sent one byte at a time fails",
        c("one-byte-at-a-time") + py("one-byte-at-a-time"),
        (
            reply(
                "        return ended ? SMTP_EPROTO : 0;\n",
                "        return SMTP_EPROTO;\n",
            ),
        ),
        build="full",
    ),
    Spec(
        "code-without-text-refused",
        "a reply line of a code alone (no separator, no text) is refused",
        c("code-without-text"),
        (
            reply(
                "    if (n == CODE_LEN || p[CODE_LEN] == '-' || p[CODE_LEN] == ' ')\n",
                "    if ((n == CODE_LEN && !ended) || p[CODE_LEN] == '-' ||\n"
                "        p[CODE_LEN] == ' ')\n",
            ),
        ),
    ),
    Spec(
        "bare-lf-refused",
        "a reply line ended by LF without CR is refused",
        c("bare-lf-line-ends"),
        (
            reply(
                "    long rc = check_line_head(scan, line, n, true);\n\n",
                "    long rc = check_line_head(scan, line, n, true);\n\n"
                "    if (n + 1 == line_len)\n"
                "        return SMTP_EPROTO;\n",
            ),
        ),
    ),
    Spec(
        "nul-kept-in-text",
        "a NUL in a reply's text is passed on, cutting the text short",
        c("nul-and-non-utf8"),
        (
            reply(
                "        *nul = '?';\n",
                "        *nul = '\\0';\n",
            ),
        ),
    ),
    Spec(
        "eight-bit-text-refused",
        "a reply line holding a byte above 0x7f (not ASCII, so not UTF-8 "
        "either) is refused",
        c("nul-and-non-utf8") + py("nul-and-non-utf8"),
        (
            reply(
                "    long rc = check_line_head(scan, line, n, true);\n\n",
                "    long rc = check_line_head(scan, line, n, true);\n\n"
                "    for (size_t i = 0; i < n; i++)\n"
                "        if ((unsigned char)line[i] > 0x7f)\n"
                "            return SMTP_EPROTO;\n",
            ),
        ),
        build="full",
    ),
    # ---- malformed replies -----------------------------------------------
    Spec(
        "code-range-unchecked",
        "a reply code outside 200-599 is taken as a reply",
        c("code-above-599"),
        (
            reply(
                "    if (code < 200 || code > 599)\n",
                "    if (0 && (code < 200 || code > 599))\n",
            ),
        ),
    ),
    Spec(
        "non-digit-code-accepted",
        "a reply code holding a non-digit is read as digits",
        c("non-digit-code"),
        (
            reply(
                "        if (!is_digit(p[i]))\n",
                "        if (0 && !is_digit(p[i]))\n",
            ),
        ),
    ),
    Spec(
        "missing-separator-as-space",
        "a code followed by neither SP nor '-' is read as a last line",
        c("missing-separator"),
        (
            reply(
                "    if (n == CODE_LEN || p[CODE_LEN] == '-' || p[CODE_LEN] == ' ')\n",
                "    if (n >= CODE_LEN)\n",
            ),
            reply(
                "    if (n == CODE_LEN || line[CODE_LEN] == ' ')\n",
                "    if (n == CODE_LEN || line[CODE_LEN] != '-')\n",
            ),
        ),
    ),
    Spec(
        "code-below-200-taken",
        "a code under 200 passes both the range check and the rule that a "
        "positive reply must answer its command",
        c("code-below-200"),
        (
            reply(
                "    if (code < 200 || code > 599)\n",
                "    if (0 && (code < 200 || code > 599))\n",
            ),
            Edit(
                "csrc/client_session.c",
                "    if (r < 0 && -r < 400) {\n",
                "    if (0 && r < 0 && -r < 400) {\n",
            ),
        ),
    ),
    Spec(
        "two-digit-code-taken",
        "a two-digit code passes the digit check, the separator check and "
        "the rule that a positive reply must answer its command",
        c("two-digit-code"),
        (
            Edit(
                "csrc/client_session.c",
                "    if (r < 0 && -r < 400) {\n",
                "    if (0 && r < 0 && -r < 400) {\n",
            ),
            reply(
                "        if (!is_digit(p[i]))\n",
                "        if (0 && !is_digit(p[i]))\n",
            ),
            reply(
                "    if (n == CODE_LEN || p[CODE_LEN] == '-' || p[CODE_LEN] == ' ')\n",
                "    if (n >= CODE_LEN)\n",
            ),
            reply(
                "    if (n == CODE_LEN || line[CODE_LEN] == ' ')\n",
                "    if (n == CODE_LEN || line[CODE_LEN] != '-')\n",
            ),
        ),
    ),
    Spec(
        "empty-line-skipped",
        "an empty reply line is skipped instead of refused",
        c("empty-reply-line"),
        (
            reply(
                "    long rc = check_line_head(scan, line, n, true);\n\n",
                "    long rc = check_line_head(scan, line, n, true);\n\n"
                "    if (n == 0) {\n"
                "        scan->scanned += line_len;\n"
                "        return 0;\n"
                "    }\n",
            ),
        ),
    ),
    Spec(
        "continuation-code-change-accepted",
        "a reply whose lines carry different codes is taken, with the first "
        "line's code",
        c("continuation-code-changes"),
        (
            reply(
                "    if (scan->lines > 0 && code != scan->code)\n",
                "    if (0 && scan->lines > 0 && code != scan->code)\n",
            ),
        ),
    ),
    # ---- replies out of turn ---------------------------------------------
    Spec(
        "unread-reply-answers-next-command",
        "a command goes out while bytes no reply was due for are unread, so "
        "they are taken as its reply",
        c("talks-before-the-client", "extra-reply-to-mail"),
        (
            Edit(
                "csrc/connection.c",
                "    if (c->rstart < c->rend)\n        return smtp__fail(",
                "    if (0 && c->rstart < c->rend)\n        return smtp__fail(",
            ),
        ),
    ),
    Spec(
        "extra-reply-dropped",
        "a reply that arrives between transactions, when none is due, is "
        "dropped instead of failing the connection",
        c("extra-reply-after-ehlo", "extra-reply-after-the-body"),
        (
            Edit(
                "csrc/client_transaction.c",
                "    if (code != 0)\n        return unsolicited(c, code);\n"
                "    smtp__conn_batch_compact(c);\n",
                "    if (code == -421 || code <= SMTP_EAGAIN)\n"
                "        return unsolicited(c, code);\n"
                "    smtp__conn_batch_compact(c);\n",
            ),
        ),
    ),
    Spec(
        "positive-reply-out-of-step",
        "a positive reply that cannot answer the command (a 250 to DATA) is "
        "taken as a refusal",
        c("extra-reply-in-pipelined-group"),
        (
            Edit(
                "csrc/client_session.c",
                "    if (r < 0 && -r < 400) {\n",
                "    if (0 && r < 0 && -r < 400) {\n",
            ),
        ),
    ),
    # ---- silence ---------------------------------------------------------
    Spec(
        "banner-waited-for-ever",
        "the banner deadline re-arms instead of failing, so a server that "
        "never speaks, or never ends its reply, holds the connection for ever",
        c("never-speaks", "multi-line-reply-stalls"),
        (
            Edit(
                "csrc/client_session.c",
                "    (void)dc, (void)e, (void)domain, (void)binding_slot, (void)am;\n",
                "    (void)dc, (void)e, (void)domain, (void)binding_slot, (void)am;\n"
                "    if (events & E_TIMEOUT) {\n"
                "        smtp_conn_set_deadline(conn, 1000);\n"
                "        return SMTP_WANT_READ;\n"
                "    }\n",
            ),
        ),
    ),
    # ---- caps ------------------------------------------------------------
    Spec(
        "line-cap-dropped",
        "a reply line is not capped at 4 KiB: only the 68 KiB buffer stops it",
        c("reply-line-1MiB", "reply-line-100MiB", "reply-line-1MiB-to-the-body"),
        (
            reply(
                "    if (avail >= SMTP__REPLY_LINE_MAX)\n",
                "    if (0 && avail >= SMTP__REPLY_LINE_MAX)\n",
            ),
        ),
    ),
    Spec(
        "line-count-uncapped",
        "a reply's lines are not counted: only the 64 KiB byte cap stops it",
        c("multi-line-reply-never-ends"),
        (
            reply(
                "    if (scan->lines >= SMTP__REPLY_LINES_MAX)\n",
                "    if (0 && scan->lines >= SMTP__REPLY_LINES_MAX)\n",
            ),
            reply(
                "    for (int pass = 0; pass < SMTP__REPLY_LINES_MAX; pass++) {\n",
                "    for (;;) {\n",
            ),
        ),
    ),
    Spec(
        "reply-and-buffer-caps-dropped",
        "neither the 64 KiB reply cap nor the receive buffer's cap holds: a "
        "reply of 1 MiB of lines grows the buffer until the line count stops it",
        c("reply-of-1MiB-of-lines"),
        (
            reply(
                "    if (scan->scanned + avail >= SMTP__REPLY_MAX)\n",
                "    if (0 && scan->scanned + avail >= SMTP__REPLY_MAX)\n",
            ),
            reply(
                "    if (scan->scanned >= SMTP__REPLY_MAX)\n",
                "    if (0 && scan->scanned >= SMTP__REPLY_MAX)\n",
            ),
            reply(
                "        if (limit > SMTP__REPLY_MAX - start)\n",
                "        if (0 && limit > SMTP__REPLY_MAX - start)\n",
            ),
            Edit(
                "csrc/reader.c",
                "    if (cap > RBUF_MAX)\n",
                "    if (0 && cap > RBUF_MAX)\n",
            ),
        ),
    ),
    Spec(
        "reply-byte-cap-dropped",
        "a reply is not capped at 64 KiB: one that fits the 68 KiB buffer is taken",
        c("reply-just-over-64KiB"),
        (
            reply(
                "    if (scan->scanned + avail >= SMTP__REPLY_MAX)\n",
                "    if (0 && scan->scanned + avail >= SMTP__REPLY_MAX)\n",
            ),
            reply(
                "    if (scan->scanned >= SMTP__REPLY_MAX)\n",
                "    if (0 && scan->scanned >= SMTP__REPLY_MAX)\n",
            ),
            reply(
                "        if (limit > SMTP__REPLY_MAX - start)\n",
                "        if (0 && limit > SMTP__REPLY_MAX - start)\n",
            ),
        ),
    ),
    # ---- the server closes -----------------------------------------------
    Spec(
        "drop-is-permanent",
        "a connection the server closes or resets fails its messages permanently",
        c(
            "closes-at-banner",
            "closes-at-ehlo",
            "closes-at-mail",
            "closes-at-data",
            "closes-at-rcpt",
            "closes-mid-body",
            "closes-between-body-and-reply",
            "reset-mid-body",
            "reset-between-body-and-reply",
        ),
        (
            Edit(
                "csrc/connection.c",
                "        smtp__settle_unsettled(c, SMTP_OUTCOME_TRANSIENT, NULL,\n"
                "                               smtp__conn_stage(c));\n",
                "        smtp__settle_unsettled(c, error == SMTP_ECLOSED\n"
                "                               ? SMTP_OUTCOME_PERMANENT\n"
                "                               : SMTP_OUTCOME_TRANSIENT, NULL,\n"
                "                               smtp__conn_stage(c));\n",
            ),
        ),
    ),
    Spec(
        "close-after-body-delivers",
        "a close after the whole body, before its reply, counts as delivery",
        c("closes-between-body-and-reply", "reset-between-body-and-reply"),
        (
            Edit(
                "csrc/connection.c",
                "        smtp__settle_unsettled(c, SMTP_OUTCOME_TRANSIENT, NULL,\n"
                "                               smtp__conn_stage(c));\n",
                "        smtp__settle_unsettled(c, error == SMTP_ECLOSED &&\n"
                "                               smtp__conn_stage(c) ==\n"
                "                               SMTP_STAGE_CONFIRMATION\n"
                "                               ? SMTP_OUTCOME_DELIVERED\n"
                "                               : SMTP_OUTCOME_TRANSIENT, NULL,\n"
                "                               smtp__conn_stage(c));\n",
            ),
        ),
    ),
    Spec(
        "reset-is-io-error",
        "a TCP reset is reported as an I/O error (SMTP_EIO), not as the server closing",
        c("reset-mid-body", "reset-between-body-and-reply"),
        (
            Edit(
                "csrc/client_body.c",
                "        return errno == EPIPE || errno == ECONNRESET ? SMTP_ECLOSED\n",
                "        return errno == EPIPE ? SMTP_ECLOSED\n",
            ),
            Edit(
                "csrc/reader.c",
                "        return errno == ECONNRESET ? SMTP_ECLOSED : SMTP_EIO;\n",
                "        return SMTP_EIO;\n",
            ),
        ),
    ),
    # ---- 421 -------------------------------------------------------------
    Spec(
        "421-is-permanent",
        "a 421 fails everything unsettled permanently",
        c(
            "421-at-banner",
            "421-at-ehlo",
            "421-at-mail",
            "421-at-data",
            "421-at-rcpt",
            "421-multi-line",
            "421-mid-body",
            "421-to-the-body",
            "421-before-the-client",
            "250-then-421",
        ),
        (
            Edit(
                "csrc/client_session.c",
                "    smtp__settle_unsettled(c, SMTP_OUTCOME_TRANSIENT, "
                "&c->dc.last_reply,\n",
                "    smtp__settle_unsettled(c, SMTP_OUTCOME_PERMANENT, "
                "&c->dc.last_reply,\n",
            ),
        ),
    ),
    Spec(
        "421-as-plain-refusal",
        "a 421 is taken as an ordinary 4xx for what it answers, not as the "
        "server closing for everything unsettled",
        c("421-at-rcpt"),
        (
            Edit(
                "csrc/client_session.c",
                "    if (r == -421) {\n",
                "    if (0 && r == -421) {\n",
            ),
        ),
    ),
    Spec(
        "421-mid-body-missed",
        "a write that fails while the body is sent does not look for the server's 421",
        c("421-mid-body"),
        (
            Edit(
                "csrc/client_body.c",
                "        if (n < 0 && smtp__take_421(c))\n",
                "        if (0 && n < 0 && smtp__take_421(c))\n",
            ),
        ),
    ),
    Spec(
        "421-before-command-missed",
        "a 421 that arrives before a command is sent is a protocol error",
        c("421-before-the-client"),
        (
            Edit(
                "csrc/client_session.c",
                "    if (r == SMTP_EPROTO && smtp__take_421(c))\n",
                "    if (0 && r == SMTP_EPROTO && smtp__take_421(c))\n",
            ),
        ),
    ),
    Spec(
        "421-after-250-fails-delivery",
        "a 421 right behind the 250 to the body fails the message the 250 delivered",
        c("250-then-421", "250-then-421-server-back"),
        (
            Edit(
                "csrc/client_body.c",
                "    if (code > 0)\n        kind = SMTP_OUTCOME_DELIVERED;\n",
                "    if (code > 0 && smtp__take_421(c))\n        return 0;\n"
                "    if (code > 0)\n        kind = SMTP_OUTCOME_DELIVERED;\n",
            ),
        ),
    ),
    Spec(
        "timeout-after-body-delivers",
        "a body whose reply does not come before the deadline counts as delivered",
        c("silent-after-the-body"),
        (
            Edit(
                "csrc/client_body.c",
                "    if (!smtp__await_reply(c, events, ok, 3, &code, &ret))\n",
                "    if (events & E_TIMEOUT)\n"
                "        smtp__settle_accepted(c, SMTP_OUTCOME_DELIVERED,\n"
                "                              SMTP_STAGE_CONFIRMATION);\n"
                "    if (!smtp__await_reply(c, events, ok, 3, &code, &ret))\n",
            ),
        ),
    ),
    # ---- the body deadline -----------------------------------------------
    Spec(
        "body-deadline-ignores-progress",
        "the body deadline fails the message even when the server read "
        "since the last look",
        c("slow-reader"),
        (
            Edit(
                "csrc/client_body.c",
                "        if (c->txn.body_looked && left >= c->txn.body_unacked)\n",
                "        if (1 || (c->txn.body_looked &&\n"
                "                  left >= c->txn.body_unacked))\n",
            ),
        ),
    ),
    Spec(
        "body-deadline-ignored",
        "the body deadline re-arms even when the server read nothing, so a "
        "server that stops reading holds the message for ever",
        c("stops-reading"),
        (
            Edit(
                "csrc/client_body.c",
                "        if (c->txn.body_looked && left >= c->txn.body_unacked)\n",
                "        if (0 && c->txn.body_looked &&\n"
                "            left >= c->txn.body_unacked)\n",
            ),
        ),
    ),
    # ---- bad input from the caller (issue 6, item 4) ---------------------
    Spec(
        "c-address-control-bytes",
        "the C envelope check lets CR, LF and other control bytes through",
        ("tests/test_c_programs.py::test_c_program_passes[test_submit_rules]",),
        (
            Edit(
                "csrc/scheduler.c",
                "if (ch < 0x20 || ch == '<' || ch == '>')",
                "if (ch == '<' || ch == '>')",
            ),
        ),
        build="c",
    ),
    Spec(
        "c-no-recipient",
        "the C envelope check takes a message with no recipients",
        ("tests/test_c_programs.py::test_c_program_passes[test_submit_rules]",),
        (
            Edit(
                "csrc/scheduler.c",
                "if (msg->nrecipients == 0 || msg->recipients == NULL)",
                "if (msg->recipients == NULL)",
            ),
        ),
        build="c",
    ),
    Spec(
        "c-body-not-regular-file",
        "a FIFO or directory is taken as a message file",
        ("tests/test_c_programs.py::test_c_program_passes[test_submit_rules]",),
        (
            Edit(
                "csrc/scheduler.c",
                "if (!S_ISREG(st.st_mode))",
                "if (0 && !S_ISREG(st.st_mode))",
            ),
        ),
        build="c",
    ),
    Spec(
        "c-ehlo-name",
        "the C destination check lets any EHLO name through",
        ("tests/test_c_programs.py::test_c_program_passes[test_submit_rules]",),
        (
            Edit(
                "csrc/scheduler.c",
                "if (dest->helo != NULL && !token_is_clean(dest->helo, 255))",
                "if (dest->helo != NULL && dest->helo[0] == '\\0')",
            ),
        ),
        build="c",
    ),
    Spec(
        "py-address-control-bytes",
        "Message() accepts control bytes in an address",
        ("tests/test_delivery.py::test_address_with_space_or_control_is_refused",),
        (
            Edit(
                "python/smtpstate/delivery.py",
                '_ADDRESS_FORBIDDEN = re.compile("[\\x00-\\x1f\\x7f<>]")',
                '_ADDRESS_FORBIDDEN = re.compile("[<>]")',
            ),
        ),
        build="full",
    ),
    Spec(
        "py-empty-recipients",
        "Message() accepts an empty recipient list",
        (
            node(
                "test_delivery.py",
                "test_bad_envelope_is_refused_before_anything_is_sent",
            ),
        ),
        (
            Edit(
                "python/smtpstate/delivery.py",
                "        if not recipients:\n            raise",
                "        if False:\n            raise",
            ),
        ),
        build="full",
    ),
    Spec(
        "py-message-data-type",
        "Message() accepts data that is neither bytes nor a readable file",
        (
            node(
                "test_delivery.py",
                "test_message_that_is_not_bytes_or_a_readable_file_is_refused",
            ),
        ),
        (
            Edit(
                "python/smtpstate/delivery.py",
                "    if not isinstance(data, _PATHS):\n        raise",
                "    if not isinstance(data, _PATHS):\n        return\n        raise",
            ),
        ),
        build="full",
    ),
    Spec(
        "state-missing-callback",
        "a state without a callback is registered",
        (
            node(
                "test_state_table.py",
                "test_missing_callback_is_refused_and_changes_nothing",
            ),
            "tests/test_c_programs.py::test_c_program_passes[test_state_table]",
        ),
        (
            Edit(
                "csrc/state_table.c",
                "    if (state->callback == NULL)\n",
                "    if (0)\n",
            ),
        ),
        build="full",
    ),
    Spec(
        "state-bad-name",
        "a state with an invalid name is registered",
        ("tests/test_state_table.py::test_bad_name_is_refused_and_changes_nothing",),
        (
            Edit(
                "csrc/state_table.c",
                "if (state->name == NULL || !name_is_valid(state->name))",
                "if (state->name == NULL || (0 && !name_is_valid(state->name)))",
            ),
        ),
        build="full",
    ),
    Spec(
        "state-unknown-insert-after",
        "insert_after naming no registered state is accepted",
        (
            node(
                "test_state_table.py",
                "test_unknown_insert_after_is_refused_and_changes_nothing",
            ),
        ),
        (
            Edit(
                "csrc/state_table.c",
                "        registered_slot(insert_after) == NULL)\n",
                "        registered_slot(insert_after) == NULL && 0)\n",
            ),
        ),
        build="full",
    ),
    Spec(
        "owner-thread",
        "any thread may register states and run deliveries",
        (
            node(
                "test_state_table.py",
                "test_registration_from_another_thread_is_refused",
            ),
            "tests/test_delivery.py::test_delivery_from_another_thread_is_refused",
        ),
        (
            Edit(
                "csrc/library.c",
                "    return pthread_equal(owner_thread, pthread_self()) != 0;",
                "    return true;",
            ),
        ),
        build="full",
    ),
    Spec(
        "py-exception-not-contained",
        "an exception from a Python state is swallowed instead of failing its "
        "connection",
        (
            node(
                "test_delivery.py",
                "test_exception_fails_only_its_connection_and_others_go_on",
            ),
        ),
        (
            Edit(
                "python/smtpstate/states.py",
                "    except BaseException as exc:\n"
                "        _contain(registration, session, exc)\n"
                "        return False, None",
                "    except BaseException:\n        return False, None",
            ),
        ),
        build="full",
    ),
    Spec(
        "py-odd-return-passed-on",
        "a Python callback's return value is converted with int() instead of checked",
        ("tests/test_delivery.py::test_callable_returning_nonsense_is_contained",),
        (
            Edit(
                "python/smtpstate/states.py",
                "    if isinstance(wanted, int):\n        value = _index(wanted)",
                "    if True:\n        return int(wanted)\n"
                "        value = _index(wanted)",
            ),
        ),
        build="full",
    ),
    Spec(
        "bounce-permanent-as-transient",
        "a permanent outcome that no reply decided is classed 70, transient failure",
        (
            node(
                "test_state_contract.py",
                "test_fail_without_a_reply_cites_no_earlier_states_reply",
            ),
        ),
        (
            Edit(
                "csrc/outcome.c",
                "        return kind == SMTP_OUTCOME_PERMANENT ? "
                "SMTP_BOUNCE_GENERIC\n" + " " * 46 + ": SMTP_BOUNCE_TRANSIENT;\n",
                "        return SMTP_BOUNCE_TRANSIENT;\n",
            ),
        ),
        build="full",
    ),
    Spec(
        "py-collector-reuses-by-length",
        "the collector takes a reply string of the same length as the row "
        "above's for the same string, so same-length replies read back stale",
        (
            node(
                "test_delivery.py",
                "test_each_recipient_reads_back_its_own_reply_text",
            ),
        ),
        (
            Edit(
                "python/smtpstate/_collector.c",
                "        if ((size_t)prev[at_column + 1] == len &&\n"
                "            memcmp(c->text + prev[at_column], s, len) == 0) {\n",
                "        if ((size_t)prev[at_column + 1] == len) {\n",
            ),
        ),
        build="full",
    ),
    Spec(
        "setup-circle-unbounded",
        "setups that jump in a circle run for ever inside one turn",
        (
            node(
                "test_state_contract.py",
                "test_setups_that_jump_in_a_circle_fail_instead_of_looping",
            ),
        ),
        (
            Edit(
                "csrc/connection.c",
                "        if (++setups > SMTP_MAX_STATES) {\n",
                "        if (++setups > SMTP_MAX_STATES && setups == 0) {\n",
            ),
        ),
        build="full",
    ),
    Spec(
        "command-behind-pipelined-data",
        "a state after MAIL FROM or RCPT TO may send under PIPELINING, and "
        "its command lands in the message behind the DATA sent before it",
        (
            node(
                "test_state_contract.py",
                "test_state_cannot_send_behind_a_pipelined_data",
            ),
        ),
        (
            Edit(
                "csrc/connection.c",
                "    if ((c->txn.data_due || c->txn.in_data) && !c->chaining)\n",
                "    if (c->txn.in_data && !c->chaining)\n",
            ),
        ),
        build="full",
    ),
    Spec(
        "py-setup-move-dropped",
        "a Python setup's move to the default next state is lost when the "
        "setup returns",
        (
            node(
                "test_state_contract.py",
                "test_a_move_made_in_a_setup_wins_over_its_return",
            ),
        ),
        (
            Edit(
                "python/smtpstate/states.py",
                '    if session._moved == "next":\n'
                "        # A move made in a setup wins over what it returns, as in C.\n"
                "        return _SKIP\n",
                "",
            ),
        ),
        build="full",
    ),
    Spec(
        "py-run-waits-past-a-signal",
        "the binding's turns go on after a turn that handled nothing, with "
        "no end in time, so a signal that ended a wait is seen only at the "
        "next deadline",
        (
            node(
                "test_result_records.py",
                "test_signal_ends_a_delivery_waiting_on_a_silent_server",
            ),
        ),
        (
            Edit(
                "python/smtpstate/_collector.c",
                "        if (rc == 0 || py_stop_requested || c->failed ||",
                "        if (py_stop_requested || c->failed ||",
            ),
            # The 50 ms bound alone would see the signal soon enough.
            Edit(
                "python/smtpstate/_collector.c",
                "        else if (py_now_ms() >= until)\n            return handled;\n",
                "",
            ),
        ),
        build="full",
    ),
    Spec(
        "py-run-busy-turns-unbounded",
        "the binding's turns go on while each handles something, so a "
        "signal that interrupted no wait is seen only once one settles",
        (
            node(
                "test_result_records.py",
                "test_signal_ends_a_delivery_busy_sending_large_bodies",
            ),
        ),
        (
            Edit(
                "python/smtpstate/_collector.c",
                "        else if (py_now_ms() >= until)\n            return handled;\n",
                "",
            ),
        ),
        build="full",
    ),
    Spec(
        "py-kept-rows-read-as-delivered",
        "a result asked `delivered` before its recipients are made looks at "
        "the first recipient's row only",
        (
            node(
                "test_result_records.py",
                "test_summary_reads_the_same_before_and_after_recipients_are_made",
            ),
        ),
        (
            Edit(
                "python/smtpstate/delivery.py",
                "            for row in rows:\n"
                "                if row[0] != _DELIVERED:\n"
                "                    return False\n"
                "            return True",
                "            return rows[0][0] == _DELIVERED",
            ),
        ),
        build="full",
    ),
    Spec(
        "chain-never",
        "the next transaction's group waits for the reply to the end of data",
        (
            node(
                "test_chained_transactions.py",
                "test_next_group_goes_out_before_the_reply_to_the_end_of_data",
            ),
            node(
                "test_chained_transactions.py",
                "test_commands_after_the_body_are_pipelined_on_one_session",
            ),
        ),
        (
            Edit(
                "csrc/client_transaction.c",
                "    if (!c->txn.pipelined || c->has_next || c->need_rset ||",
                "    if (1 || !c->txn.pipelined || c->has_next || c->need_rset ||",
            ),
        ),
        build="full",
    ),
    Spec(
        "chain-in-a-second-write",
        "the next transaction's group goes out in a write of its own after "
        "the end of data",
        (
            node(
                "test_chained_transactions.py",
                "test_end_of_data_and_next_group_go_out_in_one_write",
            ),
        ),
        (
            Edit(
                "csrc/client_body.c",
                "    long n = body_sendv(c, iov, queued > 0 ? 2 : 1);",
                "    long n = body_sendv(c, iov, 1);",
            ),
        ),
        build="full",
    ),
    Spec(
        "chain-dropped-behind-held-body",
        "the chained group queued behind a part-sent last chunk is dropped",
        (
            node(
                "test_body_streaming.py",
                "test_a_chained_group_waits_behind_the_rest_of_a_short_sent_body",
            ),
        ),
        (
            Edit(
                "csrc/client_body.c",
                "    if (queued > 0)\n"
                "        memcpy(c->body_buf + len, c->wbuf + c->wstart, queued);\n",
                "    need = len;\n",
            ),
        ),
        build="full",
    ),
    Spec(
        "chain-overtakes-held-body",
        "the chained group goes out before the rest of a part-sent last chunk",
        (
            node(
                "test_body_streaming.py",
                "test_a_chained_group_waits_behind_the_rest_of_a_short_sent_body",
            ),
        ),
        (
            Edit(
                "csrc/client_body.c",
                "    if (queued > 0)\n"
                "        memcpy(c->body_buf + len, c->wbuf + c->wstart, queued);\n"
                "    c->wstart = c->wend = 0;\n",
                "    need = len;\n",
            ),
        ),
        build="full",
    ),
    Spec(
        "observer-not-chained",
        "a chain is not written past an observer after the anchor",
        (
            node(
                "test_chained_transactions.py",
                "test_an_observer_after_the_anchor_keeps_the_chain",
            ),
        ),
        (
            Edit(
                "csrc/client_transaction.c",
                "        if (s == NULL || !smtp__state_is_observer(s))",
                "        if (s == NULL || s != NULL)",
            ),
        ),
        build="full",
    ),
    Spec(
        "observer-may-send",
        "an observer's command is sent",
        (
            node(
                "test_chained_transactions.py",
                "test_an_observer_that_does_more_fails_its_messages[sends]",
            ),
        ),
        (
            Edit(
                "csrc/connection.c",
                "    if (smtp__state_is_observer(conn->state))\n",
                "    if (0)\n",
            ),
        ),
        build="full",
    ),
    Spec(
        "observer-may-jump",
        "an observer's jump elsewhere is taken",
        (
            node(
                "test_chained_transactions.py",
                "test_an_observer_that_does_more_fails_its_messages[jumps]",
            ),
        ),
        (
            Edit(
                "csrc/connection.c",
                "    if (state != NULL && smtp__state_is_observer(c->pub.state) &&",
                "    if (0 && smtp__state_is_observer(c->pub.state) &&",
            ),
        ),
        build="full",
    ),
    Spec(
        "observer-may-read",
        "an observer's read takes the reply due to its chained MAIL FROM",
        tuple(
            node(
                "test_chained_transactions.py",
                f"test_an_observer_that_does_more_fails_{t}[reads]",
            )
            for t in ("its_messages", "a_chained_message_too")
        ),
        (
            Edit(
                "csrc/reader.c",
                "    if (smtp__state_is_observer(c->pub.state))\n",
                "    if (0 && smtp__state_is_observer(c->pub.state))\n",
            ),
        ),
        build="full",
    ),
    Spec(
        "observer-may-wait",
        "an observer that does not move on in its setup is left waiting",
        (
            node(
                "test_chained_transactions.py",
                "test_an_observer_that_does_more_fails_its_messages[waits]",
            ),
        ),
        (
            Edit(
                "csrc/connection.c",
                "        if (smtp__state_is_observer(target) && r >= 0 &&",
                "        if (0 && smtp__state_is_observer(target) && r >= 0 &&",
            ),
        ),
        build="full",
    ),
    Spec(
        "chain-taken-past-a-late-state",
        "a chained group is taken up though a state that may send was "
        "registered before MAIL FROM after the group went",
        (
            node(
                "test_chained_transactions.py",
                "test_a_state_registered_while_a_group_is_chained_sends_nothing_"
                "behind_it",
            ),
        ),
        (
            Edit(
                "csrc/client_transaction.c",
                "    if (c->has_next && !anchor_leads_to_mail()) {",
                "    if (0) {",
            ),
        ),
        build="full",
    ),
    Spec(
        "observer-fault-given-back",
        "a chained message an observer oversteps on goes to a new session "
        "instead of failing",
        tuple(
            node(
                "test_chained_transactions.py",
                f"test_an_observer_that_does_more_fails_a_chained_message_too[{f}]",
            )
            for f in ("sends", "waits", "jumps")
        ),
        (
            Edit(
                "csrc/connection.c",
                "             !smtp__state_is_observer(c->pub.state))",
                "             1)",
            ),
        ),
        build="full",
    ),
    Spec(
        "settled-rcpt-loses-its-reply",
        "a recipient a state settles while its RCPT reply is due passes that "
        "reply to the next recipient",
        tuple(
            node(
                "test_chained_transactions.py",
                "test_a_recipient_a_state_settles_keeps_its_place_among_the_"
                f"rcpt_replies[{after}]",
            )
            for after in ("transaction", "mail-from")
        ),
        (
            Edit(
                "csrc/client_recipients.c",
                "        if (status == RCPT_SENT || (status & RCPT_REPLY_DUE)) {",
                "        if (status == RCPT_SENT) {",
            ),
        ),
        build="full",
    ),
    Spec(
        "chain-not-given-back",
        "a chained transaction whose data never went is settled with the "
        "failure of the transaction before it",
        tuple(
            node(
                "test_chained_transactions.py",
                f"test_fault_after_a_body_gives_the_chained_message_back[{f}]",
            )
            for f in ("extra-reply", "421-to-the-data")
        ),
        (
            Edit(
                "csrc/connection.c",
                "    if (c->has_next)\n        t = &c->next_txn, msg = c->next_msg;",
                "    if (0)\n        t = &c->next_txn, msg = c->next_msg;",
            ),
            Edit(
                "csrc/connection.c",
                "    else if (t->group_sent && !t->in_data && !t->body_done &&",
                "    else if (0 && t->group_sent && !t->in_data && !t->body_done &&",
            ),
        ),
        build="full",
    ),
    Spec(
        "chain-past-a-state",
        "the next group is chained though a caller's state sits after the "
        "transaction anchor",
        (
            node(
                "test_chained_transactions.py",
                "test_a_state_after_the_anchor_runs_before_each_next_group",
            ),
        ),
        (
            Edit(
                "csrc/client_transaction.c",
                "        if (s == NULL || !smtp__state_is_observer(s))",
                "        if (s == NULL || (s != NULL && 0))",
            ),
        ),
        build="full",
    ),
    Spec(
        "py-async-results-held",
        "deliver_async holds every result until the last turn instead of "
        "streaming them",
        (
            node(
                "test_delivery.py",
                "test_async_streams_results_while_other_tasks_run",
            ),
        ),
        (
            Edit(
                "python/smtpstate/delivery.py",
                "        feed = _Feed(enumerate(items))\n        while True:",
                "        feed = _Feed(enumerate(items))\n        held = []\n"
                "        while True:",
            ),
            Edit(
                "python/smtpstate/delivery.py",
                "            for _, result in engine.step(0, batch=0):\n"
                "                yield result\n"
                "            if feed.exhausted and not engine.in_flight:\n"
                "                break\n",
                "            for _, result in engine.step(0, batch=0):\n"
                "                held.append(result)\n"
                "            if feed.exhausted and not engine.in_flight:\n"
                "                for result in held:\n"
                "                    yield result\n"
                "                break\n",
            ),
        ),
        build="full",
    ),
    Spec(
        "py-setup-context-by-wrong-key",
        "the setup entry keeps one connection's cdata for every context, so "
        "a setup's Session is another connection's",
        (
            node(
                "test_state_setup_entry.py",
                "test_each_setup_sees_its_own_connection",
            ),
        ),
        (
            Edit(
                "python/smtpstate/states.py",
                "    args = _contexts.get(dc_address)\n",
                "    args = next(iter(_contexts.values()), None)\n",
            ),
        ),
        build="full",
    ),
    Spec(
        "py-setup-keeps-unregistered",
        "the setup entry keeps a removed state's registration alive for ever",
        (node("test_state_setup_entry.py", "test_unregistering_releases_the_state"),),
        (
            Edit(
                "python/smtpstate/_state_setup.c",
                "    py_setup_owner[state_id] = registration;\n    Py_XDECREF(old);\n",
                "    py_setup_owner[state_id] = registration;\n    (void)old;\n",
            ),
        ),
        build="full",
    ),
    Spec(
        "py-setup-escape-moves-on",
        "an error escaping the setup entry moves the connection on, so the "
        "message is delivered past a state that never ran",
        (
            node(
                "test_state_setup_entry.py",
                "test_an_error_escaping_the_entry_fails_the_message_and_is_reported",
            ),
        ),
        (
            Edit(
                "python/smtpstate/_state_setup.c",
                "        py_setup_escaped();\n        rc = SMTP_ESTATE;\n",
                "        py_setup_escaped();\n        rc = SMTP_STATE_SKIP;\n",
            ),
            ESCAPE_GOES_ON,
        ),
        build="full",
    ),
    Spec(
        "py-setup-answer-converted",
        "a setup's int answer is converted with int(), so an int subclass "
        "hands C bits other than those checked",
        (
            node(
                "test_state_setup_entry.py",
                "test_a_setup_answer_is_judged_by_its_value[int-converts-otherwise]",
            ),
        ),
        (
            Edit(
                "python/smtpstate/states.py",
                "        value = _index(result)\n",
                "        value = int(result)\n",
            ),
        ),
        build="full",
    ),
    Spec(
        "py-setup-escape-follows-jump",
        "an error escaping the setup entry after the setup jumped leaves the "
        "connection open, so the engine follows the jump and delivers",
        (
            # Not the interrupt's test: without the fix, whether MAIL goes
            # out before the run stops depends on when the socket is written.
            node(
                "test_state_setup_entry.py",
                "test_an_error_escaping_the_entry_after_a_jump_fails_the_message",
            ),
        ),
        (ESCAPE_GOES_ON,),
        build="full",
    ),
    Spec(
        "py-callback-answer-converted",
        "a callback's int answer is checked with its own & and converted "
        "with int(), so an int subclass hands C bits other than those checked",
        (
            node(
                "test_state_setup_entry.py",
                "test_a_callback_answer_is_judged_by_its_value",
            ),
        ),
        (
            Edit(
                "python/smtpstate/states.py",
                "        value = _index(wanted)  # as the setup's answer: "
                "the plain value\n"
                "        if value and not value & ~_WANT_BITS:\n"
                "            return value\n",
                "        if wanted and not wanted & ~_WANT_BITS:\n"
                "            return int(wanted)\n",
            ),
        ),
        build="full",
    ),
]
