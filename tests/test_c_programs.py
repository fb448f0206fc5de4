"""The C-level test programs, built with the Makefile and run without Python.

Each program links the library built from csrc/ by make (not the Python
package's copy); unit_*.c programs link its objects to reach internal
functions.  Each prints "N passed, N failed".
"""

from __future__ import annotations

import subprocess

import pytest

from driver import ROOT, SANITIZERS

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


def test_readme_c_example_compiles_and_delivers(
    c_build, scripted_server_factory, tmp_path
):
    # A new user copies the README's C block as it is: it must build with
    # the house warnings and deliver, not be a fragment.
    readme = (ROOT / "README.md").read_text()
    start = readme.index("```c\n", readme.index("\n## C\n")) + len("```c\n")
    source = readme[start : readme.index("```", start)]
    assert "int main(" in source
    server = scripted_server_factory()
    assert ".port = 2525}" in source
    program = tmp_path / "readme.c"
    program.write_text(source.replace(".port = 2525}", f".port = {server.port}}}"))
    binary = tmp_path / "readme"
    subprocess.run(
        [
            "cc",
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{ROOT / 'include'}",
            # Built as the library under test was: a program without the
            # sanitizers' runtime cannot load an instrumented library.
            *([f"-fsanitize={SANITIZERS}"] if SANITIZERS else []),
            str(program),
            f"-L{c_build}",
            "-lsmtpstate",
            f"-Wl,-rpath,{c_build}",
            "-o",
            str(binary),
        ],
        check=True,
        timeout=120,
    )
    out = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("bob@example.org 250 "), out.stdout
    (received,) = server.wait_for_messages(1)
    assert received.data.endswith(b"Hello.\r\n")
