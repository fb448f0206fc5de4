"""The main job end to end: the whole corpus (tests/data) through the
``smtpstate`` command to aiosmtpd, to a byte-exact capture server and to
Postfix's smtp-sink."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

import pytest

import smtpstate.cli
import smtpstate.envelope
from canonical import canonical_body
from servers import Script

DATA = pathlib.Path(__file__).resolve().parent / "data"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
FILES = [DATA / entry["file"] for entry in MANIFEST]
MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


def message_id(data: bytes) -> str:
    match = MESSAGE_ID.search(data)
    assert match, data[:200]
    return match.group(1).decode()


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "smtpstate", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def explicit_envelope() -> list[str]:
    return ["--from", "corpus@client.test", "--to", "rcpt@server.test"]


def test_corpus_to_the_embedded_aiosmtpd_sink_is_byte_exact(tmp_path):
    out = run("--sink-dir", str(tmp_path), *explicit_envelope(), *map(str, FILES))
    assert out.returncode == 0, out.stderr[-2000:]
    stored = {
        message_id(p.read_bytes()): p.read_bytes() for p in tmp_path.glob("*.eml")
    }
    assert len(stored) == len(FILES) >= 40
    for path in FILES:
        data = path.read_bytes()
        assert stored[message_id(data)] == canonical_body(data), path.name


def test_corpus_with_dash_t_follows_the_manifest_envelopes(tmp_path):
    out = run("--sink-dir", str(tmp_path), "-t", *map(str, FILES))
    assert out.returncode == 0, out.stderr[-2000:]
    by_id = {}
    for eml in tmp_path.glob("*.eml"):
        envelope = json.loads(eml.with_suffix(".json").read_text())
        by_id[message_id(eml.read_bytes())] = (eml.read_bytes(), envelope)
    for entry, path in zip(MANIFEST, FILES, strict=True):
        body, envelope = by_id[entry["message_id"]]
        mail_from = "" if envelope["mail_from"] == "<>" else envelope["mail_from"]
        assert mail_from == entry["envelope"]["from"], path.name  # aiosmtpd: "<>"
        assert envelope["rcpt_tos"] == entry["envelope"]["to"], path.name
        expected = smtpstate.envelope._without_bcc(path.read_bytes())
        assert body == canonical_body(expected), path.name
        assert not re.search(rb"^Bcc:", body, re.IGNORECASE | re.MULTILINE)


def test_corpus_to_the_capture_server_is_byte_exact(scripted_server_factory):
    server = scripted_server_factory(Script())
    out = run(
        "--server", f"127.0.0.1:{server.port}", *explicit_envelope(), *map(str, FILES)
    )
    assert out.returncode == 0, out.stderr[-2000:]
    received = {message_id(m.data): m for m in server.wait_for_messages(len(FILES))}
    for path in FILES:
        data = path.read_bytes()
        got = received[message_id(data)]
        assert got.data == canonical_body(data), path.name
        # On the wire: no bare CR or LF, every line ending CRLF.
        assert re.search(rb"\r(?!\n)|(?<!\r)\n", got.raw_data) is None, path.name


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "plain"])
def test_corpus_to_smtp_sink_counts_every_message_id_once(
    pipelining, smtp_sink_factory
):
    sink = smtp_sink_factory(dump=True, pipelining=pipelining)
    out = run("--server", f"127.0.0.1:{sink.port}", *explicit_envelope(),
              *map(str, FILES))  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert sink.wait_for_messages(len(FILES)) == len(FILES)
    ids = sink.message_ids()
    assert sorted(ids) == sorted(entry["message_id"] for entry in MANIFEST)
