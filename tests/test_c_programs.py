"""The C-level test programs, built with the Makefile and run without Python.

Each program links the library built from csrc/ by make (not the Python
package's copy); unit_*.c programs link its objects to reach internal
functions.  Each prints "N passed, N failed".
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = pathlib.Path(os.environ.get("SMTPSTATE_C_BUILD", ROOT / "build" / "c"))
PROGRAMS = sorted(
    p.stem
    for pattern in ("test_*.c", "unit_*.c")
    for p in (ROOT / "tests" / "c").glob(pattern)
)


@pytest.fixture(scope="session")
def c_build() -> pathlib.Path:
    subprocess.run(
        ["make", "-s", "-C", str(ROOT), f"BUILD={BUILD}", "all"],
        check=True,
        timeout=600,
    )
    return BUILD


@pytest.mark.parametrize("program", PROGRAMS)
def test_c_program_passes(program, c_build):
    out = subprocess.run(
        [str(c_build / "tests" / program)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    last = out.stdout.strip().splitlines()[-1]
    passed, failed = (int(part.split()[0]) for part in last.split(","))
    assert failed == 0 and passed > 0, out.stdout + out.stderr
