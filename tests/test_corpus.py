"""The test corpus in tests/data: every claim of manifest.json, from the bytes.

Each tag of the vocabulary has a checker here, written independently of
tests/data/generate.py.  A file carries a tag if and only if the checker
holds: it has every property its manifest entry claims and claims every one
it has, so tests can select files by tag.  The generator must also still
reproduce the committed bytes.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.header
import email.message
import email.policy
import email.utils
import functools
import hashlib
import io
import json
import re
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"
MESSAGES = DATA / "messages"
MANIFEST: list[dict] = json.loads((DATA / "manifest.json").read_text("ascii"))
ID_DOMAIN = "corpus.smtpstate.test"

LINE_END = re.compile(rb"\r\n|\r|\n")
BARE_LF = re.compile(rb"(?<!\r)\n")
BARE_CR = re.compile(rb"\r(?!\n)")
FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
ENCODED_WORD = re.compile(r"=\?[^?\s]+\?([BbQq])\?[^?\s]*\?=")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_CHUNKS = 10_000


class Sample:
    """One corpus file with its lines, header fields and MIME tree."""

    def __init__(self, name: str) -> None:
        """Reads the file `name` (relative to tests/data)."""
        self.name = name
        self.data = (DATA / name).read_bytes()

    @functools.cached_property
    def lines(self) -> list[bytes]:
        """The lines between line ends (CRLF, bare CR or bare LF)."""
        lines = LINE_END.split(self.data)
        return lines[:-1] if self.data.endswith((b"\r", b"\n")) else lines

    @functools.cached_property
    def split(self) -> tuple[bytes, bytes | None]:
        """The header section and the body after the first empty line."""
        start = 0
        for match in LINE_END.finditer(self.data):
            if match.start() == start:
                return self.data[: match.start()], self.data[match.end() :]
            start = match.end()
        return self.data, None

    @property
    def head(self) -> bytes:
        """The header section, without the empty line."""
        return self.split[0]

    @property
    def body(self) -> bytes | None:
        """The body, or None when there is no empty line."""
        return self.split[1]

    @functools.cached_property
    def body_lines(self) -> list[bytes]:
        """The lines of the body."""
        body = self.body or b""
        lines = LINE_END.split(body)
        return lines[:-1] if body.endswith((b"\r", b"\n")) else lines

    @functools.cached_property
    def fields(self) -> list[tuple[str, list[bytes]]]:
        """Each header field: its name and its physical lines."""
        physical = LINE_END.split(self.head)
        if physical and physical[-1] == b"":
            physical.pop()
        fields: list[tuple[str, list[bytes]]] = []
        for line in physical:
            if line[:1] in (b" ", b"\t") and fields:
                fields[-1][1].append(line)
                continue
            match = FIELD_NAME.match(line)
            assert match is not None, f"{self.name}: not a header line: {line!r}"
            fields.append((match.group()[:-1].decode("ascii").lower(), [line]))
        return fields

    def values(self, name: str) -> list[str]:
        """The unfolded values of every field called `name`."""
        found = []
        for field_name, physical in self.fields:
            if field_name == name.lower():
                raw = b"".join(physical).split(b":", 1)[1].strip()
                found.append(raw.decode("utf-8", "surrogateescape"))
        return found

    def addresses(self, *names: str) -> list[str]:
        """The addresses in the named fields, in the order of `names`."""
        found: list[str] = []
        for name in names:
            pairs = email.utils.getaddresses(self.values(name))
            found += [addr for _, addr in pairs if addr]
        return found

    @functools.cached_property
    def message(self) -> email.message.Message:
        """The file parsed by the email package (compat32, from bytes)."""
        return email.message_from_bytes(self.data, policy=email.policy.compat32)

    @functools.cached_property
    def parts(self) -> list[email.message.Message]:
        """Every entity of the MIME tree, the root first."""
        return list(self.message.walk())

    def cte(self, part: email.message.Message) -> str:
        """The part's Content-Transfer-Encoding, lower case."""
        return str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()

    def raw_payload(self, part: email.message.Message) -> bytes:
        """The part's payload as it stands in the file."""
        if self.cte(part) in ("7bit", "8bit", "binary"):
            # compat32 hands back the octets unchanged for these encodings.
            data = part.get_payload(decode=True)
            assert isinstance(data, bytes)
            return data
        payload = part.get_payload()
        assert isinstance(payload, str)
        return payload.encode("ascii", "surrogateescape")


@functools.cache
def sample(name: str) -> Sample:
    """Returns the sample for a manifest file name, read once."""
    return Sample(name)


# --- checkers ---------------------------------------------------------------


def any_line(lines: list[bytes], test: Callable[[bytes], bool]) -> bool:
    """Whether some line passes `test`."""
    return any(test(line) for line in lines)


def in_middle(
    data: bytes, pattern: bytes, before: bytes = b"", after: bytes = b""
) -> bool:
    """Whether `pattern` occurs with more bytes after it, not preceded by
    `before` and not followed by `after` (empty: no condition)."""
    start = data.find(pattern)
    for _ in range(len(data)):
        if start < 0:
            return False
        end = start + len(pattern)
        ok_before = not before or data[start - 1 : start] != before
        ok_after = not after or data[end : end + len(after)] != after
        if end < len(data) and ok_before and ok_after:
            return True
        start = data.find(pattern, start + 1)
    return False


def lf_cr(data: bytes) -> bool:
    """Whether a bare LF is followed by a bare CR."""
    return re.search(rb"(?<!\r)\n\r(?!\n)", data) is not None


def is_utf8(data: bytes) -> bool:
    """Whether the octets decode as UTF-8."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def base64_parts(s: Sample) -> Iterator[email.message.Message]:
    """The leaf parts whose encoding is base64."""
    return (p for p in s.parts if not p.is_multipart() and s.cte(p) == "base64")


def b64_strict(s: Sample, part: email.message.Message) -> bytes | None:
    """The decoded payload, or None when it is not clean base64."""
    text = re.sub(rb"\s+", b"", s.raw_payload(part))
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def decoded_of_type(s: Sample, ctype: str) -> Iterator[bytes]:
    """The cleanly decoded base64 payloads of type `ctype`."""
    for part in base64_parts(s):
        if part.get_content_type() == ctype:
            blob = b64_strict(s, part)
            if blob is not None:
                yield blob


def base64_lines_76(s: Sample) -> bool:
    """Whether base64 parts come in 76-character lines."""
    long_part = False
    for part in base64_parts(s):
        lines = [line for line in LINE_END.split(s.raw_payload(part))]
        while lines and lines[-1] == b"":
            lines.pop()
        if any(len(line) != 76 for line in lines[:-1]):
            return False
        if not lines or not 0 < len(lines[-1]) <= 76:
            return False
        long_part = long_part or len(lines) >= 2
    return long_part


def valid_png(blob: bytes) -> bool:
    """Whether `blob` is an RGB PNG with good CRCs and pixel data."""
    if not blob.startswith(PNG_SIGNATURE):
        return False
    chunks: list[tuple[bytes, bytes]] = []
    pos = len(PNG_SIGNATURE)
    for _ in range(MAX_CHUNKS):
        if pos >= len(blob):
            break
        length, kind = struct.unpack(">I4s", blob[pos : pos + 8])
        data = blob[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", blob[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(kind + data) & 0xFFFFFFFF != crc:
            return False
        chunks.append((kind, data))
        pos += 12 + length
    if pos != len(blob) or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        return False
    width, height, depth, colour = struct.unpack(">IIBB", chunks[0][1][:10])
    pixels = zlib.decompress(b"".join(d for k, d in chunks if k == b"IDAT"))
    return depth == 8 and colour == 2 and len(pixels) == height * (1 + 3 * width)


def valid_pdf(blob: bytes) -> bool:
    """Whether `blob` is a PDF whose xref points at its objects."""
    match = re.search(rb"startxref\n(\d+)\n%%EOF\n\Z", blob)
    if not blob.startswith(b"%PDF-1.") or match is None:
        return False
    xref = int(match.group(1))
    table = re.match(rb"xref\n0 (\d+)\n", blob[xref:])
    if table is None:
        return False
    entries = re.findall(rb"(\d{10}) 00000 n \n", blob[xref:])
    for number, offset in enumerate(entries, start=1):
        if not blob[int(offset) :].startswith(b"%d 0 obj\n" % number):
            return False
    return len(entries) == int(table.group(1)) - 1


def valid_zip(blob: bytes) -> bool:
    """Whether the zipfile module reads `blob` and tests it clean."""
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            return archive.testzip() is None and bool(archive.namelist())
    except zipfile.BadZipFile:
        return False


def children_types(part: email.message.Message) -> list[str]:
    """The content types of a multipart's children."""
    payload = part.get_payload()
    assert isinstance(payload, list)
    return [child.get_content_type() for child in payload]


def multipart_of(s: Sample, subtype: str) -> list[email.message.Message]:
    """The multipart entities of one subtype."""
    return [p for p in s.parts if p.get_content_type() == f"multipart/{subtype}"]


def html_alternative(part: email.message.Message) -> bool:
    """Whether an alternative is HTML: text/html, or a multipart/related
    whose first part is text/html."""
    if part.get_content_type() == "text/html":
        return True
    if part.get_content_type() != "multipart/related":
        return False
    children = part.get_payload()
    assert isinstance(children, list)
    return bool(children) and children[0].get_content_type() == "text/html"


def alternative(s: Sample) -> bool:
    """Whether an alternative offers text/plain and HTML."""
    for part in multipart_of(s, "alternative"):
        children = part.get_payload()
        assert isinstance(children, list)
        plain = any(c.get_content_type() == "text/plain" for c in children)
        if plain and any(html_alternative(c) for c in children):
            return True
    return False


def related(s: Sample) -> bool:
    """Whether a multipart/related's HTML refers to its image by cid."""
    for part in multipart_of(s, "related"):
        children = part.get_payload()
        assert isinstance(children, list)
        html = [c for c in children if c.get_content_type() == "text/html"]
        cids = [
            str(c.get("Content-ID", "")).strip("<> ")
            for c in children
            if c.get_content_maintype() == "image"
        ]
        text = b"".join(c.get_payload(decode=True) or b"" for c in html)
        if any(cid and b"cid:" + cid.encode() in text for cid in cids):
            return True
    return False


def report(s: Sample) -> bool:
    """Whether a delivery-status report is present."""
    return any(
        str(p.get_param("report-type", "")).lower() == "delivery-status"
        and "message/delivery-status" in children_types(p)
        for p in multipart_of(s, "report")
    )


def signed(s: Sample) -> bool:
    """Whether a multipart/signed has its two parts."""
    for part in multipart_of(s, "signed"):
        protocol = str(part.get_param("protocol", "")).lower()
        types = children_types(part)
        if protocol and len(types) == 2 and types[1] == protocol:
            return True
    return False


def digest(s: Sample) -> bool:
    """Whether a multipart/digest holds messages."""
    return any(
        len(children_types(p)) >= 2 and set(children_types(p)) == {"message/rfc822"}
        for p in multipart_of(s, "digest")
    )


def preamble_epilogue(s: Sample) -> bool:
    """Whether the root multipart has a preamble and epilogue."""
    root = s.message
    return bool(
        root.is_multipart()
        and (root.preamble or "").strip()
        and (root.epilogue or "").strip()
    )


def text_parts(s: Sample, charset: str, cte: str) -> Iterator[bytes]:
    """The raw payloads of text parts with this charset and encoding."""
    for part in s.parts:
        if part.get_content_maintype() != "text" or part.is_multipart():
            continue
        if part.get_content_charset() == charset and s.cte(part) == cte:
            yield s.raw_payload(part)


def latin1(s: Sample) -> bool:
    """Whether an 8bit ISO-8859-1 part holds non-UTF-8 octets."""
    return any(
        not body.isascii() and not is_utf8(body)
        for body in text_parts(s, "iso-8859-1", "8bit")
    )


def cp1252(s: Sample) -> bool:
    """Whether an 8bit Windows-1252 part uses 0x80-0x9F."""
    for body in text_parts(s, "windows-1252", "8bit"):
        try:
            body.decode("cp1252")
        except UnicodeDecodeError:
            continue
        if re.search(rb"[\x80-\x9f]", body):
            return True
    return False


def quoted_printable(s: Sample) -> bool:
    """Whether a QP part has soft breaks and =2E line starts."""
    for part in s.parts:
        if part.is_multipart() or s.cte(part) != "quoted-printable":
            continue
        raw = LINE_END.split(s.raw_payload(part))
        decoded = LINE_END.split(part.get_payload(decode=True) or b"")
        if (
            any(line.endswith(b"=") for line in raw)
            and any(line.startswith(b"=2E") for line in raw)
            and all(len(line) <= 76 for line in raw)
            and any(line.startswith(b".") for line in decoded)
        ):
            return True
    return False


def rfc822(s: Sample) -> bool:
    """Whether a message/rfc822 part holds a message."""
    for part in s.parts:
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            assert isinstance(inner, list)
            if inner and inner[0]["From"] and inner[0]["Subject"]:
                return True
    return False


def calendar(s: Sample) -> bool:
    """Whether a text/calendar part is a REQUEST with an event."""
    for part in s.parts:
        if part.get_content_type() != "text/calendar":
            continue
        text = s.raw_payload(part)
        if (
            str(part.get_param("method", "")).upper() == "REQUEST"
            and text.startswith(b"BEGIN:VCALENDAR")
            and b"\nMETHOD:REQUEST" in text
            and b"\nBEGIN:VEVENT" in text
            and text.rstrip().endswith(b"END:VCALENDAR")
        ):
            return True
    return False


def flowed(s: Sample) -> bool:
    """Whether a format=flowed part has soft line breaks."""
    for part in s.parts:
        if part.get_content_type() != "text/plain":
            continue
        if str(part.get_param("format", "")).lower() != "flowed":
            continue
        lines = LINE_END.split(s.raw_payload(part))
        if any(line.endswith(b" ") and line != b"-- " for line in lines):
            return True
    return False


def rfc2047(s: Sample) -> bool:
    """Whether B and Q encoded-words decode to non-ASCII."""
    kinds: set[str] = set()
    decoded_non_ascii = False
    for name, _ in s.fields:
        for value in s.values(name):
            kinds |= {kind.upper() for kind in ENCODED_WORD.findall(value)}
            for chunk, charset in email.header.decode_header(value):
                if charset and isinstance(chunk, bytes):
                    decoded_non_ascii |= not chunk.decode(charset).isascii()
    return decoded_non_ascii and kinds == {"B", "Q"}


def groups(s: Sample) -> list[str]:
    """The inside of every address group in To, Cc and Bcc."""
    found = []
    for value in s.values("To") + s.values("Cc") + s.values("Bcc"):
        text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', value)
        text = re.sub(r"\([^)]*\)", "", text)
        text = re.sub(r"<[^>]*>", "<@>", text)
        found += re.findall(r"[^,:;<>]+:([^;]*);", text)
    return found


def address_values(s: Sample) -> list[str]:
    """The values of From, To, Cc and Bcc."""
    return [v for n in ("From", "To", "Cc", "Bcc") for v in s.values(n)]


def body_blank_run(s: Sample) -> bool:
    """Whether the body has ten empty lines in a row."""
    run = 0
    for line in s.body_lines:
        run = run + 1 if line == b"" else 0
        if run >= 10:
            return True
    return False


def return_path(s: Sample) -> bool:
    """Whether a Return-Path holds an address."""
    return any(value.strip() not in ("", "<>") for value in s.values("Return-Path"))


CHECKERS: dict[str, Callable[[Sample], bool]] = {
    "crlf-only": lambda s: (
        b"\r\n" in s.data and not BARE_LF.search(s.data) and not BARE_CR.search(s.data)
    ),
    "bare-lf": lambda s: BARE_LF.search(s.data) is not None,
    "bare-cr": lambda s: BARE_CR.search(s.data) is not None,
    "lf-line-ends": lambda s: b"\n" in s.data and b"\r" not in s.data,
    "cr-line-ends": lambda s: b"\r" in s.data and b"\n" not in s.data,
    "mixed-line-ends": lambda s: (
        b"\r\n" in s.data
        and BARE_LF.search(s.data) is not None
        and BARE_CR.search(s.data) is not None
        and lf_cr(s.data)
    ),
    "no-final-newline": lambda s: bool(s.data) and s.data[-1:] not in (b"\r", b"\n"),
    "ascii-7bit": lambda s: s.data.isascii(),
    "utf8": lambda s: not s.data.isascii() and is_utf8(s.data),
    "8bit-non-utf8": lambda s: not s.data.isascii() and not is_utf8(s.data),
    "line-998": lambda s: any_line(s.lines, lambda line: len(line) == 998),
    "line-over-998": lambda s: any_line(s.lines, lambda line: len(line) > 998),
    "line-100kib": lambda s: any_line(s.lines, lambda line: len(line) >= 102400),
    "size-2mib": lambda s: len(s.data) >= 2 * 1024 * 1024,
    "lone-dot": lambda s: b"." in s.lines,
    "no-header-separator": lambda s: s.body is None,
    "empty-body": lambda s: s.body == b"",
    "cc": lambda s: bool(s.addresses("Cc")),
    "bcc": lambda s: bool(s.addresses("Bcc")),
    "return-path": return_path,
    "null-return-path": lambda s: (
        [v.strip() for v in s.values("Return-Path")] == ["<>"]
    ),
    "sender": lambda s: bool(s.values("Sender")),
    "multi-from": lambda s: len(s.addresses("From")) > 1,
    "many-recipients": lambda s: len(s.addresses("To", "Cc", "Bcc")) >= 5,
    "dot-leading": lambda s: (
        {b"..", b"..."} <= set(s.lines)
        and any_line(s.lines, lambda line: line.startswith(b". "))
        and any_line(s.lines, lambda line: re.match(rb"\.[A-Za-z]", line) is not None)
    ),
    "dot-line-998": lambda s: any_line(
        s.lines, lambda line: len(line) == 998 and line.startswith(b".")
    ),
    "final-lone-dot": lambda s: re.search(rb"[\r\n]\.\Z", s.data) is not None,
    "ends-with-dot-line": lambda s: (
        re.search(rb"[\r\n]\.(\r\n|\r|\n)\Z", s.data) is not None
    ),
    "body-only-dot": lambda s: s.body == b".",
    "body-only-crlf": lambda s: s.body == b"\r\n",
    "smuggling-crlf-dot-crlf": lambda s: in_middle(s.data, b"\r\n.\r\n"),
    "smuggling-lf-dot-lf": lambda s: in_middle(s.data, b"\n.\n", before=b"\r"),
    "smuggling-cr-dot-cr": lambda s: in_middle(s.data, b"\r.\r", after=b"\n"),
    "smuggling-lf-dot-crlf": lambda s: in_middle(s.data, b"\n.\r\n", before=b"\r"),
    "smuggling-crlf-dot-lf": lambda s: in_middle(s.data, b"\r\n.\n"),
    "short-lines-1000": lambda s: (
        len(s.body_lines) >= 1000 and all(len(line) <= 4 for line in s.body_lines)
    ),
    "blank-line-run": body_blank_run,
    "whitespace-only-line": lambda s: any_line(
        s.lines, lambda line: bool(line) and not line.strip(b" \t")
    ),
    "trailing-whitespace": lambda s: (
        any_line(s.lines, lambda line: bool(line.strip()) and line.endswith(b" "))
        and any_line(s.lines, lambda line: bool(line.strip()) and line.endswith(b"\t"))
    ),
    "from-space-line": lambda s: any_line(
        s.body_lines, lambda line: line.startswith(b"From ")
    ),
    "header-folded-long": lambda s: any(len(lines) >= 10 for _, lines in s.fields),
    "header-line-over-998": lambda s: any(
        len(line) > 998 for _, lines in s.fields for line in lines
    ),
    "rfc2047-header": rfc2047,
    "utf8-raw-header": lambda s: not s.head.isascii() and is_utf8(s.head),
    "8bit-header-non-utf8": lambda s: not s.head.isascii() and not is_utf8(s.head),
    "charset-iso-8859-1": latin1,
    "charset-windows-1252": cp1252,
    "multipart": lambda s: s.message.is_multipart(),
    "multipart-alternative": alternative,
    "multipart-mixed": lambda s: bool(multipart_of(s, "mixed")),
    "multipart-related": related,
    "nested-multipart": lambda s: any(
        p.get_content_maintype() == "multipart" for p in s.parts[1:]
    ),
    "multipart-report": report,
    "multipart-signed": signed,
    "multipart-digest": digest,
    "preamble-epilogue": preamble_epilogue,
    "base64-attachment": lambda s: any(b64_strict(s, p) for p in base64_parts(s)),
    "base64-lines-76": base64_lines_76,
    "base64-body": lambda s: (
        not s.message.is_multipart()
        and s.cte(s.message) == "base64"
        and bool(b64_strict(s, s.message))
        and is_utf8(b64_strict(s, s.message) or b"")
    ),
    "png-attachment": lambda s: any(
        valid_png(blob) for blob in decoded_of_type(s, "image/png")
    ),
    "pdf-attachment": lambda s: any(
        valid_pdf(blob) for blob in decoded_of_type(s, "application/pdf")
    ),
    "zip-attachment": lambda s: any(
        valid_zip(blob) for blob in decoded_of_type(s, "application/zip")
    ),
    "inline-image": lambda s: any(
        p.get_content_maintype() == "image"
        and p.get("Content-ID")
        and str(p.get("Content-Disposition", "")).lower().startswith("inline")
        for p in s.parts
    ),
    "html": lambda s: any(p.get_content_type() == "text/html" for p in s.parts),
    "quoted-printable": quoted_printable,
    "message-rfc822": rfc822,
    "calendar": calendar,
    "format-flowed": flowed,
    "all-octets": lambda s: set(range(1, 256)) <= set(s.data),
    "group-syntax": lambda s: any("@" in inner for inner in groups(s)),
    "empty-group": lambda s: any(not inner.strip() for inner in groups(s)),
    "quoted-display-name": lambda s: any(
        re.search(r'"[^"]*,[^"]*"\s*<[^>]+@', v) for v in address_values(s)
    ),
    "address-comment": lambda s: any(
        re.search(r"@[^\s,;<>()]+>?\s*\([^)]+\)", v) for v in address_values(s)
    ),
}

FILES = [entry["file"] for entry in MANIFEST]
CLAIMS = [(entry["file"], tag) for entry in MANIFEST for tag in entry["covers"]]


def stem(name: str) -> str:
    """The file name without folder or suffix."""
    return Path(name).stem


# --- the manifest -------------------------------------------------------------


def test_corpus_has_at_least_40_messages() -> None:
    assert len(FILES) >= 40
    assert len(set(FILES)) == len(FILES)


def test_manifest_entries_have_the_documented_keys() -> None:
    keys = {"file", "message_id", "covers", "size", "sha256", "envelope"}
    for entry in MANIFEST:
        assert set(entry) == keys, entry["file"]
        assert set(entry["envelope"]) == {"from", "to"}, entry["file"]
        assert entry["file"].startswith("messages/")
        assert entry["file"].endswith(".eml")
        assert entry["covers"] == sorted(set(entry["covers"])), entry["file"]


def test_messages_folder_holds_only_listed_files() -> None:
    on_disk = {f"messages/{path.name}" for path in MESSAGES.iterdir()}
    assert on_disk == set(FILES)
    top = {path.name for path in DATA.iterdir()} - {"__pycache__"}
    assert top <= {
        "generate.py",
        "manifest.json",
        "README.md",
        "messages",
        ".gitattributes",
    }


def test_every_tag_is_known_and_covered() -> None:
    claimed = {tag for _, tag in CLAIMS}
    assert claimed <= CHECKERS.keys(), claimed - CHECKERS.keys()
    assert CHECKERS.keys() <= claimed, CHECKERS.keys() - claimed


def test_total_size_stays_under_6_mib() -> None:
    total = sum(path.stat().st_size for path in DATA.rglob("*") if path.is_file())
    assert total < 6 * 1024 * 1024


@pytest.mark.parametrize("name", FILES, ids=stem)
def test_size_and_sha256_match(name: str) -> None:
    entry = MANIFEST[FILES.index(name)]
    data = sample(name).data
    assert len(data) == entry["size"]
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]


@pytest.mark.parametrize("name", FILES, ids=stem)
def test_no_nul_octet(name: str) -> None:
    assert b"\0" not in sample(name).data


# --- headers ------------------------------------------------------------------


@pytest.mark.parametrize("name", FILES, ids=stem)
def test_header_section_is_rfc5322_shaped(name: str) -> None:
    s = sample(name)
    assert s.fields, "no header fields"
    assert s.data[:1] not in (b" ", b"\t"), "starts with a continuation line"
    for field_name in ("message-id", "date", "from", "to", "subject"):
        assert len(s.values(field_name)) == 1, field_name
    assert email.utils.parsedate_to_datetime(s.values("Date")[0]).tzinfo is not None


def test_message_ids_are_unique_and_match_the_file() -> None:
    seen = set()
    for entry in MANIFEST:
        s = sample(entry["file"])
        expected = f"<{stem(entry['file'])}@{ID_DOMAIN}>"
        assert entry["message_id"] == expected
        assert s.values("Message-ID") == [expected]
        seen.add(expected)
    assert len(seen) == len(MANIFEST)


@pytest.mark.parametrize("name", FILES, ids=stem)
def test_envelope_follows_the_headers(name: str) -> None:
    s = sample(name)
    envelope = MANIFEST[FILES.index(name)]["envelope"]
    if s.values("Return-Path"):
        (value,) = s.values("Return-Path")
        sender = "" if value.strip() == "<>" else s.addresses("Return-Path")[0]
    elif s.values("Sender"):
        (sender,) = s.addresses("Sender")
    else:
        (sender,) = s.addresses("From")
    recipients = list(dict.fromkeys(s.addresses("To", "Cc", "Bcc")))
    assert envelope == {"from": sender, "to": recipients}
    assert recipients, "no recipient"


# --- claimed properties ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "tag"), CLAIMS, ids=[f"{stem(n)}:{t}" for n, t in CLAIMS]
)
def test_claimed_tag_holds(name: str, tag: str) -> None:
    assert CHECKERS[tag](sample(name))


@pytest.mark.parametrize("name", FILES, ids=stem)
def test_every_property_that_holds_is_claimed(name: str) -> None:
    covers = set(MANIFEST[FILES.index(name)]["covers"])
    holds = {tag for tag, check in CHECKERS.items() if check(sample(name))}
    assert holds - covers == set()


# --- reproduction ---------------------------------------------------------------


def test_generator_reproduces_the_committed_bytes(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(DATA / "generate.py"), "--out", str(tmp_path)],
        check=True,
        timeout=300,
    )
    fresh = {path.name for path in (tmp_path / "messages").iterdir()}
    assert fresh == {Path(name).name for name in FILES}
    for name in FILES:
        assert (tmp_path / name).read_bytes() == sample(name).data, name
    for name in ("manifest.json", "README.md"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name
