"""The main job end to end: the whole corpus (tests/data) through the
``smtpstate`` command to aiosmtpd, to a byte-exact capture server and to
Postfix's smtp-sink."""

from __future__ import annotations

import json
import os
import pathlib
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

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


CAP_DAC_READ_SEARCH = 2
PRIVILEGE_PROBE = (
    "import os; caps = open('/proc/self/status').read().split('CapEff:')[1]; "
    "print(os.geteuid(), int(caps.split()[0], 16))"
)


def unprivileged(command: list[str], home: pathlib.Path) -> list[str]:
    """`command` as it runs without root: unchanged when this process is not
    root; otherwise as "nobody" with every capability dropped but reading
    files, since the test's interpreter may live under a root-only folder
    (a pyenv in /root).  That one cannot bind a port below 1024 or write
    outside what "nobody" owns, so no package can be installed either."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to drop root")
    nobody = pwd.getpwnam("nobody")
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    keep = "-all,+dac_read_search"
    return [
        setpriv,
        f"--reuid={nobody.pw_uid}",
        f"--regid={nobody.pw_gid}",
        "--clear-groups",
        f"--inh-caps={keep}",
        f"--ambient-caps={keep}",
        f"--bounding-set={keep}",
        "--",
        *command,
    ]


@pytest.fixture
def home() -> Iterator[pathlib.Path]:
    """A folder for the unprivileged run, outside pytest's root-only one:
    access(2), which the command uses to check its files, ignores the one
    capability kept."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="smtpstate-noroot-"))
    yield path
    shutil.rmtree(path)


def test_main_job_needs_no_root(home):
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(home)}

    def run_unprivileged(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            unprivileged([sys.executable, *args], home),
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )

    probe = run_unprivileged("-c", PRIVILEGE_PROBE)
    uid, caps = map(int, probe.stdout.split())
    assert uid != 0 and caps & ~(1 << CAP_DAC_READ_SEARCH) == 0, probe.stdout

    # What the README's first command runs after the install: the bundled
    # samples with their header envelopes, to the embedded sink.  They are
    # sent from copies, as the package may sit in a root-only folder (the
    # mutant runs' scratch installs) that access(2) will not look into.
    samples = sorted(smtpstate.cli.SAMPLES.glob("*.eml"))
    copies = [shutil.copy(path, home) for path in samples]
    sink = str(home / "sink")
    out = run_unprivileged("-m", "smtpstate", "--sink-dir", sink, "-t", *copies)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stdout.splitlines() if " rcpt=" in line]
    assert len(lines) == 7 and all(" result=delivered " in x for x in lines)
    port = int(re.search(r"^sink=127\.0\.0\.1:(\d+) ", out.stderr, re.M)[1])
    assert port >= 1024
    assert len(list((home / "sink").glob("*.eml"))) == len(samples) == 4
