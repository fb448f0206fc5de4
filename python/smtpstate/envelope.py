"""``sendmail -t``: the envelope from a message's header fields.

The recipients come from To, Cc and Bcc, the sender from Return-Path,
else Sender, else a single From; the Bcc fields are removed from the
bytes, which are otherwise sent as they are.

Only the header section is read, at most `HEADER_MAX` bytes of it, so a
file of any size costs the same memory as without ``-t``.  Without a Bcc
field the file itself is sent; with one, a copy without it is written to
a spool folder, streamed, and sent instead.

The fields read for the envelope are decoded as UTF-8 (RFC 6532), so an
address taken from them reaches the wire with the same bytes as when it
is given on the command line; an address holding bytes that are not
UTF-8 is refused rather than guessed at.  The bytes sent are the file's:
nothing is re-encoded.
"""

from __future__ import annotations

import email.utils
import os
import re
import shutil
import tempfile
from collections.abc import Sequence

#: The most header bytes read to find the envelope.  Far above real
#: headers, low enough that a file with no empty line is not read whole.
HEADER_MAX = 1 << 20
_COPY_CHUNK = 1 << 20


class EnvelopeError(ValueError):
    """A message whose headers give no usable envelope."""


_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def _header_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """The header's lines with their line ends, and everything after them
    (the empty line that ends the header, then the body)."""
    lines: list[bytes] = []
    at = 0
    for match in _LINE.finditer(data):
        line = match.group(0)
        if line.rstrip(b"\r\n") == b"":
            break
        lines.append(line)
        at = match.end()
    return lines, data[at:]


# RFC 5322's obsolete syntax (obs-optional) allows WSP before the colon,
# so "Bcc : x" is a Bcc field too.
_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")


def _is_bcc(line: bytes) -> bool:
    match = _FIELD_NAME.match(line)
    return match is not None and match.group(1).lower() == b"bcc"


def _without_bcc_lines(lines: Sequence[bytes]) -> list[bytes]:
    """The header lines but the Bcc fields' (continuation lines too)."""
    kept: list[bytes] = []
    dropping = False
    for line in lines:
        if line[:1] in (b" ", b"\t") and dropping:
            continue
        dropping = _is_bcc(line)
        if not dropping:
            kept.append(line)
    return kept


def _without_bcc(data: bytes) -> bytes:
    """The message with its Bcc header fields (and their continuation
    lines) removed; every other byte is kept."""
    lines, rest = _header_lines(data)
    return b"".join(_without_bcc_lines(lines)) + rest


_ENVELOPE_FIELDS = ("to", "cc", "bcc", "return-path", "sender", "from")
# What surrogateescape makes of bytes that are not UTF-8.
_UNDECODABLE = re.compile("[\udc80-\udcff]")

# A field: its name as written and its unfolded value, decoded.
_Field = tuple[str, str]


def _envelope_fields(lines: Sequence[bytes]) -> dict[str, list[_Field]]:
    """The fields the envelope comes from, by lower-case name.

    Values are decoded as UTF-8 with undecodable bytes kept as surrogates:
    a display name in another charset does not matter to the envelope, an
    address holding such bytes is refused where it is taken (`_address`).
    """
    found: dict[str, list[_Field]] = {name: [] for name in _ENVELOPE_FIELDS}
    raw: list[tuple[bytes, bytearray]] = []
    current: bytearray | None = None
    for line in lines:
        text = line.rstrip(b"\r\n")
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                current += text
            continue
        match = _FIELD_NAME.match(text)
        # A line that is no field (an mbox "From " line, say) takes its
        # continuation lines with it.
        current = None if match is None else bytearray(text[match.end() :])
        if match is not None:
            raw.append((match.group(1), current))
    for name, value in raw:
        key = name.decode("ascii").lower()
        if key in found:
            text = bytes(value).decode("utf-8", "surrogateescape")
            found[key].append((name.decode("ascii"), text))
    return found


def _address(name: str, address: str) -> str:
    bad = _UNDECODABLE.search(address)
    if bad:
        raise EnvelopeError(
            f"an address in the {name} field is not valid UTF-8 (byte "
            f"0x{ord(bad.group()) - 0xDC00:02x}); header fields are read as "
            "UTF-8 (RFC 6532)"
        )
    return address


def _addresses(fields: Sequence[_Field]) -> list[str]:
    return [
        _address(name, address)
        for name, value in fields
        for _, address in email.utils.getaddresses([value])
        if address
    ]


def _envelope(lines: Sequence[bytes]) -> tuple[str, list[str]]:
    """(sender, recipients) from the header lines."""
    fields = _envelope_fields(lines)
    rcpts = _addresses(fields["to"] + fields["cc"] + fields["bcc"])
    if not rcpts:
        raise EnvelopeError("no recipients in To, Cc or Bcc")
    return_path = fields["return-path"]
    senders = fields["sender"]
    froms = _addresses(fields["from"])
    if len(return_path) > 1 or len(senders) > 1:
        raise EnvelopeError("more than one Return-Path or Sender field")
    if return_path or senders:
        name, value = (return_path or senders)[0]
        sender = _address(name, email.utils.parseaddr(value)[1])
    elif len(froms) == 1:
        sender = froms[0]
    elif not froms:
        raise EnvelopeError("no sender: no Return-Path, Sender or From")
    else:
        raise EnvelopeError(
            f"the sender is ambiguous ({len(froms)} From addresses and "
            "no Sender or Return-Path)"
        )
    return sender, list(dict.fromkeys(rcpts))


def from_file(path: str, spool: str) -> tuple[str, list[str], str]:
    """``sendmail -t`` for the message file at `path`: (sender, recipients,
    the path to send), the last being `path` itself when the header has
    no Bcc field, else that of a copy without it in the folder `spool`."""
    with open(path, "rb") as f:
        head = f.read(HEADER_MAX)
        lines, rest = _header_lines(head)
        if not rest and f.read(1):
            raise EnvelopeError(
                f"no empty line ends the header section within its first "
                f"{HEADER_MAX:,} bytes, the most -t reads"
            )
        sender, rcpts = _envelope(lines)
        kept = _without_bcc_lines(lines)
        if len(kept) == len(lines):
            return sender, rcpts, path
        f.seek(len(head) - len(rest))
        fd, copy = tempfile.mkstemp(suffix=".eml", dir=spool)
        with os.fdopen(fd, "wb") as out:
            out.writelines(kept)
            shutil.copyfileobj(f, out, _COPY_CHUNK)
    return sender, rcpts, copy
