"""The patch engine on real Apache trees: check, atomic apply, reverse, rebase (incl. 3-way merge).

Test patches are made here, with `diff -u`, from edited copies of the real httpd 2.4 tree (and 2.2 trees
from git when APACHEWS_HTTPD_GIT is set), so no Apache code is committed beyond what a diff carries.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from apachews import catalogue, module, patches
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


def test_rebase_with_a_conflict_writes_no_patch_until_resolved(
    tmp_path: Path, httpd24_pristine: Path, httpd24_tree: Path
) -> None:
    glue = "modules/proxy/config.m4"
    scratch = tmp_path / "scratch"
    for side in ("a", "b"):
        for relative in (TARGET, glue):
            (scratch / side / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(httpd24_pristine / relative, scratch / side / relative)
    base_lines = (httpd24_pristine / TARGET).read_text().splitlines(keepends=True)
    edited = list(base_lines)
    edited[399] = "/* patch rewrote this line */\n"
    (scratch / "b" / TARGET).write_text("".join(edited))
    with (scratch / "b" / glue).open("a") as config:
        config.write("dnl apachews build glue\n")
    diff = subprocess.run(["diff", "-ruN", "a", "b"], cwd=scratch, capture_output=True, text=True).stdout
    patch = tmp_path / "conflict.patch"
    patch.write_text(diff)
    target_lines = list(base_lines)
    for index in range(395, 405):
        target_lines[index] = f"/* target rewrote {index} */\n"
    (httpd24_tree / TARGET).write_text("".join(target_lines))
    out = tmp_path / "out.patch"
    command = ["patch", "rebase", "--patch", str(patch), "--source", str(httpd24_tree), "-o", str(out)]
    command += ["--base-source", str(httpd24_pristine)]
    result = CliRunner().invoke(main, [*command, "--json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["conflicts"] == [TARGET] and data["written"] is False
    assert "--resolved" in data["next"]
    assert not out.exists(), "a patch without the conflicting file (but with the build glue) must not be written"
    conflict_file = tmp_path / "out.patch.conflicts" / TARGET
    merged = conflict_file.read_text()
    assert "<<<<<<<" in merged
    # The user resolves: the target's lines, with the patch's change of line 400.
    resolved = merged.split("<<<<<<< target\n")[0] + "".join(target_lines[395:399])
    resolved += "/* patch rewrote this line */\n" + "".join(target_lines[400:405])
    resolved += merged.split(">>>>>>> patch\n")[1]
    conflict_file.write_text(resolved)
    again = CliRunner().invoke(main, [*command, "--resolved", str(tmp_path / "out.patch.conflicts")])
    assert again.exit_code == 0, again.output
    assert (out.stat().st_mode & 0o777) == 0o666 & ~_umask()
    rebased = out.read_text()
    assert f"+++ b/{glue}" in rebased and f"+++ b/{TARGET}" in rebased
    applied = patches.apply(patches.load_patches([out]), httpd24_tree)
    assert applied.summary() == "clean (2 hunks)", applied.table()
    assert "dnl apachews build glue" in (httpd24_tree / glue).read_text()


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


BAD = {
    "empty": "",
    "not a patch": "hello, this is prose\nnot a diff\n",
    "binary": "diff --git a/x.png b/x.png\nGIT binary patch\nliteral 3\nabc\n",
    "another project": "--- a/src/kernel/sched.c\n+++ b/src/kernel/sched.c\n@@ -1 +1 @@\n-a\n+b\n",
}


def test_parsing_keeps_the_bytes_gnu_patch_reads(tmp_path: Path) -> None:
    """unidiff parses; each hunk line keeps its own bytes: CRLF and a lone CR stay, a tab-led context line
    (its space eaten) counts as context, "\\ No newline" takes the newline off; a file whose headers end in
    CRLF (a git deletion here) has its hunk lines' CRs stripped, as GNU patch does; a cut hunk is refused."""
    plain = tmp_path / "plain.patch"
    plain.write_bytes(b"--- a/f.c\n+++ b/f.c\n@@ -1,3 +1,3 @@ f\n a\r\n\tb\n-c\rd\n\\ No newline at end of file\n+C\n")
    (file,) = patches.parse_patch(plain).files
    assert file.hunks[0].lines == [(" ", b"a\r\n"), (" ", b"\tb\n"), ("-", b"c\rd"), ("+", b"C\n")]
    assert file.hunks[0].section == "f" and not file.is_new and not file.is_deleted
    crlf = tmp_path / "crlf.patch"
    crlf.write_bytes(
        b"diff --git a/g.c b/g.c\r\ndeleted file mode 100644\r\nindex 1234567..0000000\r\n"
        b"--- a/g.c\r\n+++ /dev/null\r\n@@ -1 +0,0 @@\r\n-x\r\n"
    )
    (deleted,) = patches.parse_patch(crlf).files
    assert deleted.is_deleted and deleted.old_path == "a/g.c" and deleted.hunks[0].lines == [("-", b"x\n")]
    cut = tmp_path / "cut.patch"
    cut.write_bytes(b"--- a/f.c\n+++ b/f.c\n@@ -1,3 +1,3 @@\n a\n-b\n")
    with pytest.raises(BadInput, match="not a valid unified diff"):
        patches.parse_patch(cut)


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_is_refused_and_tree_untouched(kind: str, tmp_path: Path, httpd24_tree: Path) -> None:
    patch = tmp_path / "bad.patch"
    patch.write_text(BAD[kind])
    before = tree_hash(httpd24_tree)
    result = CliRunner().invoke(
        main, ["patch", "apply", "--patch", str(patch), "--source", str(httpd24_tree), "--json"]
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
    stock = runner.invoke(main, ["patch", "check", "--apache", "2.4.69", "--source", str(httpd24_tree)])
    assert stock.exit_code == 2 and "stock" in stock.output


@pytest.mark.parametrize("tag", ["2.2.15", "2.2.22", "2.2.24", "2.2.31", "2.2.34", "2.4.1", "2.4.4"])
def test_backport_series_applies_cleanly_to_real_releases(git_tree, tag: str, tmp_path: Path) -> None:
    tree = tmp_path / tag
    shutil.copytree(git_tree(tag), tree, symlinks=True)
    series = patches.load_series(catalogue.load().get(tag).series)
    report = patches.apply(series, tree)
    # The creation patch adds each of the module's files (one hunk each); the build glue has 3 hunks.
    assert report.summary() == f"clean ({len(module.FILE_NAMES) + 3} hunks)", report.table()
    assert all((tree / module.TREE_DIR / name).exists() for name in module.FILE_NAMES)
    objs = re.search(r'^proxy_wstunnel_objs="([^"]*)"', (tree / "modules/proxy/config.m4").read_text(), re.M)
    assert objs and objs.group(1) == module.OBJECTS  # httpd's build compiles every C file of the module
    assert patches.check(series, tree).status == "already-applied"


def test_patch_file_hashes_are_stable() -> None:
    series = patches.load_series("wstunnel-2.2")
    assert [p.name for p in series.patch_files] == ["0001-add-mod_proxy_wstunnel.patch", "0002-build-glue-2.2.patch"]
    assert all(len(hashlib.sha256(p.read_bytes()).hexdigest()) == 64 for p in series.patch_files)
    with pytest.raises(BadInput):
        patches.load_series("nope")


def test_a_hunk_ending_at_the_end_of_file_stays_there(git_tree, tmp_path: Path) -> None:
    """The issue's blog patch: code appended at the end of proxy_util.c, made on 2.2.24 (3 lines of context
    before, none after), on 2.4.4. GNU patch anchors it at the end of the file, with fuzz; so do we."""
    made_on = git_tree("2.2.24") / TARGET
    tree = tmp_path / "2.4.4"
    shutil.copytree(git_tree("2.4.4") / "modules", tree / "modules", symlinks=True)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(made_on, tmp_path / "a" / "proxy_util.c")
    (tmp_path / "b" / "proxy_util.c").write_bytes(made_on.read_bytes() + b"\nint apachews_appended;\n")
    diff = subprocess.run(
        ["diff", "-u", "--label", f"a/{TARGET}", "--label", f"b/{TARGET}", "a/proxy_util.c", "b/proxy_util.c"],
        cwd=tmp_path,
        capture_output=True,
    ).stdout
    patch = tmp_path / "append.patch"
    patch.write_bytes(diff)
    before = (tree / TARGET).read_bytes()
    report = patches.apply(patches.load_patches([patch]), tree)
    hunk = report.patches[0].files[0].hunks[0]
    assert hunk.status == "fuzz" and hunk.fuzz >= 1, report.table()
    assert (tree / TARGET).read_bytes() == before + b"\nint apachews_appended;\n"
    assert hunk.line == len(before.splitlines()) - 3 + 1  # its 3 context lines are the file's last 3


def test_crlf_files_stay_crlf_and_new_files_get_0644(tmp_path: Path, httpd24_tree: Path) -> None:
    dsp = "modules/proxy/mod_proxy_balancer.dsp"
    original = (httpd24_tree / dsp).read_bytes().replace(b"\r\n", b"\n")
    crlf = original.replace(b"\n", b"\r\n")
    (httpd24_tree / dsp).write_bytes(crlf)
    lines = crlf.split(b"\r\n")
    changed = b"\r\n".join(lines[:20] + [b"# apachews: an added line"] + lines[20:])
    scratch = tmp_path / "scratch"
    for side, data in (("a", crlf), ("b", changed)):
        (scratch / side / "modules/proxy").mkdir(parents=True)
        (scratch / side / dsp).write_bytes(data)
    (scratch / "b/modules/proxy/apachews-new.txt").write_text("a file the patch creates\n")
    diff = subprocess.run(["diff", "-ruN", "a", "b"], cwd=scratch, capture_output=True).stdout
    patch = tmp_path / "crlf.patch"
    patch.write_bytes(diff)
    previous = os.umask(0o022)
    try:
        report = patches.apply(patches.load_patches([patch]), httpd24_tree)
    finally:
        os.umask(previous)
    assert report.summary() == "clean (2 hunks)", report.table()
    assert (httpd24_tree / dsp).read_bytes() == changed
    assert b"\n" not in (httpd24_tree / dsp).read_bytes().replace(b"\r\n", b"")
    assert ((httpd24_tree / "modules/proxy/apachews-new.txt").stat().st_mode & 0o777) == 0o644


def _self_repeating_patch(tree: Path, out: Path) -> Path:
    """A real diff whose added block ends with the lines its context starts with (like a new function
    inserted before another): after it went in, its context is found again a few lines further on."""
    lines = (tree / TARGET).read_text().splitlines(keepends=True)
    at = distinctive(tree, TARGET, 300)
    block = ["/* apachews: a repeated block */\n", *lines[at - 3 : at]]
    scratch = out / "repeat"
    for side, content in (("a", lines), ("b", lines[:at] + block + lines[at:])):
        (scratch / side / TARGET).parent.mkdir(parents=True, exist_ok=True)
        (scratch / side / TARGET).write_text("".join(content))
    diff = subprocess.run(["diff", "-ruN", "a", "b"], cwd=scratch, capture_output=True, text=True).stdout
    patch = out / "repeat.patch"
    patch.write_text(diff)
    return patch


def test_applying_twice_says_already_applied_and_changes_nothing(tmp_path: Path, httpd24_tree: Path) -> None:
    patch = _self_repeating_patch(httpd24_tree, tmp_path)
    runner = CliRunner()
    command = ["patch", "apply", "--patch", str(patch), "--source", str(httpd24_tree), "--json"]
    first = runner.invoke(main, command)
    assert first.exit_code == 0, first.output
    once = tree_hash(httpd24_tree)
    second = runner.invoke(main, command)
    assert second.exit_code == 0, second.output
    data = json.loads(second.stdout)
    assert data["ok"] is True and data["status"] == "already-applied" and data["written"] == []
    assert data["summary"].startswith("already applied")
    assert [h["status"] for h in data["patches"][0]["files"][0]["hunks"]] == ["already-applied"]
    assert tree_hash(httpd24_tree) == once
    text = runner.invoke(main, command[:-1])
    assert text.exit_code == 0 and "already applied" in text.output


def test_a_partly_applied_patch_fails_and_changes_nothing(two_hunks: Path, httpd24_tree: Path, tmp_path: Path) -> None:
    half = tmp_path / "half.patch"
    text = two_hunks.read_text()
    half.write_text(text[: text.rindex("\n@@ ") + 1])  # only the first hunk
    assert patches.apply(patches.load_patches([half]), httpd24_tree).status == "applies"
    before = tree_hash(httpd24_tree)
    result = CliRunner().invoke(
        main, ["patch", "apply", "--patch", str(two_hunks), "--source", str(httpd24_tree), "--json"]
    )
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["status"] == "fails" and data["summary"].startswith("partly applied: 1 of 2 hunks")
    assert "--reverse" in data["hint"]
    assert tree_hash(httpd24_tree) == before


def test_report_text(two_hunks: Path, httpd24_tree: Path, tmp_path: Path) -> None:
    insert_lines(httpd24_tree, TARGET, 10, 1)
    table = patches.check(patches.load_patches([two_hunks]), httpd24_tree).table()
    assert "hunk 1: offset +1 line, at line 199" in table and "offset offset" not in table
    single = make_patch(httpd24_tree, tmp_path, {TARGET: [(50, "/* one */")]}, "one.patch")
    assert patches.check(patches.load_patches([single]), httpd24_tree).summary() == "clean (1 hunk)"


def test_the_tree_is_named_with_source(two_hunks: Path, httpd24_tree: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    checked = runner.invoke(main, ["patch", "check", "--patch", str(two_hunks), "--source", str(httpd24_tree)])
    assert checked.exit_code == 0 and "clean (2 hunks)" in checked.output, checked.output
    same = runner.invoke(
        main,
        ["patch", "check", "--patch", str(two_hunks), "--source", str(httpd24_tree), "--source-dir", str(httpd24_tree)],
    )
    assert same.exit_code == 0, same.output
    other = tmp_path / "other"
    other.mkdir()
    both = runner.invoke(
        main, ["patch", "check", "--patch", str(two_hunks), "--source", str(httpd24_tree), "--source-dir", str(other)]
    )
    assert both.exit_code == 2 and "different trees" in both.output
    out = tmp_path / "rebased.patch"
    rebased = runner.invoke(
        main, ["patch", "rebase", "--patch", str(two_hunks), "--source", str(httpd24_tree), "-o", str(out)]
    )
    assert rebased.exit_code == 0 and out.is_file(), rebased.output
    none = runner.invoke(main, ["patch", "check", "--patch", str(two_hunks)])
    assert none.exit_code == 2 and "--source DIR" in none.output


def test_apply_never_patches_the_source_cache(httpd_git: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("APACHEWS_CACHE", str(tmp_path / "cache"))
    runner = CliRunner()
    origin = ["--apache", "2.4.4", "--git", str(httpd_git)]
    refused = runner.invoke(main, ["patch", "apply", *origin, "--json"])
    assert refused.exit_code == 2, refused.output
    assert "--into" in json.loads(refused.stdout)["hint"]
    cached = next((tmp_path / "cache" / "trees").glob("git-*/httpd-2.4.4"))
    pristine = tree_hash(cached)
    into = tmp_path / "patched"
    applied = runner.invoke(main, ["patch", "apply", *origin, "--into", str(into), "--json"])
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.stdout)["copy"] == str(into)
    assert (into / "modules/proxy/mod_proxy_wstunnel.c").is_file()
    assert tree_hash(cached) == pristine
    again = runner.invoke(main, ["patch", "apply", *origin, "--source", str(cached), "--json"])
    assert again.exit_code == 2  # naming the cache with --source does not get around it
