"""``sendmail -t``: the envelope from a message's header fields.

The recipients come from To, Cc and Bcc, the sender from Return-Path,
else Sender, else a single From; the Bcc fields are removed from the
bytes, which are otherwise sent as they are.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Sequence
from email.parser import BytesHeaderParser
from email.policy import compat32


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


def _without_bcc(data: bytes) -> bytes:
    """The message with its Bcc header fields (and their continuation
    lines) removed; every other byte is kept."""
    lines, rest = _header_lines(data)
    kept: list[bytes] = []
    dropping = False
    for line in lines:
        if line[:1] in (b" ", b"\t") and dropping:
            continue
        dropping = line[:4].lower() == b"bcc:"
        if not dropping:
            kept.append(line)
    return b"".join(kept) + rest


def _addresses(values: Sequence[str]) -> list[str]:
    return [addr for _, addr in email.utils.getaddresses(list(values)) if addr]


def from_headers(data: bytes) -> tuple[str, list[str], bytes]:
    """``sendmail -t``: (sender, recipients, bytes without Bcc)."""
    lines, _ = _header_lines(data)
    fields = BytesHeaderParser(policy=compat32).parsebytes(b"".join(lines) + b"\n\n")
    rcpts = _addresses(fields.get_all("To", []) + fields.get_all("Cc", [])
                       + fields.get_all("Bcc", []))  # fmt: skip
    if not rcpts:
        raise EnvelopeError("no recipients in To, Cc or Bcc")
    return_path = fields.get_all("Return-Path", [])
    senders = fields.get_all("Sender", [])
    froms = _addresses(fields.get_all("From", []))
    if len(return_path) > 1 or len(senders) > 1:
        raise EnvelopeError("more than one Return-Path or Sender field")
    if return_path:
        sender = email.utils.parseaddr(return_path[0])[1]
    elif senders:
        sender = email.utils.parseaddr(senders[0])[1]
    elif len(froms) == 1:
        sender = froms[0]
    elif not froms:
        raise EnvelopeError("no sender: no Return-Path, Sender or From")
    else:
        raise EnvelopeError(
            f"the sender is ambiguous ({len(froms)} From addresses and "
            "no Sender or Return-Path)"
        )
    return sender, list(dict.fromkeys(rcpts)), _without_bcc(data)
