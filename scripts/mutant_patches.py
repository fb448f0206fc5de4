#!/usr/bin/env python3
"""Writes tests/mutants/NAME.patch for each mutant in tests/mutants/specs.py.

    python3 scripts/mutant_patches.py            # (re)write every patch
    python3 scripts/mutant_patches.py --check    # exit 1 if one is stale

Each spec's edits are applied to the current text of their files and the
difference is written as a unified diff with one line of context, under
the header scripts/mutants.py reads.  Little context lets a patch apply
after unrelated changes nearby; when an edit's `old` text is gone or is
no longer unique, this says so, and the spec needs a new one.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "tests" / "mutants"
CONTEXT = 1


def load_specs() -> list:
    spec = importlib.util.spec_from_file_location("specs", MUTANTS / "specs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["specs"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.SPECS


def render(spec) -> str:
    """The patch file's text: the header, then one diff per file edited."""
    header = [f"Breaks: {spec.breaks}", f"Tests: {' '.join(spec.tests)}"]
    if spec.build != "full":
        header.append(f"Build: {spec.build}")
    texts: dict[str, str] = {}
    for edit in spec.edits:
        if edit.path not in texts:
            texts[edit.path] = (ROOT / edit.path).read_text()
        count = texts[edit.path].count(edit.old)
        if count != 1:
            raise SystemExit(
                f"{spec.name}: {edit.path} holds the old text {count} times, "
                f"not once:\n{edit.old}"
            )
        texts[edit.path] = texts[edit.path].replace(edit.old, edit.new)
    diffs = []
    for path, new in texts.items():
        old = (ROOT / path).read_text()
        diffs += difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            f"a/{path}",
            f"b/{path}",
            n=CONTEXT,
        )
    return "\n".join(header) + "\n\n" + "".join(diffs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="write nothing")
    args = ap.parse_args(argv)
    stale = 0
    for spec in load_specs():
        path = MUTANTS / f"{spec.name}.patch"
        text = render(spec)
        if path.exists() and path.read_text() == text:
            continue
        stale += 1
        if args.check:
            print(f"stale: {path.relative_to(ROOT)}")
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
