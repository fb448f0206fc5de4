"""The ``smtpstate`` command, run as a user runs it, against real servers."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

import smtpstate.cli
import smtpstate.envelope
from canonical import canonical_body
from driver import SANITIZERS, parse_line
from servers import Script

SAMPLES = pathlib.Path(smtpstate.cli.__file__).parent / "samples"


def smtpstate_cmd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "smtpstate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def outcome_lines(stdout: str) -> list[dict[str, str]]:
    return [parse_line(line) for line in stdout.splitlines() if "rcpt=" in line]


def test_no_arguments_sends_the_samples_to_the_embedded_sink(tmp_path):
    sink_dir = tmp_path / "sink"
    out = smtpstate_cmd("--sink-dir", str(sink_dir))
    assert out.returncode == 0, out.stderr
    lines = outcome_lines(out.stdout)
    assert len(lines) == 7 and {x["result"] for x in lines} == {"delivered"}
    assert f"folder={sink_dir}" in out.stderr
    stored = sorted(sink_dir.glob("*.eml"))
    assert len(stored) == 4
    received = {p.read_bytes() for p in stored}
    for sample in sorted(SAMPLES.glob("*.eml")):
        expected = smtpstate.envelope._without_bcc(sample.read_bytes())
        assert canonical_body(expected) in received
    envelopes = [json.loads(p.read_text()) for p in sink_dir.glob("*.json")]
    group = next(e for e in envelopes if e["mail_from"] == "carol@sender.example")
    assert "grace@receiver.example" in group["rcpt_tos"]  # Bcc: in the envelope
    assert not any(b"grace@" in body for body in received)  # and not in the bytes


def test_explicit_envelope_to_a_named_server(tmp_path, scripted_server_factory):
    server = scripted_server_factory(Script())
    msg = tmp_path / "m.eml"
    msg.write_bytes(b"Subject: cli\n\n.dot\nbody")
    out = smtpstate_cmd(
        "--server", f"127.0.0.1:{server.port}", "--from", "a@client.test",
        "--to", "b@server.test", "--to", "c@server.test", str(msg),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = outcome_lines(out.stdout)
    assert [(x["rcpt"], x["result"], x["code"]) for x in lines] == [
        ("b@server.test", "delivered", "250"),
        ("c@server.test", "delivered", "250"),
    ]
    assert lines[0]["file"] == str(msg)
    (got,) = server.wait_for_messages(1)
    assert got.mail_from == "a@client.test"
    assert got.data == b"Subject: cli\r\n\r\n.dot\r\nbody\r\n"


def write(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_dash_t_takes_the_envelope_from_headers_and_drops_bcc(
    tmp_path, scripted_server_factory
):
    server = scripted_server_factory(Script())
    data = (
        b"Return-Path: <bounces@client.test>\r\nFrom: A <a@client.test>\r\n"
        b"To: B <b@server.test>, c@server.test\r\nBcc: hidden@server.test,\r\n"
        b" also-hidden@server.test\r\nCc: d@server.test\r\nSubject: t\r\n\r\n"
        b"Bcc: this body line stays\r\n"
    )
    out = smtpstate_cmd(
        "--server", f"127.0.0.1:{server.port}", "-t", write(tmp_path, "t.eml", data)
    )
    assert out.returncode == 0, out.stderr
    (got,) = server.wait_for_messages(1)
    assert got.mail_from == "bounces@client.test"
    assert set(got.rcpts) == {
        "b@server.test", "c@server.test", "d@server.test",
        "hidden@server.test", "also-hidden@server.test",
    }  # fmt: skip
    assert got.data == data.replace(
        b"Bcc: hidden@server.test,\r\n also-hidden@server.test\r\n", b""
    )


@pytest.mark.parametrize(
    ("headers", "sender"),
    [
        (b"Sender: s@client.test\r\nFrom: a@client.test, b@client.test\r\n",
         "s@client.test"),
        (b"From: Only <only@client.test>\r\n", "only@client.test"),
        (b"Return-Path: <>\r\nFrom: a@client.test\r\n", ""),
    ],
)  # fmt: skip
def test_dash_t_sender_rules(headers, sender, tmp_path, scripted_server_factory):
    server = scripted_server_factory(Script())
    data = headers + b"To: r@server.test\r\nSubject: s\r\n\r\nx\r\n"
    out = smtpstate_cmd(
        "--server", f"127.0.0.1:{server.port}", "-t", write(tmp_path, "s.eml", data)
    )
    assert out.returncode == 0, out.stderr
    assert server.wait_for_messages(1)[0].mail_from == sender


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-t", "@ambiguous"], "sender is ambiguous"),
        (["-t", "@no-rcpt"], "no recipients"),
        (["--from", "a@x.test", "@plain"], "give --from and --to"),
        (["--from", "a@x.test", "--to", "b@x.test", "missing.eml"], "not a readable"),
        (["--from", "a\r\n@x.test", "--to", "b@x.test", "@plain"], "rule: address"),
        (["--server", "h:99999", "-t", "@plain"], "bad port"),
        (["--timeout", "banner", "-t", "@plain"], "bad --timeout"),
        (["--state", "no.such.module", "-t", "@plain"], "--state no.such.module"),
        (["--bogus"], "unrecognized arguments"),
        (["--concurrency", "0", "-t", "@plain"], "--concurrency 0"),
        (["--timeout", "bogus=3", "-t", "@plain"], "no timeout 'bogus'"),
        (["--timeout", "connect=1e999", "-t", "@plain"], "bad --timeout"),
        (["--timeout", "banner=nan", "-t", "@plain"], "bad --timeout"),
        (["--timeout", "banner=0", "-t", "@plain"], "bad --timeout"),
        (["--helo", "bad helo", "-t", "@plain"], "--helo"),
        (["--json-events", "/nonexistent/dir/x.json", "-t", "@plain"], "--json-events"),
        (["-t", "@no-from"], "no sender"),
        (["--from", "a b@x.test", "--to", "b@x.test", "@plain"], "rule: address"),
        (["--from", "a@x.test", "--to", "b@x.test"], "no FILE given"),
        (["--to", "b@x.test"], "no FILE given"),
        (["--from", "a@x.test"], "no FILE given"),
        (["-t"], "no FILE given"),
        (["--progress", "-1", "-t", "@plain"], "--progress -1"),
        (["--progress", "nan", "-t", "@plain"], "--progress nan"),
        (["--progress", "inf", "-t", "@plain"], "--progress inf"),
        (["--sink-dir", "sink", "-t", "@plain"], "--sink-dir"),
    ],
)
def test_usage_errors_exit_64_and_send_nothing(
    args, message, tmp_path, scripted_server_factory
):
    server = scripted_server_factory(Script())
    files = {
        "@ambiguous": b"From: a@x.test, b@x.test\r\nTo: r@x.test\r\n\r\nx\r\n",
        "@no-rcpt": b"From: a@x.test\r\nSubject: nobody\r\n\r\nx\r\n",
        "@plain": b"From: a@x.test\r\nTo: r@x.test\r\n\r\nx\r\n",
        "@no-from": b"To: r@x.test\r\nSubject: x\r\n\r\nx\r\n",
    }
    argv = [write(tmp_path, a[1:], files[a]) if a in files else a for a in args]
    out = smtpstate_cmd("--server", f"127.0.0.1:{server.port}", *argv)
    assert out.returncode == 64, out.stderr
    assert message in out.stderr
    assert server.sessions == []


@pytest.mark.parametrize(
    ("script", "status"),
    [
        (Script(mail="451 4.3.0 later"), 75),
        (Script(rcpt=lambda r, i: "550 5.1.1 no" if i == 0 else "250 2.1.5 Ok"), 1),
    ],
)
def test_exit_status_follows_the_worst_outcome(
    script, status, tmp_path, scripted_server_factory
):
    server = scripted_server_factory(script)
    msg = write(tmp_path, "m.eml", b"Subject: x\r\n\r\nx\r\n")
    out = smtpstate_cmd(
        "--server", f"127.0.0.1:{server.port}", "--from", "a@client.test",
        "--to", "r0@server.test", "--to", "r1@server.test", msg,
    )  # fmt: skip
    assert out.returncode == status, out.stderr


def test_state_module_takes_part_in_every_session(tmp_path, scripted_server_factory):
    server = scripted_server_factory(Script())
    module = tmp_path / "noop_state.py"
    module.write_text(
        "import smtpstate\n"
        "smtpstate.register_smtp_client_state(\n"
        "    smtpstate.command_state('cli-noop', 'NOOP'),\n"
        "    smtpstate.BuiltinState.SESSION_READY)\n"
    )
    files = [write(tmp_path, f"{i}.eml", b"Subject: x\r\n\r\nx\r\n") for i in range(4)]
    out = smtpstate_cmd(
        "--server", f"127.0.0.1:{server.port}", "--state", str(module),
        "--from", "a@client.test", "--to", "r@server.test", "--concurrency", "2",
        *files,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    for session in server.wait_for_closed_sessions(1):
        assert session.verbs[:3] == ("EHLO", "NOOP", "MAIL")


def test_progress_lines_and_logged_events(tmp_path, scripted_server_factory):
    server = scripted_server_factory(Script())
    files = [write(tmp_path, f"{i}.eml", b"Subject: x\r\n\r\nx\r\n") for i in range(3)]
    out = smtpstate_cmd(
        "--server", f"127.0.0.1:{server.port}", "--from", "a@client.test",
        "--to", "r@server.test", "--progress", "0", "--log-events", *files,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    progress = [x for x in out.stderr.splitlines() if x.startswith("progress ")]
    assert progress and re.search(r"messages=3/3 delivered=3", progress[-1])
    assert any(" event=connect " in x for x in out.stderr.splitlines())


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"From: a@x.test\r\nTo: c@x.test\r\nBcc: e@x.test\r\n\r\nbody\r\n",
         b"From: a@x.test\r\nTo: c@x.test\r\n\r\nbody\r\n"),
        (b"From: a@x.test\nBcc: e@x.test,\n f@x.test\nTo: c@x.test\n\nbody\n",
         b"From: a@x.test\r\nTo: c@x.test\r\n\r\nbody\r\n"),
        (b"From: a@x.test\r\nTo: c@x.test\r\nBCC:\r\n\r\nBcc: body\r\n",
         b"From: a@x.test\r\nTo: c@x.test\r\n\r\nBcc: body\r\n"),
    ],
    ids=["last-header", "folded-lf", "empty-upper"],
)  # fmt: skip
def test_dash_t_removes_only_the_bcc_field(
    data, expected, tmp_path, scripted_server_factory
):
    server = scripted_server_factory(Script())
    out = smtpstate_cmd(
        "--server", f"127.0.0.1:{server.port}", "-t", write(tmp_path, "b.eml", data)
    )
    assert out.returncode == 0, out.stderr
    assert server.wait_for_messages(1)[0].data == expected


def test_existing_file_as_sink_dir_is_a_usage_error(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    out = smtpstate_cmd("--sink-dir", str(target))
    assert out.returncode == 64 and "--sink-dir" in out.stderr


def test_dash_t_sends_utf8_header_addresses_as_given_with_to(
    tmp_path, scripted_server_factory
):
    """RFC 6532: header bytes are UTF-8; an address from the headers goes
    on the wire byte for byte as the same address given with --to."""
    server = scripted_server_factory(Script())
    data = (
        "From: Zoë <zoë@client.test>\r\nTo: Jörg <jörg@r.test>\r\n"
        'Cc: "Ĳsbrand" <ĳs@r.test>\r\nSubject: é\r\n\r\nx\r\n'
    ).encode()
    headers = write(tmp_path, "h.eml", data)
    plain = write(tmp_path, "p.eml", b"Subject: p\r\n\r\nx\r\n")
    out = smtpstate_cmd("--server", f"127.0.0.1:{server.port}", "-t", headers)
    assert out.returncode == 0, out.stderr
    out = smtpstate_cmd(
        "--server", f"127.0.0.1:{server.port}", "--from", "zoë@client.test",
        "--to", "jörg@r.test", "--to", "ĳs@r.test", plain,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    by_header, by_option = server.wait_for_messages(2)
    assert by_header.data == data
    wire = [
        [line for line in s.commands if line[:4] in (b"MAIL", b"RCPT")]
        for s in server.wait_for_closed_sessions(2)
    ]
    expected = [
        "MAIL FROM:<zoë@client.test>\r\n".encode(),
        "RCPT TO:<jörg@r.test>\r\n".encode(),
        "RCPT TO:<ĳs@r.test>\r\n".encode(),
    ]
    assert wire == [expected, expected]
    assert by_header.rcpts == by_option.rcpts == ("jörg@r.test", "ĳs@r.test")
    assert [x["rcpt"] for x in outcome_lines(out.stdout)] == [
        "jörg@r.test",
        "ĳs@r.test",
    ]


@pytest.mark.parametrize(
    "field",
    [b"To: J\xf6rg <j\xf6rg@r.test>", b"From: \xff@x.test", b"Bcc: b\xc3@r.test"],
)
def test_dash_t_invalid_utf8_in_an_address_field_is_a_usage_error(
    field, tmp_path, scripted_server_factory
):
    server = scripted_server_factory(Script())
    data = b"From: a@x.test\r\nTo: r@x.test\r\n" + field + b"\r\n\r\nx\r\n"
    if field.startswith(b"From"):
        data = data.replace(b"From: a@x.test\r\n", b"")
    path = write(tmp_path, "bad.eml", data)
    out = smtpstate_cmd("--server", f"127.0.0.1:{server.port}", "-t", path)
    assert out.returncode == 64, out.stderr
    assert path in out.stderr and "UTF-8" in out.stderr
    assert "\ufffd" not in out.stderr + out.stdout
    assert server.sessions == []


BIG = 96 << 20


def big_message(path: pathlib.Path, headers: bytes) -> str:
    """`headers`, an empty line and a body of BIG bytes in 78-byte lines."""
    line = b"x" * 76 + b"\r\n"
    block = line * (1 << 14)
    with open(path, "wb") as f:
        f.write(headers + b"\r\n")
        for _ in range(BIG // len(block)):
            f.write(block)
    return str(path)


@pytest.mark.parametrize("bcc", [False, True], ids=["no-bcc", "bcc"])
def test_dash_t_streams_a_large_file(bcc, tmp_path, c_build, scripted_server_factory):
    """-t reads only the header section: the command's peak RSS stays far
    below the file's size, with a Bcc to remove or without."""
    server = scripted_server_factory(Script(), max_message_bytes=2 * BIG)
    headers = b"From: a@client.test\r\nTo: r@server.test\r\n"
    if bcc:
        headers += b"Bcc: hidden@server.test,\r\n more@server.test\r\n"
    headers += b"Subject: big\r\n"
    path = big_message(tmp_path / "big.eml", headers)
    spool = tmp_path / "tmp"
    spool.mkdir()
    out = subprocess.run(
        [str(c_build / "rusage-run"), sys.executable, "-m", "smtpstate",
         "--server", f"127.0.0.1:{server.port}", "-t", path],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TMPDIR": str(spool)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (got,) = server.wait_for_messages(1, timeout=120)
    expected_head = headers.replace(
        b"Bcc: hidden@server.test,\r\n more@server.test\r\n", b""
    )
    assert got.data.startswith(expected_head + b"\r\n" + b"x" * 76 + b"\r\n")
    assert len(got.data) == len(expected_head) + 2 + BIG - BIG % (78 << 14)
    assert set(got.rcpts) == (
        {"r@server.test", "hidden@server.test", "more@server.test"}
        if bcc
        else {"r@server.test"}
    )
    (rusage,) = [x for x in out.stderr.splitlines() if x.startswith("rusage ")]
    peak = int(parse_line(rusage)["maxrss_kib"]) * 1024
    if not SANITIZERS:  # ASan's shadow memory and quarantine are no measure
        assert peak < BIG / 2, f"peak RSS {peak >> 20} MiB for a {BIG >> 20} MiB file"
    assert list(spool.iterdir()) == []  # the copy without Bcc is removed


def test_dash_t_refuses_a_header_section_over_1_mib(tmp_path, scripted_server_factory):
    server = scripted_server_factory(Script())
    fold = b"".join(b" r%d@server.test,\r\n" % i for i in range(70_000))
    data = b"From: a@client.test\r\nTo: r@server.test,\r\n" + fold + b"\r\nx\r\n"
    assert len(data) > smtpstate.envelope.HEADER_MAX
    out = smtpstate_cmd(
        "--server", f"127.0.0.1:{server.port}", "-t", write(tmp_path, "h.eml", data)
    )
    assert out.returncode == 64, out.stderr
    assert "header section" in out.stderr and "1,048,576" in out.stderr
    assert server.sessions == []


@pytest.mark.parametrize(
    ("option", "address", "message"),
    [
        ("--to", "a b@x.test", "--to 'a b@x.test' has a space"),
        ("--to", "", "--to '' is empty"),
        ("--from", "a<b@x.test", "--from 'a<b@x.test' contains '<'"),
        ("--to", "\udcffb@x.test", "--to b'\\xffb@x.test' is not valid UTF-8"),
    ],
)
def test_a_bad_envelope_option_is_named_without_a_file(
    option, address, message, tmp_path, scripted_server_factory
):
    server = scripted_server_factory(Script())
    path = write(tmp_path, "m.eml", b"Subject: x\r\n\r\nx\r\n")
    envelope = {"--from": "a@x.test", "--to": "b@x.test", option: address}
    out = smtpstate_cmd(
        "--server", f"127.0.0.1:{server.port}", "--from", envelope["--from"],
        "--to", envelope["--to"], path,
    )  # fmt: skip
    assert out.returncode == 64, out.stderr
    assert out.stderr.startswith(f"smtpstate: {message}"), out.stderr
    assert path not in out.stderr
    assert server.sessions == []


def test_help_is_plain_text_and_names_the_defaults():
    out = smtpstate_cmd("--help")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "``" not in text
    assert "port 25 by default" in text
    assert "with no FILE and none of --from, --to and -t, the bundled samples" in text
    assert "only without --server" in text
    assert "130 interrupted" in text


@pytest.mark.parametrize(
    "bcc",
    [b"Bcc : e@x.test", b"bcc\t:e@x.test", b"BCC \t : e@x.test,\r\n f@x.test"],
    ids=["space", "tab", "folded"],
)
def test_dash_t_obsolete_bcc_with_space_before_colon_is_used_and_removed(
    bcc, tmp_path, scripted_server_factory
):
    """RFC 5322 4.5.3 (obs-optional): WSP may come before the colon."""
    server = scripted_server_factory(Script())
    data = (
        b"From: a@x.test\r\nTo: c@x.test\r\n" + bcc + b"\r\nCc : d@x.test\r\n\r\nB\r\n"
    )
    out = smtpstate_cmd(
        "--server", f"127.0.0.1:{server.port}", "-t", write(tmp_path, "o.eml", data)
    )
    assert out.returncode == 0, out.stderr
    (got,) = server.wait_for_messages(1)
    assert got.data == b"From: a@x.test\r\nTo: c@x.test\r\nCc : d@x.test\r\n\r\nB\r\n"
    expected = {"c@x.test", "d@x.test", "e@x.test"} | (
        {"f@x.test"} if b"f@" in bcc else set()
    )
    assert set(got.rcpts) == expected
