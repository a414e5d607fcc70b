"""The patch engine on real Apache trees: check, atomic apply, reverse, rebase (incl. 3-way merge).

Test patches are made here, with `diff -u`, from edited copies of the real httpd 2.4 tree (and 2.2 trees
from git when APACHEWS_HTTPD_GIT is set), so no Apache code is committed beyond what a diff carries.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from apachews import catalogue, patches
from apachews.cli import main
from apachews.errors import BadInput, JobFailed

TARGET = "modules/proxy/proxy_util.c"


def tree_hash(tree: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in tree.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(tree)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def make_patch(tree: Path, out: Path, edits: dict[str, list[tuple[int, str]]], name: str = "t.patch") -> Path:
    """A real `diff -u` patch of `tree` with lines inserted after the given (1-based) line numbers."""
    scratch = out / "scratch"
    if scratch.exists():
        shutil.rmtree(scratch)
    for relative, inserts in edits.items():
        (scratch / "a" / relative).parent.mkdir(parents=True, exist_ok=True)
        (scratch / "b" / relative).parent.mkdir(parents=True, exist_ok=True)
        original = (tree / relative).read_text().splitlines(keepends=True)
        shutil.copy(tree / relative, scratch / "a" / relative)
        changed = list(original)
        for line_no, text in sorted(inserts, reverse=True):
            changed.insert(line_no, text + "\n")
        (scratch / "b" / relative).write_text("".join(changed))
    diff = subprocess.run(["diff", "-ruN", "a", "b"], cwd=scratch, capture_output=True, text=True).stdout
    patch = out / name
    patch.write_text("A test patch made by tests/test_patches.py\n\n" + diff)
    return patch


def distinctive(tree: Path, relative: str, near: int) -> int:
    """A line number at or after `near` whose 8-line neighbourhood occurs once in the file, so a wrecked
    context cannot be found elsewhere by the offset search."""
    lines = (tree / relative).read_text().splitlines()
    for at in range(near, len(lines) - 8):
        window = lines[at - 4 : at + 4]
        if all(line.strip() and len(line.strip()) > 12 for line in window):
            text = "\n".join(window)
            if "\n".join(lines).count(text) == 1 and all(lines.count(line) == 1 for line in window):
                return at
    raise AssertionError("no distinctive place found")


def insert_lines(tree: Path, relative: str, at: int, count: int) -> None:
    lines = (tree / relative).read_text().splitlines(keepends=True)
    lines[at:at] = [f"/* shifted {i} */\n" for i in range(count)]
    (tree / relative).write_text("".join(lines))


@pytest.fixture
def two_hunks(tmp_path: Path, httpd24_pristine: Path) -> Path:
    return make_patch(
        httpd24_pristine, tmp_path, {TARGET: [(200, "/* apachews test A */"), (900, "/* apachews test B */")]}
    )


def test_clean_check_and_apply_and_reverse(two_hunks: Path, httpd24_tree: Path) -> None:
    before = tree_hash(httpd24_tree)
    report = patches.check(patches.load_patches([two_hunks]), httpd24_tree)
    assert report.status == "applies" and report.summary() == "clean (2 hunks)"
    assert report.patches[0].strip == 1
    assert tree_hash(httpd24_tree) == before
    applied = patches.apply(patches.load_patches([two_hunks]), httpd24_tree)
    assert applied.written == [TARGET] and "apachews test B" in (httpd24_tree / TARGET).read_text()
    again = patches.apply(patches.load_patches([two_hunks]), httpd24_tree)
    assert again.status == "already-applied" and again.written == []
    patches.apply(patches.load_patches([two_hunks]), httpd24_tree, reverse=True)
    assert tree_hash(httpd24_tree) == before


def test_offset_and_fuzz_are_reported(two_hunks: Path, httpd24_tree: Path) -> None:
    insert_lines(httpd24_tree, TARGET, 10, 7)
    lines = (httpd24_tree / TARGET).read_text().splitlines(keepends=True)
    lines[898 + 7 - 1] = "/* a context line that changed */\n"  # hunk B's outermost context line above
    (httpd24_tree / TARGET).write_text("".join(lines))
    report = patches.check(patches.load_patches([two_hunks]), httpd24_tree)
    hunks = report.patches[0].files[0].hunks
    assert [h.status for h in hunks] == ["offset", "fuzz"]
    assert hunks[0].offset == 7 and hunks[1].offset == 7 and hunks[1].fuzz >= 1


def test_apply_is_atomic_when_the_last_hunk_fails(tmp_path: Path, httpd24_pristine: Path, httpd24_tree: Path) -> None:
    first = make_patch(httpd24_pristine, tmp_path, {"modules/proxy/mod_proxy.c": [(50, "/* ok */")]}, "1.patch")
    last = distinctive(httpd24_pristine, TARGET, 700)
    second = make_patch(httpd24_pristine, tmp_path, {TARGET: [(10, "/* a */"), (last, "/* b */")]}, "2.patch")
    lines = (httpd24_tree / TARGET).read_text().splitlines(keepends=True)
    for index in range(last - 6, last + 6):  # wreck the context of the last hunk beyond any fuzz
        lines[index] = f"/* rewritten {index} */\n"
    (httpd24_tree / TARGET).write_text("".join(lines))
    before = tree_hash(httpd24_tree)
    report = patches.apply(patches.load_patches([first, second]), httpd24_tree)
    assert report.status == "fails" and report.written == []
    failed = report.patches[1].files[0].hunks[1]
    assert failed.status == "failed" and "context not found" in failed.detail
    assert tree_hash(httpd24_tree) == before


def test_rebase_gives_a_patch_with_zero_offset(two_hunks: Path, httpd24_tree: Path, tmp_path: Path) -> None:
    insert_lines(httpd24_tree, TARGET, 10, 12)
    out = tmp_path / "rebased.patch"
    result = patches.rebase(two_hunks, httpd24_tree, out)
    assert result.ok and any(h["offset"] == 12 for h in result.to_dict()["moved"])
    assert out.read_text().startswith("A test patch made by tests/test_patches.py")
    recheck = patches.check(patches.load_patches([out]), httpd24_tree)
    assert recheck.summary() == "clean (2 hunks)"


def test_three_way_merge_when_hunks_fail(tmp_path: Path, httpd24_pristine: Path, httpd24_tree: Path) -> None:
    at = distinctive(httpd24_pristine, TARGET, 400)
    patch = make_patch(httpd24_pristine, tmp_path, {TARGET: [(at, "/* apachews merged line */")]})
    lines = (httpd24_tree / TARGET).read_text().splitlines(keepends=True)
    # The second context line on each side changed: fuzz 1 cannot place the hunk, a 3-way merge can.
    for line_no in (at - 1, at + 2):
        lines[line_no - 1] = lines[line_no - 1].rstrip("\n") + " /* target edit */\n"
    (httpd24_tree / TARGET).write_text("".join(lines))
    assert patches.check(patches.load_patches([patch]), httpd24_tree, fuzz=1).status == "fails"
    out = tmp_path / "merged.patch"
    with pytest.raises(JobFailed):
        patches.rebase(patch, httpd24_tree, tmp_path / "nobase.patch", fuzz=1)
    result = patches.rebase(patch, httpd24_tree, out, base_tree=httpd24_pristine, fuzz=1)
    assert result.ok and result.merged == [TARGET]
    applied = patches.apply(patches.load_patches([out]), httpd24_tree)
    assert applied.summary().startswith("clean") and "apachews merged line" in (httpd24_tree / TARGET).read_text()


def test_three_way_conflict_is_reported_with_files(tmp_path: Path, httpd24_pristine: Path, httpd24_tree: Path) -> None:
    base_lines = (httpd24_pristine / TARGET).read_text().splitlines(keepends=True)
    scratch = tmp_path / "edited"
    shutil.copytree(httpd24_pristine / "modules", scratch / "modules")
    edited = list(base_lines)
    edited[399] = "/* patch rewrote this line */\n"
    (scratch / TARGET).write_text("".join(edited))
    diff = subprocess.run(
        ["diff", "-u", "--label", f"a/{TARGET}", "--label", f"b/{TARGET}", httpd24_pristine / TARGET, scratch / TARGET],
        capture_output=True,
        text=True,
    ).stdout
    patch = tmp_path / "conflict.patch"
    patch.write_text(diff)
    target_lines = list(base_lines)
    for index in range(395, 405):
        target_lines[index] = f"/* target rewrote {index} */\n"
    (httpd24_tree / TARGET).write_text("".join(target_lines))
    out = tmp_path / "out.patch"
    result = CliRunner().invoke(
        main,
        [
            "patch",
            "rebase",
            "--patch",
            str(patch),
            "--source-dir",
            str(httpd24_tree),
            "-o",
            str(out),
            "--base-source",
            str(httpd24_pristine),
            "--json",
        ],
    )
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["conflicts"] == [TARGET]
    assert "<<<<<<<" in (tmp_path / "out.patch.conflicts" / TARGET).read_text()


BAD = {
    "empty": "",
    "not a patch": "hello, this is prose\nnot a diff\n",
    "binary": "diff --git a/x.png b/x.png\nGIT binary patch\nliteral 3\nabc\n",
    "another project": "--- a/src/kernel/sched.c\n+++ b/src/kernel/sched.c\n@@ -1 +1 @@\n-a\n+b\n",
}


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_is_refused_and_tree_untouched(kind: str, tmp_path: Path, httpd24_tree: Path) -> None:
    patch = tmp_path / "bad.patch"
    patch.write_text(BAD[kind])
    before = tree_hash(httpd24_tree)
    result = CliRunner().invoke(
        main, ["patch", "apply", "--patch", str(patch), "--source-dir", str(httpd24_tree), "--json"]
    )
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["ok"] is False
    assert tree_hash(httpd24_tree) == before


def test_crlf_patch_and_strip_levels(tmp_path: Path, httpd24_pristine: Path, httpd24_tree: Path) -> None:
    patch = make_patch(httpd24_pristine, tmp_path, {TARGET: [(30, "/* crlf */")]})
    text = patch.read_text().replace("--- a/", "--- httpd-2.4.69.orig/").replace("+++ b/", "+++ httpd-2.4.69/")
    crlf = tmp_path / "crlf.patch"
    crlf.write_bytes(text.replace("\n", "\r\n").encode())
    report = patches.apply(patches.load_patches([crlf]), httpd24_tree)
    assert report.status == "applies" and report.patches[0].strip == 1
    assert "/* crlf */\n" in (httpd24_tree / TARGET).read_text()


def test_series_and_cli(httpd24_tree: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(main, ["patch", "list", "--json"])
    assert listed.exit_code == 0
    names = [s["series"] for s in json.loads(listed.stdout)["series"]]
    assert names == ["wstunnel-2.2", "wstunnel-2.4"]
    assert catalogue.load().get("2.2.31").series == "wstunnel-2.2"
    assert catalogue.load().get("2.4.4").series == "wstunnel-2.4"
    assert catalogue.load().get("2.4.69").series is None
    stock = runner.invoke(main, ["patch", "check", "--apache", "2.4.69", "--source-dir", str(httpd24_tree)])
    assert stock.exit_code == 2 and "stock" in stock.output


@pytest.mark.parametrize("tag", ["2.2.15", "2.2.22", "2.2.24", "2.2.31", "2.2.34", "2.4.1", "2.4.4"])
def test_backport_series_applies_cleanly_to_real_releases(git_tree, tag: str, tmp_path: Path) -> None:
    tree = tmp_path / tag
    shutil.copytree(git_tree(tag), tree, symlinks=True)
    series = patches.load_series(catalogue.load().get(tag).series)
    report = patches.apply(series, tree)
    assert report.summary() == "clean (4 hunks)", report.table()
    assert (tree / "modules/proxy/mod_proxy_wstunnel.c").exists()
    assert patches.check(series, tree).status == "already-applied"


def test_patch_file_hashes_are_stable() -> None:
    series = patches.load_series("wstunnel-2.2")
    assert [p.name for p in series.patch_files] == ["0001-add-mod_proxy_wstunnel.patch", "0002-build-glue-2.2.patch"]
    assert all(len(hashlib.sha256(p.read_bytes()).hexdigest()) == 64 for p in series.patch_files)
    with pytest.raises(BadInput):
        patches.load_series("nope")
