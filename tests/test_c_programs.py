"""The C-level test programs, built with the Makefile and run without Python.

Each program links the library built from csrc/ by make (not the Python
package's copy); unit_*.c programs link its objects to reach internal
functions.  Each prints "N passed, N failed".
"""

from __future__ import annotations

import subprocess

import pytest

from driver import ROOT

PROGRAMS = sorted(
    p.stem
    for pattern in ("test_*.c", "unit_*.c")
    for p in (ROOT / "tests" / "c").glob(pattern)
)


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
