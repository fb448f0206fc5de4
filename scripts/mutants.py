#!/usr/bin/env python3
"""Mutation checks: each patch under tests/mutants/ breaks one behaviour on
purpose, and every test it names must then fail.

    python3 scripts/mutants.py               # every mutant
    python3 scripts/mutants.py NAME ...      # only these (file stems)
    python3 scripts/mutants.py --jobs 2      # two scratch copies at a time

A mutant file is a unified diff (``patch -p1``) preceded by a header:

    Breaks: what the patch breaks, in one line
    Tests: tests/test_x.py::test_name tests/test_y.py::test_other[param]
    Build: c

``Build`` is optional: ``full`` (the default) or ``c``.

For each mutant the script copies the working tree (tracked and untracked
files that git does not ignore) into a scratch folder, applies the patch
and builds the C library, driver and C test programs there with make.
With ``Build: full`` it also installs the package into a scratch ``site``
folder that is put first on PYTHONPATH.  ``Build: c`` skips that pip build
(the slow part): it is for mutants whose tests reach the engine only
through the C driver or the C test programs, and anything those tests
import from Python comes from the package already installed for the
interpreter running this script, unpatched.  A Python-level test named by
such a mutant would run the unpatched engine and pass, so the mutant would
survive: name those tests under ``Build: full``.

Then it runs each named test with pytest, in a process of its own (so a
test fails on its own, not on what an earlier failure left behind) and
with -x.  The mutant is *caught* when each named test fails: every node
id on the Tests line (a file, a test function or one parametrized case)
has a failed test under it.  It *survives* when one of them passes
instead, and is an *error* when the patch does not apply, the build
fails, a named id runs nothing, or pytest ends any other way (no such
test, a collection error, an error in a fixture).  Anything but caught
fails the run (exit 1).  The unpatched tree must pass the same tests:
the normal suite proves that, and ``--baseline`` checks it here too.

scripts/mutant_patches.py writes most patches from a spec of text
replacements (tests/mutants/specs.py); regenerate them there when the code
they patch changes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "tests" / "mutants"
BUILDS = ("full", "c")
# pytest -rA's summary: one line per test, "PASSED tests/x.py::test[a]".
RESULT = re.compile(r"^(PASSED|FAILED|ERROR|XFAIL|XPASS) (\S+)")


@dataclass(frozen=True)
class Mutant:
    """One patch and the tests that must catch it."""

    name: str
    path: pathlib.Path
    breaks: str
    tests: tuple[str, ...]
    build: str = "full"


@dataclass(frozen=True)
class Verdict:
    mutant: Mutant
    status: str  # caught, survived, error (passed, for the baseline)
    detail: str
    seconds: float


def load(path: pathlib.Path) -> Mutant:
    """Reads a mutant's header; refuses one without Breaks or Tests."""
    breaks = ""
    build = "full"
    tests: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith(("--- ", "diff ")):
            break
        if line.startswith("Breaks:"):
            breaks = line.partition(":")[2].strip()
        elif line.startswith("Tests:"):
            tests += line.partition(":")[2].split()
        elif line.startswith("Build:"):
            build = line.partition(":")[2].strip()
    if not breaks or not tests:
        raise SystemExit(f"{path}: needs a 'Breaks:' and a 'Tests:' line")
    if build not in BUILDS:
        raise SystemExit(f"{path}: 'Build:' is one of {', '.join(BUILDS)}")
    return Mutant(path.stem, path, breaks, tuple(tests), build)


def tree_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return [f for f in out.stdout.decode().split("\0") if f]


def copy_tree(files: list[str], dest: pathlib.Path) -> None:
    for rel in files:
        src = ROOT / rel
        if not src.is_file():
            continue  # deleted in the work tree but still in the index
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def run(cmd: list[str], cwd: pathlib.Path, env: dict[str, str], timeout: float):
    return subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
    )


def under(named: str, nodeid: str) -> bool:
    """Whether the test `nodeid` is one that the id `named` selects."""
    return nodeid == named or nodeid.startswith((named + "::", named + "["))


def judge(named: str, returncode: int, output: str) -> str:
    """One named id's run: caught when a test under it failed, survived
    when its tests passed, else error (a fixture's error, nothing run)."""
    results = [m.groups() for m in map(RESULT.match, output.splitlines()) if m]
    mine = {outcome for outcome, nodeid in results if under(named, nodeid)}
    if returncode == 1 and "FAILED" in mine:
        return "caught"
    if returncode == 0 and mine and mine <= {"PASSED", "XPASS"}:
        return "survived"
    return "error"


def check(mutant: Mutant | None, files: list[str], keep: bool) -> Verdict:
    """Builds a scratch copy with the patch applied and runs its tests;
    with mutant None, runs the baseline (every named test, unpatched)."""
    started = time.monotonic()
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="smtpstate-mutant-"))
    name = mutant.name if mutant else "baseline"
    every = (t for m in all_mutants() for t in m.tests)
    tests = mutant.tests if mutant else tuple(dict.fromkeys(every))
    build = mutant.build if mutant else "full"

    def verdict(status: str, detail: str) -> Verdict:
        seconds = time.monotonic() - started
        return Verdict(mutant or Mutant(name, ROOT, "", tests), status, detail, seconds)

    try:
        copy_tree(files, scratch)
        env = dict(os.environ)
        env.pop("SMTPSTATE_C_BUILD", None)
        env.pop("SMTPSTATE_SAN", None)
        if mutant is not None:
            applied = run(
                ["patch", "-p1", "--batch", "--forward", "-i", str(mutant.path)],
                scratch,
                env,
                60,
            )
            if applied.returncode != 0:
                return verdict("error", "patch failed:\n" + applied.stdout)
        # The same build as tests/driver.py's, so its fixture finds it done;
        # here a build failure is the mutant's error, not a failed test.
        made = run(
            ["make", "-s", f"BUILD={scratch / 'build' / 'c'}", "SAN=", "all"],
            scratch,
            env,
            600,
        )
        if made.returncode != 0:
            return verdict("error", "make failed:\n" + made.stderr[-3000:])
        paths = [str(scratch / "tests")]
        if build == "full":
            site = scratch / "site"
            built = run(
                [sys.executable, "-m", "pip", "install", "-q", "--no-deps"]
                + ["--target", str(site), "."],
                scratch,
                env | {"SMTPSTATE_WERROR": "1"},
                600,
            )
            if built.returncode != 0:
                return verdict("error", "build failed:\n" + built.stderr[-3000:])
            paths.insert(0, str(site))
        env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")])
        # One pytest run per named id, so each fails on its own and not
        # on what an earlier failure left behind (a state it registered);
        # -x: the first failure under an id decides it.
        pytest = [sys.executable, "-m", "pytest", "-q", "-rA", "-x"]
        pytest += ["-p", "no:cacheprovider", "-o", "addopts="]
        status, tail = "caught", ""
        batches = [[named] for named in tests] if mutant else [list(tests)]
        for batch in batches:
            tested = run(pytest + batch, scratch, env, 900)
            tail = "\n".join(tested.stdout.strip().splitlines()[-15:])
            if mutant is None:
                status = "passed" if tested.returncode == 0 else "error"
                break
            (named,) = batch
            status = judge(named, tested.returncode, tested.stdout)
            if status != "caught":
                tail = f"{named}: {status}\n{tail}"
                break
        return verdict(status, tail)
    except subprocess.TimeoutExpired as exc:
        return verdict("error", f"timed out: {exc.cmd}")
    finally:
        if keep:
            print(f"  kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def all_mutants() -> list[Mutant]:
    return [load(p) for p in sorted(MUTANTS.glob("*.patch"))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="mutant file stems (default: all)")
    ap.add_argument("--jobs", type=int, default=2, help="scratch copies at once")
    ap.add_argument("--baseline", action="store_true", help="also run unpatched")
    ap.add_argument("--keep", action="store_true", help="keep scratch folders")
    ap.add_argument("--list", action="store_true", help="list mutants and exit")
    ap.add_argument("--show", action="store_true", help="print pytest's tail always")
    args = ap.parse_args(argv)

    mutants = all_mutants()
    if args.names:
        known = {m.name: m for m in mutants}
        unknown = [n for n in args.names if n not in known]
        if unknown:
            print(f"no such mutant: {', '.join(unknown)}", file=sys.stderr)
            return 64
        mutants = [known[n] for n in args.names]
    if args.list:
        for m in mutants:
            print(f"{m.name} ({m.build}): {m.breaks}")
        return 0
    if not mutants:
        print(f"no mutants under {MUTANTS}", file=sys.stderr)
        return 1

    files = tree_files()
    jobs: list[Mutant | None] = ([None] if args.baseline else []) + list(mutants)
    # Full builds first: pip is the slow part, and one left last runs alone.
    jobs.sort(key=lambda m: m is not None and m.build != "full")
    print(f"mutants: {len(mutants)}, {args.jobs} at a time", flush=True)
    started = time.monotonic()
    bad = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(check, m, files, args.keep) for m in jobs]
        for future in concurrent.futures.as_completed(futures):
            v = future.result()
            ok = v.status in ("caught", "passed")
            bad += not ok
            print(
                f"{v.status:8} {v.mutant.name} ({v.seconds:.0f} s): {v.mutant.breaks}"
            )
            if not ok or args.show:
                print("    " + v.detail.replace("\n", "\n    "), flush=True)
    took = f"in {time.monotonic() - started:.0f} s"
    print(
        f"mutants: {len(mutants)} checked, {bad} not caught {took}"
        if bad
        else f"mutants: all {len(mutants)} caught {took}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
