"""How often apachews' patch engine and GNU patch agree, on real patches and real trees (a figure, not a test).

    APACHEWS_HTTPD_GIT=/path/to/httpd.git python benchmarks/patch_agreement.py [--full] [--json FILE]

The cases are those of tests/test_patch_differential.py (tests/patch_differential.py builds them from
the git repository at run time: diffs between neighbouring release tags applied to the releases around
them, this project's series, CRLF variants, re-applied diffs). Printed:
- placement: apachews without its already-applied check vs `patch -f`, per hunk (applies or not, same
  line and offset, same fuzz) and per file (same bytes);
- behaviour: apachews as users get it vs `patch -N`, per hunk, with every disagreement and its reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import patch_differential as differential  # noqa: E402


def percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.2f}%" if whole else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="every pair of neighbouring releases (minutes)")
    parser.add_argument("--json", type=Path, help="also write the figures and disagreements here")
    args = parser.parse_args()
    location = os.environ.get("APACHEWS_HTTPD_GIT")
    if not location:
        parser.error("set APACHEWS_HTTPD_GIT to an apache/httpd git clone (or bare git dir)")
    if differential.gnu_patch() is None:
        parser.error("GNU patch is not installed (apt-get install patch)")
    started = time.monotonic()
    cases = differential.build_cases(Path(location), full=args.full)
    outcomes = [differential.compare(case) for case in cases]
    seconds = time.monotonic() - started
    figures = differential.agreement(outcomes)
    hunks = int(figures["hunks"])  # type: ignore[arg-type]
    print(f"cases (one file of one patch on one release): {figures['cases']}, hunks: {hunks}, {seconds:.1f} s")
    print("placement vs `patch -f`:")
    print(f"  hunks agreeing (verdict, line, offset, fuzz): {figures['placement_agree']}/{hunks} "
          f"= {percent(figures['placement_agree'], hunks)}")  # type: ignore[arg-type]  # fmt: skip
    print(f"  same line and offset: {percent(figures['placement_same_line'], hunks)}, "
          f"same fuzz: {percent(figures['placement_same_fuzz'], hunks)}")  # type: ignore[arg-type]  # fmt: skip
    compared = int(figures["files_bytes_compared"])  # type: ignore[arg-type]
    print(f"  files with the same resulting bytes: {figures['files_same_bytes']}/{compared} "
          f"= {percent(figures['files_same_bytes'], compared)}")  # type: ignore[arg-type]  # fmt: skip
    rebased = int(figures["rebased"])  # type: ignore[arg-type]
    print(f"rebase: patches rebased onto the tree that GNU patch then applies at zero offset and fuzz, with the "
          f"same bytes: {figures['rebased_exact']}/{rebased} = {percent(figures['rebased_exact'], rebased)}")  # type: ignore[arg-type]  # fmt: skip
    for text in figures["rebase_failures"]:  # type: ignore[union-attr]
        print(f"  {text}")
    print("behaviour vs `patch -N` (already-applied detection):")
    print(f"  hunks agreeing: {figures['behaviour_agree']}/{hunks} = {percent(figures['behaviour_agree'], hunks)}; "
          f"differing by design: {figures['behaviour_justified']}; "
          f"differing WITHOUT a reason: {figures['behaviour_unjustified']}")  # type: ignore[arg-type]  # fmt: skip
    print("by kind (hunks / placement agree / behaviour agree):")
    for kind, tally in figures["by_kind"].items():  # type: ignore[union-attr]
        print(f"  {kind:<11} {tally['hunks']:>6} {tally['placement_agree']:>6} {tally['behaviour_agree']:>6}")
    disagreements = figures["disagreements"]
    print(f"disagreements ({len(disagreements)} cases):")  # type: ignore[arg-type]
    for text in disagreements:  # type: ignore[union-attr]
        print(text)
    if args.json:
        args.json.write_text(json.dumps({**figures, "seconds": round(seconds, 1)}, indent=2))
    exact = figures["placement_agree"] == hunks and figures["rebased_exact"] == rebased
    return 0 if exact and figures["behaviour_unjustified"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
