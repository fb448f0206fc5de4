"""The mutants under tests/mutants/ are well formed and cover the hostile
suite: every case of tests/test_hostile.py is named by a mutant that must
make it fail, unless it is listed in UNGUARDED with the reason.

This checks the headers only; scripts/mutants.py applies the patches and
runs the tests (CI runs it).
"""

from __future__ import annotations

import importlib.util
import re
import sys

import pytest
import test_hostile

from driver import ROOT

# Cases no single mutant can make fail, and why.
UNGUARDED = {}


def load_runner():
    path = ROOT / "scripts" / "mutants.py"
    spec = importlib.util.spec_from_file_location("mutants_runner", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutants_runner"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


MUTANTS = load_runner().all_mutants()
HOSTILE = "tests/test_hostile.py::"


def named_cases(test: str) -> set[str]:
    """The hostile cases whose tests the mutants name under `test`."""
    prefix = f"{HOSTILE}{test}["
    return {
        named[len(prefix) : -1]
        for m in MUTANTS
        for named in m.tests
        if named.startswith(prefix)
    }


def test_there_are_mutants():
    assert len(MUTANTS) >= 30


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_names_tests_that_exist(mutant):
    assert "\n--- a/" in mutant.path.read_text(), "no diff after the header"
    for named in mutant.tests:
        path, _, rest = named.partition("::")
        assert (ROOT / path).is_file(), named
        if not rest:
            continue
        function = rest.split("[")[0].split("::")[-1]
        source = (ROOT / path).read_text()
        assert re.search(rf"^def {function}\(", source, re.M), named


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_c_only_build_names_no_python_level_hostile_test(mutant):
    if mutant.build == "c":
        assert not any(
            t.startswith(f"{HOSTILE}test_hostile_server_through_python")
            for t in mutant.tests
        ), "the installed, unpatched package would run these: use Build full"


def test_named_hostile_cases_exist():
    driver = named_cases("test_hostile_server_through_the_c_driver")
    python = named_cases("test_hostile_server_through_python")
    assert driver <= {c.name for c in test_hostile.CASES}
    assert python <= {c.name for c in test_hostile.PYTHON_CASES}


def test_every_hostile_case_has_a_mutant():
    named = named_cases("test_hostile_server_through_the_c_driver") | named_cases(
        "test_hostile_server_through_python"
    )
    cases = {c.name for c in test_hostile.CASES}
    assert set(UNGUARDED) <= cases
    assert sorted(cases - named - set(UNGUARDED)) == []
    assert sorted(named & set(UNGUARDED)) == [], "guarded now: drop from UNGUARDED"
