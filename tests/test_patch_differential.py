"""apachews' patch engine against GNU patch, case by case, on real patches and real trees.

The cases and the comparison are in tests/patch_differential.py. Each case is a test: the placement must
match `patch -f` exactly (per hunk: applies or not, line, offset, fuzz; per file: the bytes, the mode of a
created file), and what users get must match `patch -N` or differ only for a documented reason.

By default a representative subset runs (about 130 cases, seconds). The full run (every pair of
neighbouring 2.2 / 2.4 releases, six directories, the series on every release; several minutes):

    APACHEWS_PATCH_DIFF=full .venv/bin/pytest -q tests/test_patch_differential.py

The agreement figures: `python benchmarks/patch_agreement.py [--full]`.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest

from tests import patch_differential as differential


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    location = os.environ.get("APACHEWS_HTTPD_GIT")
    if not location:
        reason = "set APACHEWS_HTTPD_GIT to an apache/httpd git clone to compare with GNU patch on real history"
        metafunc.parametrize("case", [pytest.param(None, marks=pytest.mark.skip(reason=reason))], ids=["no-git"])
        return
    full = os.environ.get("APACHEWS_PATCH_DIFF") == "full"
    cases = differential.build_cases(Path(location), full=full)
    metafunc.parametrize("case", cases, ids=[case.name for case in cases])


@pytest.fixture(autouse=True)
def gnu_patch() -> str:
    found = differential.gnu_patch()
    if found is None:
        pytest.skip("GNU patch is not installed (apt-get install patch; scripts/install-host-deps.sh does it)")
    return found


@cache
def _compared(case: differential.Case) -> differential.Outcome:
    return differential.compare(case)


def test_placement_matches_gnu_patch(case: differential.Case) -> None:
    outcome = _compared(case)
    assert outcome.placement_agrees, outcome.explain()


def test_behaviour_matches_gnu_patch_or_differs_by_design(case: differential.Case) -> None:
    outcome = _compared(case)
    assert not outcome.unjustified, outcome.explain()


def test_a_rebased_patch_is_exact_for_gnu_patch(case: differential.Case) -> None:
    outcome = _compared(case)
    if outcome.rebase is None:
        pytest.skip("some hunk does not apply here: nothing to rebase without a base tree")
    assert outcome.rebase == "", outcome.rebase
