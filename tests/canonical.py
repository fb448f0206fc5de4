"""The body on the wire, written plainly as the test oracle (DESIGN 9).

Independent of the C encoder: a reference for what a server receives after
the 354 and what it stores after un-stuffing.  Every bare CR and every bare
LF becomes CRLF before dot-stuffing, so no ``<LF>.<LF>`` or ``<CR>.<CR>``
can end a message early.  Folding is not modelled: the default sends long
lines unchanged.
"""

from __future__ import annotations

import re

__all__ = ["canonical_body", "wire_body"]

# Alternatives are tried left to right, so CR LF is one line end, not two.
_LINE_END = re.compile(rb"\r\n|\r|\n")


def canonical_body(data: bytes) -> bytes:
    """Returns the body as a server stores it, after un-stuffing.

    CR LF, bare CR and bare LF each become CRLF, and CRLF is added when the
    body does not end with one.  An empty body stays empty.
    """
    if not data:
        return b""
    text = _LINE_END.sub(b"\r\n", data)
    if not text.endswith(b"\r\n"):
        text += b"\r\n"
    return text


def wire_body(data: bytes) -> bytes:
    """Returns the exact bytes sent after the 354 reply.

    The canonical form with a second "." before each line that starts with
    ".", then the terminator ``.\\r\\n``; an empty body is ``.\\r\\n`` alone.
    """
    lines = canonical_body(data).split(b"\r\n")[:-1]
    stuffed = [b"." + line if line.startswith(b".") else line for line in lines]
    return b"".join(line + b"\r\n" for line in stuffed) + b".\r\n"
