#!/usr/bin/env python3
"""Writes the smtpstate test corpus: ``messages/*.eml`` and ``manifest.json``.

The tests send every message through the engine to real servers and compare
what the servers kept with the canonical form (DESIGN 9, ``tests/canonical.py``),
so the corpus covers what real mail and hostile mail look like on the way in:
odd line ends, dot lines, long lines, 8-bit text, MIME structures, attachments,
the SMTP smuggling patterns and headers that decide the envelope.

Everything is generated here from fixed seeds with the standard library alone
(SHA-256 in counter mode as the random source, hand-built PNG, PDF and ZIP
blobs with no compression), so two runs, on any Python 3.10+, write identical
bytes.  The committed output is what the tests read; ``tests/test_corpus.py``
checks that this script still reproduces it.

Usage: ``python3 tests/data/generate.py [--out DIR]`` (default: this folder).
The script writes ``DIR/messages/*.eml``, ``DIR/manifest.json`` and
``DIR/README.md``, and removes ``*.eml`` files in ``DIR/messages`` that are no
longer part of the corpus.

Each manifest entry holds ``file``, ``message_id``, ``covers`` (tags from
`VOCABULARY`), ``size``, ``sha256`` and ``envelope`` (``from`` and ``to`` as
``sendmail -t`` would take them: recipients from To, Cc and Bcc in that order;
the sender from Return-Path, else Sender, else the single From address).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import struct
import sys
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import TypedDict

CRLF = b"\r\n"
DOMAIN = "corpus.smtpstate.test"
RCPT_DOMAIN = "inbox.smtpstate.test"
LARGE_BLOB_OCTETS = 1_600_000
MAX_LINES = 200_000  # bound for every loop that walks lines of a message

Lines = list[bytes]
HeaderValue = str | bytes
Fields = tuple[tuple[str, HeaderValue], ...]


# The SMTP envelope of a corpus file; "from" is empty for a null sender (<>).
Envelope = TypedDict("Envelope", {"from": str, "to": list[str]})


class Entry(TypedDict):
    """One manifest entry."""

    file: str
    message_id: str
    covers: list[str]
    size: int
    sha256: str
    envelope: Envelope


# Every tag a manifest entry may carry, with what it promises about the bytes.
# A file carries a tag if and only if the property holds, so tests may select
# files by tag either way.  Byte patterns and header facts are computed here;
# the MIME and text properties are declared by each builder.
VOCABULARY: dict[str, str] = {
    "crlf-only": "has CRLF; every CR is followed by LF and every LF follows a CR",
    "bare-lf": "some LF is not preceded by CR",
    "bare-cr": "some CR is not followed by LF",
    "lf-line-ends": "has LF and no CR at all",
    "cr-line-ends": "has CR and no LF at all",
    "mixed-line-ends": "has CRLF, bare LF, bare CR, and a bare LF then a bare CR",
    "no-final-newline": "not empty and ends in neither CR nor LF",
    "ascii-7bit": "every octet is below 0x80",
    "utf8": "decodes as UTF-8 and has octets of 0x80 or more",
    "8bit-non-utf8": "has octets of 0x80 or more and is not UTF-8",
    "line-998": "some line is exactly 998 octets between line ends",
    "line-over-998": "some line is longer than 998 octets",
    "line-100kib": "some line is at least 102,400 octets",
    "size-2mib": "the file is at least 2 MiB",
    "lone-dot": "some line is exactly '.'",
    "no-header-separator": "no empty line: headers only",
    "empty-body": "headers, an empty line, nothing after it",
    "cc": "has a Cc header",
    "bcc": "has a Bcc header",
    "return-path": "has a Return-Path header with an address",
    "null-return-path": "has the header Return-Path: <>",
    "sender": "has a Sender header",
    "multi-from": "the From header holds more than one address",
    "many-recipients": "To, Cc and Bcc hold five addresses or more",
    "dot-leading": "lines '..', '...', one starting '. ' and one starting '.' "
    "and a letter",
    "dot-line-998": "a line of exactly 998 octets that starts with '.'",
    "final-lone-dot": "the last line is '.' with no line end after it",
    "ends-with-dot-line": "the file ends with a line end, '.', a line end",
    "body-only-dot": "the body is exactly '.'",
    "body-only-crlf": "the body is exactly CRLF",
    "smuggling-crlf-dot-crlf": "CR LF . CR LF with more bytes after it",
    "smuggling-lf-dot-lf": "bare LF . bare LF with more bytes after it",
    "smuggling-cr-dot-cr": "bare CR . bare CR with more bytes after it",
    "smuggling-lf-dot-crlf": "bare LF . CR LF with more bytes after it",
    "smuggling-crlf-dot-lf": "CR LF . bare LF with more bytes after it",
    "short-lines-1000": "at least 1,000 body lines, none longer than 4 octets",
    "blank-line-run": "ten or more empty lines in a row in the body",
    "whitespace-only-line": "a non-empty line made only of spaces and tabs",
    "trailing-whitespace": "lines with text then trailing spaces, and then "
    "trailing tabs",
    "from-space-line": "a body line that starts with 'From '",
    "header-folded-long": "a header field folded over ten physical lines or more",
    "header-line-over-998": "a physical header line longer than 998 octets",
    "rfc2047-header": "a header with RFC 2047 encoded-words, B and Q, that "
    "decode to non-ASCII",
    "utf8-raw-header": "the header section has raw UTF-8 (SMTPUTF8 style)",
    "8bit-header-non-utf8": "the header section has 8-bit octets that are not UTF-8",
    "charset-iso-8859-1": "an 8bit text part in ISO-8859-1 that is not UTF-8",
    "charset-windows-1252": "an 8bit text part in Windows-1252 with octets 0x80-0x9F",
    "multipart": "parses as multipart",
    "multipart-alternative": "a multipart/alternative with text/plain and HTML "
    "(text/html, or a multipart/related that starts with it)",
    "multipart-mixed": "a multipart/mixed part",
    "multipart-related": "a multipart/related with HTML and a cid: image",
    "nested-multipart": "a multipart entity inside a multipart",
    "multipart-report": "a multipart/report with message/delivery-status",
    "multipart-signed": "a multipart/signed with a signature part",
    "multipart-digest": "a multipart/digest of message/rfc822 parts",
    "preamble-epilogue": "a multipart with text before the first boundary "
    "and after the last",
    "base64-attachment": "a base64 part whose payload decodes",
    "base64-lines-76": "base64 parts in lines of 76, the last line shorter",
    "base64-body": "a single-part message whose body is base64 text",
    "png-attachment": "a base64 image/png that is a valid PNG",
    "pdf-attachment": "a base64 application/pdf with a valid xref offset",
    "zip-attachment": "a base64 application/zip that the zipfile module tests clean",
    "inline-image": "an image part with Content-ID and an inline disposition",
    "html": "a text/html part",
    "quoted-printable": "a quoted-printable part with soft line breaks and =2E "
    "at line starts",
    "message-rfc822": "a message/rfc822 part (a forwarded message)",
    "calendar": "a text/calendar invitation (METHOD:REQUEST)",
    "format-flowed": "text/plain; format=flowed with soft line breaks",
    "all-octets": "every octet value from 0x01 to 0xFF appears",
    "group-syntax": "an address group with members",
    "empty-group": "an empty address group (undisclosed-recipients:;)",
    "quoted-display-name": "a quoted display name that holds a comma",
    "address-comment": "an address followed by a comment in parentheses",
}

WORDS = (
    "relay queue envelope header body line dot stuffing carrier parcel river "
    "window lantern garden ladder pocket marble copper signal harbor meadow "
    "orbit pepper violet timber candle anchor beacon ribbon summit canyon "
    "puzzle engine socket buffer cursor packet ledger folder crayon kettle "
    "falcon otter walnut maple cedar quartz amber cobalt indigo silver "
    "tunnel bridge castle market island valley thunder breeze morning "
    "evening the a of to and in for on with from by under over near about"
).split()

# --- deterministic randomness ---------------------------------------------


class Prng:
    """A byte stream from SHA-256 in counter mode, stable across versions."""

    def __init__(self, seed: str) -> None:
        """Starts the stream for `seed`."""
        self._key = hashlib.sha256(seed.encode("ascii")).digest()
        self._counter = 0
        self._pending = b""

    def take(self, count: int) -> bytes:
        """Returns the next `count` octets of the stream."""
        blocks = [self._pending]
        have = len(self._pending)
        for _ in range((count - have + 31) // 32 + 1):
            if have >= count:
                break
            block = hashlib.sha256(
                self._key + self._counter.to_bytes(8, "big")
            ).digest()
            self._counter += 1
            blocks.append(block)
            have += len(block)
        joined = b"".join(blocks)
        self._pending = joined[count:]
        return joined[:count]

    def below(self, bound: int) -> int:
        """Returns a number in [0, bound); the tiny modulo bias is harmless."""
        return int.from_bytes(self.take(8), "big") % bound

    def word(self) -> str:
        """Returns one word of the corpus word list."""
        return WORDS[self.below(len(WORDS))]

    def sentence(self) -> str:
        """Returns a capitalised sentence of 5 to 14 words."""
        words = [self.word() for _ in range(5 + self.below(10))]
        return " ".join(words).capitalize() + "."


def paragraph(prng: Prng, sentences: int, width: int = 72) -> list[str]:
    """Returns a paragraph of generated sentences wrapped at `width`."""
    text = " ".join(prng.sentence() for _ in range(sentences))
    return wrap(text, width)


def wrap(text: str, width: int) -> list[str]:
    """Wraps `text` on spaces so no line is longer than `width` (or one word)."""
    lines: list[str] = []
    current = ""
    for word in text.split(" ")[:MAX_LINES]:
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines


def prose(prng: Prng, paragraphs: int, width: int = 72) -> Lines:
    """Returns paragraphs of ASCII text separated by empty lines."""
    lines: Lines = []
    for index in range(paragraphs):
        if index:
            lines.append(b"")
        lines += [line.encode("ascii") for line in paragraph(prng, 3, width)]
    return lines


def filler(prng: Prng, octets: int) -> bytes:
    """Returns ASCII words joined by spaces, exactly `octets` long."""
    words: list[str] = []
    have = 0
    for _ in range(octets):
        if have >= octets:
            break
        word = prng.word()
        words.append(word)
        have += len(word) + 1
    return " ".join(words).encode("ascii")[:octets].ljust(octets, b"x")


# --- addresses and headers --------------------------------------------------


@dataclass(frozen=True)
class Mailbox:
    """An address as written in a header: display name, address, comment."""

    addr: str
    display: HeaderValue = ""
    comment: str = ""

    def render(self) -> bytes:
        """Returns the mailbox as header bytes."""
        text = self.addr.encode("ascii")
        if self.display:
            name = self.display
            if isinstance(name, str):
                name = name.encode("utf-8")
            text = name + b" <" + text + b">"
        if self.comment:
            text += b" (" + self.comment.encode("ascii") + b")"
        return text


@dataclass(frozen=True)
class Group:
    """An RFC 5322 address group; it may be empty."""

    name: str
    members: tuple[Mailbox, ...] = ()

    def render(self) -> bytes:
        """Returns the group as header bytes."""
        inner = b", ".join(member.render() for member in self.members)
        return self.name.encode("ascii") + b": " + inner + b";"

    @property
    def addrs(self) -> list[str]:
        """The member addresses."""
        return [member.addr for member in self.members]


Address = Mailbox | Group


def addrs_of(items: Iterable[Address]) -> list[str]:
    """Returns the addresses of mailboxes and group members, in order."""
    found: list[str] = []
    for item in items:
        found += item.addrs if isinstance(item, Group) else [item.addr]
    return found


def fold_items(items: Sequence[bytes], start: int, width: int = 78) -> bytes:
    """Joins items with ", " and folds (a newline then a space) past `width`.

    A newline in a header value stands for a fold; `field` turns it into the
    message's line end.
    """
    out = b""
    column = start
    for index, item in enumerate(items):
        piece = item + (b"," if index < len(items) - 1 else b"")
        if index and column + 1 + len(piece) > width:
            out += b"\n " + piece
            column = 1 + len(piece)
        else:
            out += (b" " if index else b"") + piece
            column += (1 if index else 0) + len(piece)
    return out


def field(name: str, value: HeaderValue) -> Lines:
    """Returns the physical lines of one header field; a newline folds."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    parts = raw.split(b"\n")
    return [name.encode("ascii") + b": " + parts[0], *parts[1:]]


def message_date(stem: str) -> str:
    """Returns an RFC 5322 date fixed by the file stem."""
    digest = hashlib.sha256(stem.encode("ascii")).digest()
    minutes = int.from_bytes(digest[:4], "big") % (365 * 24 * 60)
    offsets = (0, 60, -300, 330, -480, 120)
    zone = timezone(timedelta(minutes=offsets[digest[4] % len(offsets)]))
    base = datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=minutes)
    return format_datetime(base.astimezone(zone))


def mid(stem: str) -> str:
    """Returns the Message-ID of the file with this stem."""
    return f"<{stem}@{DOMAIN}>"


ADA = Mailbox(f"ada.outbound@{DOMAIN}", "Ada Outbound")
BRAM = Mailbox(f"bram.inbox@{RCPT_DOMAIN}", "Bram Inbox")
CLEO = Mailbox(f"cleo.copy@{RCPT_DOMAIN}", "Cleo Copy")
DARA = Mailbox(f"dara.blind@{RCPT_DOMAIN}", "Dara Blind")
ELI = Mailbox(f"eli.relay@{RCPT_DOMAIN}")
FAY = Mailbox(f"fay.forward@{RCPT_DOMAIN}", "Fay Forward")
GUS = Mailbox(f"gus.gateway@{RCPT_DOMAIN}", '"Gateway, Gus"')
HAL = Mailbox(f"hal.helpdesk@{RCPT_DOMAIN}", comment="Help desk")
BOUNCES = f"bounces+corpus-0042@{DOMAIN}"


@dataclass(frozen=True)
class Head:
    """The header section of a corpus message and the envelope it implies."""

    stem: str
    subject: HeaderValue
    from_: tuple[Mailbox, ...] = (ADA,)
    to: tuple[Address, ...] = (BRAM,)
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    return_path: str | None = None
    sender: Mailbox | None = None
    trace: Fields = ()
    extra: Fields = ()

    def lines(self) -> Lines:
        """Returns the physical header lines, without line ends."""
        out: Lines = []
        if self.return_path is not None:
            out += field("Return-Path", f"<{self.return_path}>")
        for name, value in self.trace:
            out += field(name, value)
        out += field("Message-ID", mid(self.stem))
        out += field("Date", message_date(self.stem))
        out += self._addresses("From", self.from_)
        if self.sender is not None:
            out += field("Sender", self.sender.render())
        out += self._addresses("To", self.to)
        if self.cc:
            out += self._addresses("Cc", self.cc)
        if self.bcc:
            out += self._addresses("Bcc", self.bcc)
        out += field("Subject", self.subject)
        for name, value in self.extra:
            out += field(name, value)
        return out

    @staticmethod
    def _addresses(name: str, items: Sequence[Address]) -> Lines:
        """Returns the folded lines of one address field."""
        rendered = [item.render() for item in items]
        return field(name, fold_items(rendered, len(name) + 2))

    def envelope(self) -> Envelope:
        """Returns the envelope ``sendmail -t`` takes from these headers."""
        if self.return_path is not None:
            sender = self.return_path
        elif self.sender is not None:
            sender = self.sender.addr
        else:
            assert len(self.from_) == 1, self.stem
            sender = self.from_[0].addr
        recipients = addrs_of(self.to) + addrs_of(self.cc) + addrs_of(self.bcc)
        assert len(set(recipients)) == len(recipients), self.stem
        return {"from": sender, "to": recipients}

    def tags(self) -> set[str]:
        """Returns the tags that follow from the header fields."""
        tags: set[str] = set()
        if self.cc:
            tags.add("cc")
        if self.bcc:
            tags.add("bcc")
        if self.return_path:
            tags.add("return-path")
        elif self.return_path == "":
            tags.add("null-return-path")
        if self.sender is not None:
            tags.add("sender")
        if len(self.from_) > 1:
            tags.add("multi-from")
        if len(addrs_of(self.to + self.cc + self.bcc)) >= 5:
            tags.add("many-recipients")
        return tags


def text_plain(charset: str = "us-ascii", cte: str = "7bit") -> Fields:
    """Returns MIME header fields for a single-part text/plain message."""
    return (
        ("MIME-Version", "1.0"),
        ("Content-Type", f"text/plain; charset={charset}"),
        ("Content-Transfer-Encoding", cte),
    )


# --- bodies and MIME ----------------------------------------------------------


def join(lines: Iterable[bytes], eol: bytes = CRLF) -> bytes:
    """Returns the lines, each ended by `eol`."""
    return b"".join(line + eol for line in lines)


def assemble(head: Head, body: bytes, eol: bytes = CRLF) -> bytes:
    """Returns headers, an empty line and the body."""
    return join(head.lines(), eol) + eol + body


def part(headers: Sequence[tuple[str, HeaderValue]], body: Lines) -> Lines:
    """Returns a MIME entity: its header lines, an empty line, its body."""
    out: Lines = []
    for name, value in headers:
        out += field(name, value)
    return [*out, b"", *body]


def multipart(
    boundary: str,
    parts: Sequence[Lines],
    preamble: Lines | None = None,
    epilogue: Lines | None = None,
) -> Lines:
    """Returns the body lines of a multipart entity."""
    delimiter = b"--" + boundary.encode("ascii")
    out: Lines = list(preamble or [])
    for entity in parts:
        out.append(delimiter)
        out += entity
    out.append(delimiter + b"--")
    out += epilogue or []
    return out


def b64_lines(data: bytes, width: int = 76) -> Lines:
    """Returns `data` in base64, in lines of `width` characters."""
    text = base64.b64encode(data)
    return [text[start : start + width] for start in range(0, len(text), width)]


def attachment(ctype: str, name: str, data: bytes, inline_cid: str = "") -> Lines:
    """Returns a base64 MIME part holding `data`."""
    headers: list[tuple[str, HeaderValue]] = [
        ("Content-Type", f'{ctype}; name="{name}"'),
        ("Content-Transfer-Encoding", "base64"),
    ]
    if inline_cid:
        headers.append(("Content-ID", f"<{inline_cid}>"))
        headers.append(("Content-Disposition", f'inline; filename="{name}"'))
    else:
        headers.append(("Content-Disposition", f'attachment; filename="{name}"'))
    return part(headers, b64_lines(data))


def text_part(
    lines: Lines, ctype: str = "text/plain", charset: str = "utf-8", cte: str = "7bit"
) -> Lines:
    """Returns a text MIME part."""
    return part(
        [
            ("Content-Type", f"{ctype}; charset={charset}"),
            ("Content-Transfer-Encoding", cte),
        ],
        lines,
    )


def html_page(prng: Prng, title: str, extra: str = "") -> Lines:
    """Returns a short HTML document of generated text."""
    out = [
        "<!DOCTYPE html>",
        "<html>",
        f"<head><title>{title}</title></head>",
        "<body>",
        f"<h1>{title}</h1>",
    ]
    for _ in range(3):
        out.append("<p>" + " ".join(paragraph(prng, 2)) + "</p>")
    if extra:
        out.append(extra)
    out += ["</body>", "</html>"]
    return [line.encode("ascii") for line in out]


def qp_encode(text: bytes, width: int = 76) -> Lines:
    """Quoted-printable with soft breaks; '.' and 'From ' at line starts escaped.

    Each input line is encoded on its own; '=2E' replaces a '.' that would
    start an output line, and '=46' the F of a 'From ' there, so the encoded
    text never relies on dot-stuffing or mbox quoting.
    """
    out: Lines = []
    for line in text.split(b"\n")[:MAX_LINES]:
        tokens = [qp_token(line, index) for index in range(len(line))]
        current = b""
        for index, token in enumerate(tokens):
            if not current and token == b".":
                token = b"=2E"
            if not current and line[index : index + 5] == b"From ":
                token = b"=46"
            if len(current) + len(token) > width - 1:
                out.append(current + b"=")
                current = b"=2E" if token == b"." else token
            else:
                current += token
        out.append(current)
    return out


def qp_token(line: bytes, index: int) -> bytes:
    """Returns the quoted-printable form of the octet at `index`."""
    octet = line[index]
    last = index == len(line) - 1
    if octet in (0x20, 0x09) and not last:
        return bytes([octet])
    if 33 <= octet <= 126 and octet != 0x3D:
        return bytes([octet])
    return b"=%02X" % octet


def encoded_word_b(text: str, limit: int = 75) -> list[str]:
    """Returns RFC 2047 B encoded-words for `text`, each at most `limit` long."""
    words: list[str] = []
    chunk = ""
    for char in text:
        trial = chunk + char
        size = len(base64.b64encode(trial.encode("utf-8"))) + len("=?UTF-8?B??=")
        if chunk and size > limit:
            words.append(b_word(chunk))
            chunk = char
        else:
            chunk = trial
    if chunk:
        words.append(b_word(chunk))
    return words


def b_word(text: str) -> str:
    """Returns one B encoded-word."""
    return "=?UTF-8?B?" + base64.b64encode(text.encode("utf-8")).decode() + "?="


def q_word(text: str) -> str:
    """Returns one Q encoded-word for a display name."""
    out = []
    for octet in text.encode("utf-8"):
        char = chr(octet)
        if char == " ":
            out.append("_")
        elif char.isascii() and char.isalnum():
            out.append(char)
        else:
            out.append(f"={octet:02X}")
    return "=?UTF-8?Q?" + "".join(out) + "?="


# --- binary blobs -------------------------------------------------------------


def png_image(prng: Prng, width: int, height: int) -> bytes:
    """Returns a valid RGB PNG whose IDAT is a zlib stream of stored blocks."""
    rows = []
    noise = prng.take(width * height)
    for y in range(height):
        row = bytearray([0])
        for x in range(width):
            row += bytes(
                [
                    (x * 255) // max(width - 1, 1),
                    (y * 255) // max(height - 1, 1),
                    noise[y * width + x],
                ]
            )
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"tEXt", b"Comment\x00smtpstate corpus image")
        + png_chunk(b"IDAT", zlib_stored(b"".join(rows)))
        + png_chunk(b"IEND", b"")
    )


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """Returns one PNG chunk with its CRC."""
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def zlib_stored(data: bytes) -> bytes:
    """Returns a zlib stream of uncompressed deflate blocks (fixed bytes)."""
    out = bytearray(b"\x78\x01")
    step = 65535
    starts = range(0, max(len(data), 1), step)
    for start in starts:
        block = data[start : start + step]
        final = 1 if start + step >= len(data) else 0
        out += struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF)
        out += block
    out += struct.pack(">I", zlib.adler32(data) & 0xFFFFFFFF)
    return bytes(out)


def pdf_document(prng: Prng) -> bytes:
    """Returns a one-page PDF with a correct cross-reference table."""
    text = " ".join(prng.word() for _ in range(8))
    stream = f"BT /F1 14 Tf 72 720 Td (smtpstate corpus: {text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return out


def zip_archive(entries: Sequence[tuple[str, bytes]]) -> bytes:
    """Returns a ZIP archive of stored (uncompressed) entries, fixed dates."""
    dos_time = 10 << 11
    dos_date = ((2024 - 1980) << 9) | (3 << 5) | 5
    local = b""
    central = b""
    for name, data in entries:
        raw_name = name.encode("ascii")
        crc = zlib.crc32(data) & 0xFFFFFFFF
        offset = len(local)
        local += (
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                20,
                0,
                0,
                dos_time,
                dos_date,
                crc,
                len(data),
                len(data),
                len(raw_name),
                0,
            )
            + raw_name
            + data
        )
        central += (
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                0,
                dos_time,
                dos_date,
                crc,
                len(data),
                len(data),
                len(raw_name),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + raw_name
        )
    end = struct.pack(
        "<IHHHHIIH",
        0x06054B50,
        0,
        0,
        len(entries),
        len(entries),
        len(central),
        len(local),
        0,
    )
    return local + central + end


# --- the messages ---------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One corpus file: its bytes, its header model and its declared tags."""

    head: Head
    data: bytes
    declared: frozenset[str] = frozenset()

    @property
    def stem(self) -> str:
        """The file name without ``.eml``."""
        return self.head.stem


BUILDERS: list[Callable[[], Sample]] = []


def builder(function: Callable[[], Sample]) -> Callable[[], Sample]:
    """Registers a function that builds one corpus message."""
    BUILDERS.append(function)
    return function


def simple(head: Head, body: Lines, *tags: str, eol: bytes = CRLF) -> Sample:
    """Returns a message of `head` and `body` lines, each ended by `eol`."""
    return Sample(head, assemble(head, join(body, eol), eol), frozenset(tags))


@builder
def plain_ascii() -> Sample:
    """7-bit ASCII text/plain with a signature separator."""
    prng = Prng("plain-ascii")
    head = Head("plain-ascii", "Corpus: plain 7-bit ASCII", extra=text_plain())
    body = prose(prng, 4) + [b"", b"-- ", b"Ada Outbound, corpus desk"]
    return simple(head, body)


@builder
def lone_dot() -> Sample:
    """Lone "." lines, the first body line among them."""
    prng = Prng("lone-dot")
    head = Head("lone-dot", "Corpus: a lone dot line", extra=text_plain())
    body = [b"."] + prose(prng, 1) + [b"."] + prose(prng, 1) + [b".", b"end"]
    return simple(head, body)


@builder
def dot_leading() -> Sample:
    """Lines of one to four dots, ". x", ".hidden" and kin."""
    prng = Prng("dot-leading")
    head = Head("dot-leading", "Corpus: lines that start with dots", extra=text_plain())
    dots = [
        b".",
        b"..",
        b"...",
        b"....",
        b". x",
        b".. y",
        b"... z",
        b".hidden",
        b".\tafter a tab",
        b"a line ending in a dot.",
        b" .",
        b"..",
    ]
    return simple(head, prose(prng, 1) + dots + prose(prng, 1), "dot-leading")


@builder
def line_998() -> Sample:
    """Lines of 997, 998 and 996 octets."""
    prng = Prng("line-998")
    head = Head("line-998", "Corpus: a line of exactly 998 octets", extra=text_plain())
    body = [
        b"Next: 997, 998 and 996 octets.",
        filler(prng, 997),
        filler(prng, 998),
        filler(prng, 996),
        b"done",
    ]
    return simple(head, body)


@builder
def line_998_dot() -> Sample:
    """A 998-octet line starting with "." (999 once stuffed)."""
    prng = Prng("line-998-dot")
    head = Head(
        "line-998-dot",
        "Corpus: a 998-octet line that starts with a dot",
        extra=text_plain(),
    )
    body = [
        b"Dot-stuffing makes the next line 999 octets on the wire.",
        b"." + filler(prng, 997),
        b"." + filler(prng, 996),
        b"done",
    ]
    return simple(head, body, "dot-line-998")


@builder
def line_over_998() -> Sample:
    """Lines of 999 to 10,000 octets, one starting with "."."""
    prng = Prng("line-over-998")
    head = Head(
        "line-over-998", "Corpus: lines longer than 998 octets", extra=text_plain()
    )
    body = [b"Lines of 999, 1000, 1001, 1500 (dot first), 4096 and 10000 octets."]
    body += [filler(prng, size) for size in (999, 1000, 1001)]
    body += [b"." + filler(prng, 1499), filler(prng, 4096), filler(prng, 10000)]
    return simple(head, body + [b"done"])


@builder
def line_100kib() -> Sample:
    """A body of one 102,400-octet line."""
    prng = Prng("line-100kib")
    head = Head("line-100kib", "Corpus: a body of one 100 KiB line", extra=text_plain())
    return simple(head, [filler(prng, 100 * 1024)])


@builder
def bare_lf() -> Sample:
    """Bare LF line ends throughout, headers included."""
    prng = Prng("bare-lf")
    head = Head(
        "bare-lf",
        "Corpus: bare LF line ends throughout",
        cc=(CLEO,),
        extra=text_plain(),
    )
    body = prose(prng, 3) + [b".leading dot", b"", b"end"]
    return simple(head, body, eol=b"\n")


@builder
def bare_cr() -> Sample:
    """Bare CR line ends throughout, headers included."""
    prng = Prng("bare-cr")
    head = Head("bare-cr", "Corpus: bare CR line ends throughout", extra=text_plain())
    body = prose(prng, 3) + [b".leading dot", b"", b"end"]
    return simple(head, body, eol=b"\r")


@builder
def mixed_line_ends() -> Sample:
    """CRLF headers; the body mixes CRLF, LF, CR, LF CR, CR CRLF."""
    prng = Prng("mixed-line-ends")
    head = Head(
        "mixed-line-ends", "Corpus: CRLF, LF, CR and LF CR mixed", extra=text_plain()
    )
    ends = (b"\r\n", b"\n", b"\r", b"\n\r", b"\r\r\n", b"\n\n")
    lines = prose(prng, 3)
    body = b"".join(line + ends[i % len(ends)] for i, line in enumerate(lines))
    body += b"crlf\r\nlf\ncr\rlf-cr\n\rlast\r\n"
    return Sample(head, assemble(head, body))


@builder
def no_final_newline() -> Sample:
    """A text body whose last line has no line end."""
    prng = Prng("no-final-newline")
    head = Head(
        "no-final-newline",
        "Corpus: no line end after the last line",
        extra=text_plain(),
    )
    body = join(prose(prng, 2)) + b"The last line has no line end."
    return Sample(head, assemble(head, body))


@builder
def final_lone_dot() -> Sample:
    """A body whose last line is "." with no line end."""
    prng = Prng("final-lone-dot")
    head = Head(
        "final-lone-dot",
        "Corpus: the last line is a dot, no line end",
        extra=text_plain(),
    )
    body = join(prose(prng, 1)) + b"."
    return Sample(head, assemble(head, body))


@builder
def empty_body() -> Sample:
    """Headers, the empty line, nothing else."""
    head = Head("empty-body", "Corpus: empty body", extra=text_plain())
    return Sample(head, assemble(head, b""))


@builder
def header_only() -> Sample:
    """Headers only, each ended by CRLF, no empty line."""
    head = Head(
        "header-only", "Corpus: headers only, no empty line", extra=text_plain()
    )
    return Sample(head, join(head.lines()))


@builder
def header_only_no_final_newline() -> Sample:
    """Headers only, the last with no line end."""
    head = Head(
        "header-only-no-final-newline",
        "Corpus: headers only, no line end after the last",
        extra=text_plain(),
    )
    return Sample(head, CRLF.join(head.lines()))


@builder
def large_attachment() -> Sample:
    """Over 2 MiB: multipart/mixed with a large base64 blob."""
    prng = Prng("large-attachment")
    boundary = "=_corpus_large_7f3a"
    head = Head(
        "large-attachment",
        "Corpus: a 2 MiB message, base64 attachment",
        cc=(CLEO,),
        extra=(
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/mixed;\n boundary="{boundary}"'),
        ),
    )
    body = multipart(
        boundary,
        [
            text_part(prose(prng, 2), charset="us-ascii"),
            attachment(
                "application/octet-stream",
                "corpus-blob.bin",
                prng.take(LARGE_BLOB_OCTETS),
            ),
        ],
    )
    return simple(
        head,
        body,
        "multipart",
        "multipart-mixed",
        "base64-attachment",
        "base64-lines-76",
    )


LATIN1_TEXT = (
    "Caf\u00e9 cr\u00e8me \u00e0 la fa\u00e7on de Zo\u00eb: na\u00efve "
    "r\u00e9sum\u00e9, \u00fcber Stra\u00dfe, se\u00f1or, \u00bfqu\u00e9?\n"
    "Prix: 12,50 \u00a3 \u00b7 \u00a9 corpus \u00ab guillemets \u00bb, "
    "\u00bd \u00be \u00b0C, \u00c5ngstr\u00f6m \u00d8re.\n"
)

CP1252_TEXT = (
    "\u201cCurly quotes\u201d and \u2018single ones\u2019 \u2013 en dash, "
    "\u2014 em dash\u2026\n"
    "Price: 20 \u20ac \u2022 trade\u2122 \u2020 \u2021 \u0160koda "
    "\u017dilina \u0152uvre \u0178 \u02c6 \u2030 \u0192.\n"
)


@builder
def latin1_8bit() -> Sample:
    """ISO-8859-1 text sent as 8bit."""
    prng = Prng("latin1-8bit")
    head = Head(
        "latin1-8bit",
        "Corpus: ISO-8859-1 body, 8bit",
        extra=text_plain("iso-8859-1", "8bit"),
    )
    text = (LATIN1_TEXT * 3).encode("iso-8859-1").split(b"\n")[:-1]
    return simple(head, text + [b""] + prose(prng, 1), "charset-iso-8859-1")


@builder
def windows_1252_8bit() -> Sample:
    """Windows-1252 text (curly quotes, euro) sent as 8bit."""
    prng = Prng("windows-1252-8bit")
    head = Head(
        "windows-1252-8bit",
        "Corpus: Windows-1252 body, 8bit",
        extra=text_plain("windows-1252", "8bit"),
    )
    text = (CP1252_TEXT + LATIN1_TEXT).encode("cp1252").split(b"\n")[:-1]
    return simple(head, text + [b""] + prose(prng, 1), "charset-windows-1252")


@builder
def latin1_raw_header() -> Sample:
    """Raw ISO-8859-1 octets in From and Subject."""
    prng = Prng("latin1-raw-header")
    zoe = Mailbox(f"zoe.latin@{DOMAIN}", "Zo\u00eb L\u00e4tin".encode("latin-1"))
    head = Head(
        "latin1-raw-header",
        "Corpus: raw ISO-8859-1 in a header (\u00e9t\u00e9)".encode("latin-1"),
        from_=(zoe,),
        extra=text_plain(),
    )
    return simple(head, prose(prng, 2), "8bit-header-non-utf8")


UTF8_TEXT = (
    "Gr\u00fc\u00dfe aus K\u00f6ln, \u00e7a va? \u0393\u03b5\u03b9\u03ac "
    "\u03c3\u03bf\u03c5 \u03ba\u03cc\u03c3\u03bc\u03b5. \u041f\u0440\u0438"
    "\u0432\u0435\u0442.\n"
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8, \ud55c\uad6d\uc5b4, "
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629, \u05e2\u05d1\u05e8\u05d9"
    "\u05ea.\n"
    "Emoji: \U0001f4e8 \U0001f680 \u2709\ufe0f, math: \u2200x \u2208 \u211d, "
    "\u221a2 \u2248 1.414.\n"
)


@builder
def utf8_rfc2047() -> Sample:
    """UTF-8 body; B- and Q-encoded words in the headers."""
    prng = Prng("utf8-rfc2047")
    subject = (
        "Corpus: encoded subject \u2014 Gr\u00fc\u00dfe, "
        "\u0393\u03b5\u03b9\u03ac, \u65e5\u672c\u8a9e \U0001f4e8 "
        "and a tail long enough to need more than one word"
    )
    sender = Mailbox(f"zoe.utf8@{DOMAIN}", q_word("Zo\u00eb \u00dcnal"))
    head = Head(
        "utf8-rfc2047",
        "\n ".join(encoded_word_b(subject)),
        from_=(sender,),
        to=(Mailbox(BRAM.addr, q_word("Br\u00e2m Inb\u00f8x")),),
        extra=text_plain("utf-8", "8bit"),
    )
    text = UTF8_TEXT.encode("utf-8").split(b"\n")[:-1]
    return simple(head, text + [b""] + prose(prng, 1), "rfc2047-header")


@builder
def utf8_raw_header() -> Sample:
    """Raw UTF-8 in Subject and display names (SMTPUTF8 style)."""
    prng = Prng("utf8-raw-header")
    head = Head(
        "utf8-raw-header",
        "Corpus: raw UTF-8 header \u2014 Gr\u00fc\u00dfe \u65e5\u672c \U0001f680",
        from_=(Mailbox(f"zoe.utf8@{DOMAIN}", "Zo\u00eb \u00dcnal"),),
        to=(Mailbox(BRAM.addr, "Br\u00e2m \u0399\u03bd\u03b2\u03bf\u03be"),),
        extra=text_plain("utf-8", "8bit"),
    )
    text = UTF8_TEXT.encode("utf-8").split(b"\n")[:-1]
    return simple(head, text + [b""] + prose(prng, 1), "utf8-raw-header")


@builder
def alternative_text_html() -> Sample:
    """multipart/alternative: text/plain and text/html."""
    prng = Prng("alternative-text-html")
    boundary = "alt-3c1d9e"
    head = Head(
        "alternative-text-html",
        "Corpus: text and HTML alternatives",
        extra=(
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
        ),
    )
    body = multipart(
        boundary,
        [
            text_part(prose(prng, 2)),
            text_part(html_page(prng, "Corpus newsletter"), "text/html"),
        ],
    )
    return simple(head, body, "multipart", "multipart-alternative", "html")


@builder
def mixed_attachments() -> Sample:
    """multipart/mixed with PNG, PDF and ZIP attachments."""
    prng = Prng("mixed-attachments")
    boundary = "mixed_5e6f_attachments"
    head = Head(
        "mixed-attachments",
        "Corpus: PNG, PDF and ZIP attachments",
        cc=(CLEO, FAY),
        extra=(
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/mixed; boundary="{boundary}"'),
        ),
    )
    archive = zip_archive(
        [
            ("notes.txt", join(prose(prng, 2))),
            ("data/blob.bin", prng.take(3000)),
            ("data/empty.txt", b""),
        ]
    )
    body = multipart(
        boundary,
        [
            text_part(prose(prng, 1)),
            attachment("image/png", "gradient.png", png_image(prng, 48, 32)),
            attachment("application/pdf", "page.pdf", pdf_document(prng)),
            attachment("application/zip", "bundle.zip", archive),
        ],
    )
    return simple(
        head,
        body,
        "multipart",
        "multipart-mixed",
        "base64-attachment",
        "base64-lines-76",
        "png-attachment",
        "pdf-attachment",
        "zip-attachment",
    )


@builder
def nested_multipart() -> Sample:
    """mixed > (alternative > (text, related > (html, png)), zip)."""
    prng = Prng("nested-multipart")
    outer, alt, rel = "outer-a1", "alt-b2", "rel-c3"
    cid = f"logo.0001@{DOMAIN}"
    head = Head(
        "nested-multipart",
        "Corpus: mixed > alternative > related",
        extra=(
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/mixed; boundary="{outer}"'),
        ),
    )
    html = html_page(prng, "Inline image", f'<p><img src="cid:{cid}" alt="logo"></p>')
    related = part(
        [
            (
                "Content-Type",
                f'multipart/related;\n type="text/html";\n boundary="{rel}"',
            )
        ],
        multipart(
            rel,
            [
                text_part(html, "text/html"),
                attachment("image/png", "logo.png", png_image(prng, 16, 16), cid),
            ],
        ),
    )
    alternative = part(
        [("Content-Type", f'multipart/alternative; boundary="{alt}"')],
        multipart(alt, [text_part(prose(prng, 1)), related]),
    )
    archive = zip_archive([("readme.txt", join(prose(prng, 1)))])
    body = multipart(
        outer,
        [
            alternative,
            attachment("application/zip", "extra.zip", archive),
        ],
    )
    return simple(
        head,
        body,
        "multipart",
        "multipart-mixed",
        "multipart-alternative",
        "multipart-related",
        "nested-multipart",
        "inline-image",
        "html",
        "base64-attachment",
        "base64-lines-76",
        "png-attachment",
        "zip-attachment",
    )


@builder
def quoted_printable() -> Sample:
    """Quoted-printable with soft breaks, =2E and =46rom."""
    prng = Prng("quoted-printable")
    head = Head(
        "quoted-printable",
        "Corpus: quoted-printable, soft breaks",
        extra=text_plain("utf-8", "quoted-printable"),
    )
    long_line = " ".join(paragraph(prng, 6, 10_000))
    text = "\n".join(
        [
            "Short line with an equals sign: a=b and tabs\tinside.",
            long_line,
            ".A line that starts with a dot.",
            "." + " ".join(paragraph(prng, 3, 10_000)),
            "From the start of a line, with trailing spaces   ",
            "Non-ASCII: " + UTF8_TEXT.splitlines()[0],
            "x" * 75 + ".more after a break",
            ".",
            "end",
        ]
    )
    return simple(head, qp_encode(text.encode("utf-8")), "quoted-printable")


@builder
def forwarded_rfc822() -> Sample:
    """A forwarded message as a message/rfc822 part."""
    prng = Prng("forwarded-rfc822")
    boundary = "fwd-9a8b7c"
    head = Head(
        "forwarded-rfc822",
        "Fwd: Corpus: the original message",
        from_=(FAY,),
        to=(BRAM,),
        extra=(
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/mixed; boundary="{boundary}"'),
        ),
    )
    inner = Head("original-0001", "Corpus: the original message", extra=text_plain())
    inner_lines = [
        line.replace(DOMAIN.encode(), b"elsewhere.smtpstate.test")
        for line in inner.lines()
    ]
    inner_body = [*inner_lines, b"", *prose(prng, 2), b".", b"..inner dots"]
    body = multipart(
        boundary,
        [
            text_part([b"Forwarding the message below.", b""]),
            part(
                [
                    ("Content-Type", "message/rfc822"),
                    ("Content-Disposition", 'attachment; filename="original.eml"'),
                ],
                inner_body,
            ),
        ],
    )
    return simple(head, body, "multipart", "multipart-mixed", "message-rfc822")


@builder
def dsn_report() -> Sample:
    """A bounce: multipart/report, delivery-status, Return-Path <>."""
    prng = Prng("dsn-report")
    boundary = "dsn.4f2a.corpus"
    daemon = Mailbox(f"mailer-daemon@{DOMAIN}", "Mail Delivery System")
    head = Head(
        "dsn-report",
        "Undelivered Mail Returned to Sender",
        from_=(daemon,),
        to=(ADA,),
        return_path="",
        extra=(
            ("Auto-Submitted", "auto-replied"),
            ("MIME-Version", "1.0"),
            (
                "Content-Type",
                "multipart/report;"
                " report-type=delivery-status;\n"
                f' boundary="{boundary}"',
            ),
        ),
    )
    status = [
        f"Reporting-MTA: dns; mx.{DOMAIN}",
        f"X-Corpus-Queue-ID: {prng.take(5).hex().upper()}",
        "Arrival-Date: " + message_date("dsn-report-arrival"),
        "",
        f"Final-Recipient: rfc822; nobody@{RCPT_DOMAIN}",
        f"Original-Recipient: rfc822;nobody@{RCPT_DOMAIN}",
        "Action: failed",
        "Status: 5.1.1",
        f"Remote-MTA: dns; mx.{RCPT_DOMAIN}",
        "Diagnostic-Code: smtp; 550 5.1.1 <nobody@inbox.smtpstate.test>:",
        "    Recipient address rejected: no such user",
    ]
    original = Head(
        "dsn-original-0001",
        "Corpus: a message that bounced",
        to=(Mailbox(f"nobody@{RCPT_DOMAIN}"),),
    )
    body = multipart(
        boundary,
        [
            text_part(
                [
                    b"This is the mail system at the corpus host.",
                    b"",
                    b"Your message could not be delivered to one recipient.",
                    b"",
                ]
                + prose(prng, 1),
                charset="us-ascii",
            ),
            part(
                [("Content-Type", "message/delivery-status")],
                [line.encode("ascii") for line in status],
            ),
            part([("Content-Type", "text/rfc822-headers")], original.lines()),
        ],
    )
    return simple(head, body, "multipart", "multipart-report")


def ics_fold(line: str) -> list[str]:
    """Folds an iCalendar content line at 75 octets (ASCII input)."""
    out = [line[:75]]
    rest = line[75:]
    for _ in range(len(rest)):
        if not rest:
            break
        out.append(" " + rest[:74])
        rest = rest[74:]
    return out


@builder
def calendar_invite() -> Sample:
    """An invitation: text, HTML and text/calendar alternatives."""
    prng = Prng("calendar-invite")
    boundary = "cal-0b1c2d3e"
    head = Head(
        "calendar-invite",
        "Invitation: corpus review @ 10:00",
        cc=(CLEO,),
        extra=(
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
        ),
    )
    description = "DESCRIPTION:" + " ".join(paragraph(prng, 3, 10_000))
    ics = [
        "BEGIN:VCALENDAR",
        "PRODID:-//smtpstate//corpus generator//EN",
        "VERSION:2.0",
        "CALSCALE:GREGORIAN",
        "METHOD:REQUEST",
        "BEGIN:VEVENT",
        f"UID:review-0001@{DOMAIN}",
        "DTSTAMP:20240305T090000Z",
        "DTSTART:20240312T100000Z",
        "DTEND:20240312T110000Z",
        "SUMMARY:Corpus review",
        f"ORGANIZER;CN=Ada Outbound:mailto:{ADA.addr}",
        f"ATTENDEE;CN=Bram Inbox;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;"
        f"RSVP=TRUE:mailto:{BRAM.addr}",
        f"ATTENDEE;CN=Cleo Copy;ROLE=OPT-PARTICIPANT;PARTSTAT=NEEDS-ACTION;"
        f"RSVP=TRUE:mailto:{CLEO.addr}",
        description,
        "LOCATION:Room 4",
        "SEQUENCE:0",
        "STATUS:CONFIRMED",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    folded = [piece.encode("ascii") for line in ics for piece in ics_fold(line)]
    body = multipart(
        boundary,
        [
            text_part(prose(prng, 1)),
            text_part(html_page(prng, "Corpus review"), "text/html"),
            part(
                [
                    ("Content-Type", "text/calendar; charset=utf-8; method=REQUEST"),
                    ("Content-Transfer-Encoding", "7bit"),
                ],
                folded,
            ),
        ],
    )
    return simple(head, body, "multipart", "multipart-alternative", "html", "calendar")


@builder
def folded_headers() -> Sample:
    """Received, To, Cc, Subject, References folded over many lines."""
    prng = Prng("folded-headers")
    team = tuple(
        Mailbox(f"member{n:02d}@{RCPT_DOMAIN}", f"Member {n:02d}") for n in range(1, 13)
    )
    references = "\n ".join(
        f"<thread-{n:03d}.{prng.take(6).hex()}@{DOMAIN}>" for n in range(15)
    )
    received = []
    for hop in range(4):
        received.append(
            (
                "Received",
                (
                    f"from relay{hop}.{DOMAIN} (relay{hop}.{DOMAIN}"
                    f" [192.0.2.{10 + hop}])"
                    f"\n\tby relay{hop + 1}.{DOMAIN} (corpus) with ESMTPS id "
                    f"{prng.take(6).hex().upper()}\n\tfor <{BRAM.addr}>; "
                    + message_date(f"hop{hop}")
                ),
            )
        )
    long_words = " ".join(paragraph(prng, 20, 10_000))
    x_long = "\n ".join(wrap(long_words, 70))
    subject = "\n ".join(
        wrap(
            "Corpus: a subject folded over several lines, "
            + " ".join(paragraph(prng, 3, 10_000)),
            70,
        )
    )
    head = Head(
        "folded-headers",
        subject,
        to=team[:8],
        cc=team[8:],
        trace=tuple(received),
        extra=(
            ("In-Reply-To", references.rsplit("\n ", 1)[-1]),
            ("References", references),
            ("X-Corpus-Long", x_long),
            *text_plain(),
        ),
    )
    return simple(head, prose(prng, 2), "header-folded-long")


@builder
def long_header_line() -> Sample:
    """An unfolded header line of more than 998 octets."""
    prng = Prng("long-header-line")
    head = Head(
        "long-header-line",
        "Corpus: an unfolded header line over 998",
        extra=(("X-Corpus-Unfolded", filler(prng, 1500)), *text_plain()),
    )
    return simple(head, prose(prng, 1), "header-line-over-998")


@builder
def whitespace_lines() -> Sample:
    """Whitespace-only lines, trailing spaces and tabs."""
    prng = Prng("whitespace-lines")
    head = Head(
        "whitespace-lines",
        "Corpus: whitespace-only lines, trailing blanks",
        extra=text_plain(),
    )
    body = [
        b"Next: spaces only, a tab only, and a mix.",
        b"    ",
        b"\t",
        b" \t \t ",
        b"",
        b"trailing spaces   ",
        b"trailing tabs\t\t",
        b"trailing mix \t \t",
        b"\tleading tab",
        b"   leading spaces",
    ]
    return simple(
        head, body + prose(prng, 1), "whitespace-only-line", "trailing-whitespace"
    )


SMUGGLED = [
    f"MAIL FROM:<smuggler@{DOMAIN}>",
    f"RCPT TO:<victim@{RCPT_DOMAIN}>",
    "DATA",
    f"From: Someone Else <ceo@{RCPT_DOMAIN}>",
    f"To: <victim@{RCPT_DOMAIN}>",
    "Subject: smuggled message",
    "",
    "This message must never be delivered on its own.",
]


def smuggling(stem: str, pattern: bytes, eol: bytes) -> Sample:
    """Returns a message whose body hides SMTP commands between two `pattern`s.

    The commands are joined by `eol`; the pattern is the only end-of-data
    look-alike in the file, so each file isolates one variant.
    """
    prng = Prng(stem)
    label = pattern.decode("ascii").replace("\r", "<CR>").replace("\n", "<LF>")
    head = Head(stem, f"Corpus: smuggling pattern {label}", extra=text_plain())
    injected = eol.join(line.encode("ascii") for line in SMUGGLED)
    body = (
        join(prose(prng, 1))
        + b"Before the pattern"
        + pattern
        + injected
        + pattern
        + b"QUIT"
        + eol
        + b"After the pattern"
        + CRLF
        + join(prose(prng, 1))
    )
    return Sample(head, assemble(head, body))


@builder
def smuggling_crlf_dot_crlf() -> Sample:
    """CR LF . CR LF, the classic end of data, inside the body."""
    return smuggling("smuggling-crlf-dot-crlf", b"\r\n.\r\n", CRLF)


@builder
def smuggling_lf_dot_lf() -> Sample:
    """Bare LF . bare LF inside the body."""
    return smuggling("smuggling-lf-dot-lf", b"\n.\n", b"\n")


@builder
def smuggling_cr_dot_cr() -> Sample:
    """Bare CR . bare CR inside the body."""
    return smuggling("smuggling-cr-dot-cr", b"\r.\r", b"\r")


@builder
def smuggling_lf_dot_crlf() -> Sample:
    """Bare LF . CR LF inside the body."""
    return smuggling("smuggling-lf-dot-crlf", b"\n.\r\n", CRLF)


@builder
def smuggling_crlf_dot_lf() -> Sample:
    """CR LF . bare LF inside the body."""
    return smuggling("smuggling-crlf-dot-lf", b"\r\n.\n", b"\n")


@builder
def smuggling_all() -> Sample:
    """Nine end-of-data look-alikes in one body."""
    prng = Prng("smuggling-all")
    head = Head(
        "smuggling-all",
        "Corpus: every smuggling pattern in one body",
        extra=text_plain(),
    )
    patterns = (
        b"\r\n.\r\n",
        b"\n.\n",
        b"\r.\r",
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r.\n",
        b"\n.\r",
        b"\r\n.\r",
        b"\r.\r\n",
    )
    body = b"Start"
    for number, pattern in enumerate(patterns):
        body += pattern + b"NOOP %d after the pattern" % number
    body += CRLF + join(prose(prng, 1))
    return Sample(head, assemble(head, body))


@builder
def short_lines_1000() -> Sample:
    """1,000 lines of at most 4 octets, dots among them."""
    prng = Prng("short-lines-1000")
    head = Head(
        "short-lines-1000", "Corpus: 1,000 very short lines", extra=text_plain()
    )
    pieces = [b"a", b"bb", b"ccc", b".", b"..", b"x.", b"", b"1", b"22", b".z", b"dddd"]
    body = [pieces[prng.below(len(pieces))] for _ in range(1000)]
    return simple(head, body, "short-lines-1000")


@builder
def body_only_dot() -> Sample:
    """The body is "." alone, no line end."""
    head = Head("body-only-dot", "Corpus: the body is a single dot", extra=text_plain())
    return Sample(head, assemble(head, b"."), frozenset({"body-only-dot"}))


@builder
def body_only_crlf() -> Sample:
    """The body is one CRLF."""
    head = Head(
        "body-only-crlf", "Corpus: the body is a single CRLF", extra=text_plain()
    )
    return Sample(head, assemble(head, CRLF), frozenset({"body-only-crlf"}))


@builder
def ends_with_dot_line() -> Sample:
    """The body ends with a "." line and its CRLF."""
    prng = Prng("ends-with-dot-line")
    head = Head(
        "ends-with-dot-line",
        "Corpus: the body ends with a dot line",
        extra=text_plain(),
    )
    return simple(head, prose(prng, 1) + [b"."])


@builder
def mbox_from_lines() -> Sample:
    """Body lines starting with "From " (mbox separators)."""
    prng = Prng("mbox-from-lines")
    head = Head(
        "mbox-from-lines", "Corpus: lines that start with From", extra=text_plain()
    )
    body = [
        b"From the corpus desk, a few mbox-style lines:",
        b"From here on, nothing is a separator.",
        f"From {ADA.addr} Tue Mar  5 09:00:00 2024".encode("ascii"),
        b">From an already quoted line",
        b"From",
        b"From:not a header",
        b" From with a leading space",
        *prose(prng, 1),
        b"From the last line",
    ]
    return simple(head, body, "from-space-line")


def flowed(text: str, width: int, quote: str = "") -> list[str]:
    """Returns one paragraph in format=flowed: soft breaks end in a space."""
    lines = wrap(text, width - len(quote) - 1)
    out = []
    for index, line in enumerate(lines):
        soft = " " if index < len(lines) - 1 else ""
        if not quote and (line.startswith((" ", ">")) or line.startswith("From ")):
            line = " " + line
        out.append(quote + line + soft)
    return out


@builder
def format_flowed() -> Sample:
    """format=flowed text: soft breaks, quotes, space-stuffing."""
    prng = Prng("format-flowed")
    head = Head(
        "format-flowed",
        "Re: Corpus: format=flowed text",
        extra=(
            ("MIME-Version", "1.0"),
            ("Content-Type", "text/plain; charset=utf-8; format=flowed; delsp=no"),
            ("Content-Transfer-Encoding", "7bit"),
        ),
    )
    quoted = " ".join(prng.sentence() for _ in range(4))
    text = [
        "On Tuesday, Bram Inbox wrote:",
        *flowed(quoted, 66, "> "),
        "",
        *flowed(" ".join(prng.sentence() for _ in range(5)), 66),
        "",
        *flowed(
            "From the start, this line needs space-stuffing. " + prng.sentence(), 66
        ),
        *flowed(">not a quote but stuffed", 66),
        "",
        "-- ",
        "Ada",
    ]
    return simple(head, [line.encode("ascii") for line in text], "format-flowed")


@builder
def multi_recipients() -> Sample:
    """Three To, two Cc, two Bcc; a quoted name and a comment."""
    prng = Prng("multi-recipients")
    head = Head(
        "multi-recipients",
        "Corpus: recipients in To, Cc and Bcc",
        to=(BRAM, ELI, GUS),
        cc=(CLEO, HAL),
        bcc=(DARA, FAY),
        extra=text_plain(),
    )
    return simple(head, prose(prng, 2), "quoted-display-name", "address-comment")


@builder
def return_path() -> Sample:
    """A list message whose Return-Path differs from From."""
    prng = Prng("return-path")
    head = Head(
        "return-path",
        "Corpus: Return-Path differs from From",
        return_path=BOUNCES,
        to=(BRAM, CLEO),
        extra=(
            ("List-Id", f"Corpus list <corpus.{DOMAIN}>"),
            ("List-Unsubscribe", f"<mailto:unsubscribe@{DOMAIN}>"),
            ("Precedence", "bulk"),
            *text_plain(),
        ),
    )
    return simple(head, prose(prng, 2))


@builder
def sender_multi_from() -> Sample:
    """Two From addresses and the Sender that sent them."""
    prng = Prng("sender-multi-from")
    head = Head(
        "sender-multi-from",
        "Corpus: two authors, one Sender",
        from_=(ADA, Mailbox(f"ben.author@{DOMAIN}", "Ben Author")),
        sender=Mailbox(f"secretary@{DOMAIN}", "Corpus Secretary"),
        to=(BRAM,),
        cc=(CLEO,),
        extra=text_plain(),
    )
    return simple(head, prose(prng, 2))


@builder
def sender_single() -> Sample:
    """One From and a Sender: the Sender is the envelope sender."""
    prng = Prng("sender-single")
    head = Head(
        "sender-single",
        "Corpus: sent on behalf of the author",
        sender=Mailbox(f"assistant@{DOMAIN}"),
        to=(BRAM,),
        bcc=(DARA,),
        extra=text_plain(),
    )
    return simple(head, prose(prng, 1))


@builder
def return_path_and_sender() -> Sample:
    """Return-Path and Sender: Return-Path wins."""
    prng = Prng("return-path-and-sender")
    head = Head(
        "return-path-and-sender",
        "Corpus: Return-Path wins over Sender",
        return_path=f"envelope.owner@{DOMAIN}",
        sender=Mailbox(f"assistant@{DOMAIN}", "Assistant"),
        to=(BRAM,),
        extra=text_plain(),
    )
    return simple(head, prose(prng, 1))


@builder
def undisclosed_recipients() -> Sample:
    """An empty To group; the recipients are in Bcc."""
    prng = Prng("undisclosed-recipients")
    head = Head(
        "undisclosed-recipients",
        "Corpus: undisclosed recipients",
        to=(Group("undisclosed-recipients"),),
        bcc=(BRAM, CLEO, DARA),
        extra=text_plain(),
    )
    return simple(head, prose(prng, 1), "empty-group")


@builder
def group_syntax() -> Sample:
    """A To group with members, a plain address after it."""
    prng = Prng("group-syntax")
    team = Group("Corpus Team", (ELI, GUS, Mailbox(f"ivy@{RCPT_DOMAIN}", "Ivy")))
    head = Head(
        "group-syntax",
        "Corpus: an address group",
        to=(team, BRAM),
        cc=(HAL,),
        extra=text_plain(),
    )
    return simple(
        head, prose(prng, 1), "group-syntax", "quoted-display-name", "address-comment"
    )


@builder
def multipart_signed() -> Sample:
    """multipart/signed with a placeholder signature."""
    prng = Prng("multipart-signed")
    boundary = "signed-77aa"
    head = Head(
        "multipart-signed",
        "Corpus: a signed message (fake signature)",
        extra=(
            ("MIME-Version", "1.0"),
            (
                "Content-Type",
                "multipart/signed; micalg=pgp-sha256;\n "
                f'protocol="application/pgp-signature"; boundary="{boundary}"',
            ),
        ),
    )
    signature = [
        b"-----BEGIN PGP SIGNATURE-----",
        b"",
        *b64_lines(prng.take(566), 64),
        b"=" + base64.b64encode(prng.take(3)),
        b"-----END PGP SIGNATURE-----",
    ]
    body = multipart(
        boundary,
        [
            text_part(
                qp_encode(b"\n".join([*prose(prng, 2), b"Trailing space: "])),
                cte="quoted-printable",
            ),
            part(
                [
                    ("Content-Type", 'application/pgp-signature; name="signature.asc"'),
                    ("Content-Description", "corpus placeholder signature"),
                    ("Content-Disposition", 'attachment; filename="signature.asc"'),
                ],
                signature,
            ),
        ],
    )
    return simple(head, body, "multipart", "multipart-signed")


@builder
def preamble_epilogue() -> Sample:
    """Multipart preamble and epilogue, boundary look-alikes."""
    prng = Prng("preamble-epilogue")
    boundary = "pe-0042"
    head = Head(
        "preamble-epilogue",
        "Corpus: preamble and epilogue",
        extra=(
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/mixed; boundary="{boundary}"'),
        ),
    )
    preamble = [b"A reader without MIME support sees this preamble.", b""]
    epilogue = [b"", b"Text after the closing boundary (the epilogue).", b"."]
    body = multipart(
        boundary,
        [
            text_part(
                [b"--not-the-boundary", b"--pe-0042x is not it either", *prose(prng, 1)]
            ),
            text_part(prose(prng, 1)),
        ],
        preamble,
        epilogue,
    )
    return simple(head, body, "multipart", "multipart-mixed", "preamble-epilogue")


@builder
def digest() -> Sample:
    """multipart/digest of three messages."""
    prng = Prng("digest")
    boundary = "digest-5d5d"
    head = Head(
        "digest",
        "Corpus digest, issue 1",
        extra=(
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/digest; boundary="{boundary}"'),
        ),
    )
    entries = []
    for number in range(3):
        inner = Head(
            f"digest-entry-{number}", f"Digest entry {number}", extra=text_plain()
        )
        lines = [
            line.replace(DOMAIN.encode(), b"lists.smtpstate.test")
            for line in inner.lines()
        ]
        entries.append([b"", *lines, b"", *prose(prng, 1)])
    body = multipart(boundary, entries)
    return simple(head, body, "multipart", "multipart-digest", "message-rfc822")


@builder
def all_octets() -> Sample:
    """Every octet 0x01-0xFF in the body (binary)."""
    head = Head(
        "all-octets",
        "Corpus: every octet value but NUL",
        extra=(
            ("MIME-Version", "1.0"),
            ("Content-Type", "application/octet-stream"),
            ("Content-Transfer-Encoding", "binary"),
        ),
    )
    forward = bytes(range(1, 256))
    body = (
        b"Ascending:"
        + forward
        + CRLF
        + b"Descending:"
        + forward[::-1]
        + CRLF
        + b"end"
        + CRLF
    )
    return Sample(head, assemble(head, body), frozenset({"all-octets"}))


@builder
def blank_line_runs() -> Sample:
    """Runs of 3, 12 and 10 empty lines in the body."""
    prng = Prng("blank-line-runs")
    head = Head("blank-line-runs", "Corpus: runs of empty lines", extra=text_plain())
    body = [b""] * 3 + prose(prng, 1) + [b""] * 12 + prose(prng, 1) + [b""] * 10
    return simple(head, body, "blank-line-run")


@builder
def html_only() -> Sample:
    """A single text/html part with a 900-octet line."""
    prng = Prng("html-only")
    head = Head(
        "html-only",
        "Corpus: a single HTML part",
        extra=(
            ("MIME-Version", "1.0"),
            ("Content-Type", "text/html; charset=us-ascii"),
            ("Content-Transfer-Encoding", "7bit"),
        ),
    )
    extra = "<p>" + filler(prng, 900).decode("ascii") + "</p>"
    return simple(head, html_page(prng, "HTML only", extra), "html")


@builder
def base64_body() -> Sample:
    """A single-part UTF-8 text body in base64."""
    prng = Prng("base64-body")
    head = Head(
        "base64-body",
        "Corpus: a text body in base64",
        extra=text_plain("utf-8", "base64"),
    )
    text = UTF8_TEXT.encode("utf-8") + join(prose(prng, 2), b"\n")
    return simple(
        head, b64_lines(text), "base64-body", "base64-attachment", "base64-lines-76"
    )


# --- structural tags and output ----------------------------------------------

_LINE_END = re.compile(rb"\r\n|\r|\n")
# Smuggling patterns count only with more bytes after them (`(?=.)`).
PATTERN_TAGS = {
    "smuggling-crlf-dot-crlf": re.compile(rb"\r\n\.\r\n(?=.)", re.DOTALL),
    "smuggling-lf-dot-lf": re.compile(rb"(?<!\r)\n\.\n(?=.)", re.DOTALL),
    "smuggling-cr-dot-cr": re.compile(rb"\r\.\r(?!\n)(?=.)", re.DOTALL),
    "smuggling-lf-dot-crlf": re.compile(rb"(?<!\r)\n\.\r\n(?=.)", re.DOTALL),
    "smuggling-crlf-dot-lf": re.compile(rb"\r\n\.\n(?=.)", re.DOTALL),
    "final-lone-dot": re.compile(rb"[\r\n]\.\Z"),
    "ends-with-dot-line": re.compile(rb"[\r\n]\.(?:\r\n|\r|\n)\Z"),
}


def split_lines(data: bytes) -> Lines:
    """Splits on CRLF, bare CR and bare LF, like ``tests/canonical.py``."""
    return _LINE_END.split(data)


def split_head_body(data: bytes) -> tuple[bytes, bytes | None]:
    """Splits at the first empty line; the body is None when there is none."""
    previous_end = 0
    for match in _LINE_END.finditer(data):
        if match.start() == previous_end:
            return data[: match.start()], data[match.end() :]
        previous_end = match.end()
    return data, None


def structural_tags(data: bytes) -> set[str]:
    """Returns the tags that follow from the bytes alone."""
    tags: set[str] = set()
    bare_lf = re.search(rb"(?<!\r)\n", data) is not None
    bare_cr = re.search(rb"\r(?!\n)", data) is not None
    if b"\r\n" in data and not bare_lf and not bare_cr:
        tags.add("crlf-only")
    if bare_lf:
        tags.add("bare-lf")
    if bare_cr:
        tags.add("bare-cr")
    if b"\n" in data and b"\r" not in data:
        tags.add("lf-line-ends")
    if b"\r" in data and b"\n" not in data:
        tags.add("cr-line-ends")
    lf_cr = re.search(rb"(?<!\r)\n\r(?!\n)", data) is not None
    if b"\r\n" in data and bare_lf and bare_cr and lf_cr:
        tags.add("mixed-line-ends")
    if data and data[-1:] not in (b"\r", b"\n"):
        tags.add("no-final-newline")
    if max(data, default=0) < 0x80:
        tags.add("ascii-7bit")
    else:
        try:
            data.decode("utf-8")
            tags.add("utf8")
        except UnicodeDecodeError:
            tags.add("8bit-non-utf8")
    lines = split_lines(data)
    if data.endswith((b"\r", b"\n")):
        lines = lines[:-1]
    longest = max((len(line) for line in lines), default=0)
    if any(len(line) == 998 for line in lines):
        tags.add("line-998")
    if longest > 998:
        tags.add("line-over-998")
    if longest >= 100 * 1024:
        tags.add("line-100kib")
    if len(data) >= 2 * 1024 * 1024:
        tags.add("size-2mib")
    if b"." in lines:
        tags.add("lone-dot")
    if b"" not in lines:
        tags.add("no-header-separator")
    if split_head_body(data)[1] == b"":
        tags.add("empty-body")
    for tag, pattern in PATTERN_TAGS.items():
        if pattern.search(data):
            tags.add(tag)
    return tags


def entry(sample: Sample) -> Entry:
    """Returns the manifest entry of one sample."""
    covers = structural_tags(sample.data) | sample.head.tags() | sample.declared
    unknown = covers - VOCABULARY.keys()
    if unknown:
        raise ValueError(f"{sample.stem}: tags not in the vocabulary: {unknown}")
    return {
        "file": f"messages/{sample.stem}.eml",
        "message_id": mid(sample.stem),
        "covers": sorted(covers),
        "size": len(sample.data),
        "sha256": hashlib.sha256(sample.data).hexdigest(),
        "envelope": sample.head.envelope(),
    }


def readme(entries: Sequence[Entry]) -> str:
    """Returns README.md: how to regenerate, and the files per tag."""
    out = [
        "# The smtpstate test corpus",
        "",
        "Generated by `generate.py` (deterministic, standard library only); do",
        "not edit by hand. Regenerate with `python3 tests/data/generate.py`;",
        "`tests/test_corpus.py` checks every claim below against the bytes.",
        "",
        "`manifest.json` lists one entry per file in `messages/`: `file`,",
        "`message_id`, `covers`, `size`, `sha256` and `envelope` (`from`, `to`",
        "as `sendmail -t` takes them: To, Cc, Bcc in order; Return-Path, else",
        "Sender, else the single From; `from` is empty for `Return-Path: <>`).",
        "No file contains a NUL octet. Addresses are ASCII, so no file needs",
        "SMTPUTF8 in the envelope. A file carries a tag if and only if the",
        "property holds, so tests may select files by tag either way. A line",
        "is what lies between line ends, each of CRLF, bare CR and bare LF",
        "being one line end, as in `tests/canonical.py`.",
        "",
        "| tag | meaning | files |",
        "| --- | --- | --- |",
    ]
    for tag, meaning in VOCABULARY.items():
        files = [
            item["file"].removeprefix("messages/").removesuffix(".eml")
            for item in entries
            if tag in item["covers"]
        ]
        out.append(f"| `{tag}` | {meaning} | {', '.join(files)} |")
    return "\n".join(out) + "\n"


def build() -> list[Sample]:
    """Builds every corpus message, checking names and tag coverage."""
    samples = [make() for make in BUILDERS]
    stems = [sample.stem for sample in samples]
    if len(set(stems)) != len(stems):
        raise ValueError("duplicate file stems")
    for sample in samples:
        if b"\0" in sample.data:
            raise ValueError(f"{sample.stem}: NUL octet")
    return sorted(samples, key=lambda sample: sample.stem)


def write(out: Path) -> None:
    """Writes messages, manifest.json and README.md under `out`."""
    samples = build()
    entries = [entry(sample) for sample in samples]
    covered = {tag for item in entries for tag in item["covers"]}
    missing = VOCABULARY.keys() - covered
    if missing:
        raise ValueError(f"tags no file covers: {sorted(missing)}")
    messages = out / "messages"
    messages.mkdir(parents=True, exist_ok=True)
    names = {f"{sample.stem}.eml" for sample in samples}
    for stale in sorted(messages.glob("*.eml")):
        if stale.name not in names:
            stale.unlink()
    for sample in samples:
        (messages / f"{sample.stem}.eml").write_bytes(sample.data)
    manifest = json.dumps(entries, indent=2, ensure_ascii=True) + "\n"
    (out / "manifest.json").write_bytes(manifest.encode("ascii"))
    (out / "README.md").write_bytes(readme(entries).encode("utf-8"))


def main(argv: Sequence[str] | None = None) -> int:
    """Parses the command line and writes the corpus."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="folder to write into (default: this script's)",
    )
    args = parser.parse_args(argv)
    write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
