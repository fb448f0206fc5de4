"""The test oracle in tests/canonical.py, against hand-written bodies."""

from __future__ import annotations

import pytest

from canonical import canonical_body, wire_body

# (label, body, canonical form, wire bytes)
CASES = [
    ("empty body", b"", b"", b".\r\n"),
    ("only CR", b"\r", b"\r\n", b"\r\n.\r\n"),
    ("only LF", b"\n", b"\r\n", b"\r\n.\r\n"),
    ("only CRLF", b"\r\n", b"\r\n", b"\r\n.\r\n"),
    ("only dot", b".", b".\r\n", b"..\r\n.\r\n"),
    ("lone dot line", b"a\r\n.\r\nb\r\n", b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
    (
        "dot-leading lines",
        b".a\r\nb.\r\n.b.\r\n",
        b".a\r\nb.\r\n.b.\r\n",
        b"..a\r\nb.\r\n..b.\r\n.\r\n",
    ),
    ("double-dot lines", b"..\r\n..x", b"..\r\n..x\r\n", b"...\r\n...x\r\n.\r\n"),
    ("bare CR", b"a\rb\r", b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
    ("bare LF", b"a\nb\n", b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
    ("CR CR LF", b"a\r\r\nb", b"a\r\n\r\nb\r\n", b"a\r\n\r\nb\r\n.\r\n"),
    ("LF CR", b"a\n\rb", b"a\r\n\r\nb\r\n", b"a\r\n\r\nb\r\n.\r\n"),
    ("LF CR at end", b"\n\r", b"\r\n\r\n", b"\r\n\r\n.\r\n"),
    (
        "mixed line ends",
        b"a\r\nb\nc\rd\r\n\n\re",
        b"a\r\nb\r\nc\r\nd\r\n\r\n\r\ne\r\n",
        b"a\r\nb\r\nc\r\nd\r\n\r\n\r\ne\r\n.\r\n",
    ),
    ("no final newline", b"a\r\nlast", b"a\r\nlast\r\n", b"a\r\nlast\r\n.\r\n"),
    (
        "LF dot LF smuggling",
        b"a\n.\nMAIL FROM:<x>\n",
        b"a\r\n.\r\nMAIL FROM:<x>\r\n",
        b"a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n",
    ),
    ("CR dot CR smuggling", b"a\r.\rb", b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
    ("dot after bare CR", b"\r.", b"\r\n.\r\n", b"\r\n..\r\n.\r\n"),
    ("dot inside a line", b"a.b\r\n", b"a.b\r\n", b"a.b\r\n.\r\n"),
    (
        "NUL and high octets",
        b"\0\xff\n\x80.",
        b"\0\xff\r\n\x80.\r\n",
        b"\0\xff\r\n\x80.\r\n.\r\n",
    ),
    ("998-octet line", b"x" * 998, b"x" * 998 + b"\r\n", b"x" * 998 + b"\r\n.\r\n"),
    (
        "100 KiB line unchanged",
        b"y" * 102400,
        b"y" * 102400 + b"\r\n",
        b"y" * 102400 + b"\r\n.\r\n",
    ),
]


@pytest.mark.parametrize(
    ("body", "canonical"),
    [(body, canonical) for _, body, canonical, _ in CASES],
    ids=[label for label, *_ in CASES],
)
def test_canonical_body_matches_hand_written(body: bytes, canonical: bytes) -> None:
    assert canonical_body(body) == canonical


@pytest.mark.parametrize(
    ("body", "wire"),
    [(body, wire) for _, body, _, wire in CASES],
    ids=[label for label, *_ in CASES],
)
def test_wire_body_matches_hand_written(body: bytes, wire: bytes) -> None:
    assert wire_body(body) == wire


@pytest.mark.parametrize(
    "body", [body for _, body, _, _ in CASES], ids=[label for label, *_ in CASES]
)
def test_canonical_body_is_idempotent(body: bytes) -> None:
    once = canonical_body(body)
    assert canonical_body(once) == once


@pytest.mark.parametrize(
    "body", [body for _, body, _, _ in CASES], ids=[label for label, *_ in CASES]
)
def test_wire_body_unstuffed_gives_canonical(body: bytes) -> None:
    wire = wire_body(body)
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    lines = wire[: -len(b".\r\n")].split(b"\r\n")[:-1]
    unstuffed = [line[1:] if line.startswith(b".") else line for line in lines]
    assert b"".join(line + b"\r\n" for line in unstuffed) == canonical_body(body)
