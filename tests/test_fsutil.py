"""apachews.fsutil: writes that are whole or absent, and the lock that keeps two builds out of one workspace."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from apachews import fsutil


def test_atomic_file_is_whole_or_absent(tmp_path: Path):
    target = tmp_path / "deep" / "record.json"
    fsutil.write_atomic(target, "first")
    with pytest.raises(KeyboardInterrupt), fsutil.atomic_file(target) as handle:
        handle.write(b"half of the sec")
        raise KeyboardInterrupt
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["record.json"]  # no .part left


def test_atomic_dir_replaces_or_keeps(tmp_path: Path):
    final = tmp_path / "out" / "httpd-2.4.69"
    with fsutil.atomic_dir(final) as staged:
        (staged / "a").write_text("1")
    with pytest.raises(ValueError), fsutil.atomic_dir(final, replace=True) as staged:
        (staged / "b").write_text("2")
        raise ValueError("the build broke")
    assert [p.name for p in final.iterdir()] == ["a"] and len(list(final.parent.iterdir())) == 1
    with fsutil.atomic_dir(final) as staged:  # a cache: a concurrent run got there first, theirs is kept
        (staged / "c").write_text("3")
    assert [p.name for p in final.iterdir()] == ["a"]
    with fsutil.atomic_dir(final, replace=True) as staged:  # an output: replaced as a whole
        (staged / "d").write_text("4")
    assert [p.name for p in final.iterdir()] == ["d"] and len(list(final.parent.iterdir())) == 1


def _hold(lock: Path, log: Path, name: str, start) -> None:
    start.wait(30)  # both try to enter at the same moment
    with fsutil.file_lock(lock):
        with open(log, "a") as out:
            out.write(f"{name} in\n")
        time.sleep(0.3)
        with open(log, "a") as out:
            out.write(f"{name} out\n")


def test_file_lock_serialises_processes(tmp_path: Path):
    lock, log = tmp_path / "locks" / "build-x.lock", tmp_path / "log"
    start = multiprocessing.Barrier(2)
    workers = [multiprocessing.Process(target=_hold, args=(lock, log, name, start)) for name in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    lines = log.read_text().splitlines()
    assert lines in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])  # one at a time


def test_fingerprint_is_stable_and_order_free():
    assert fsutil.fingerprint({"a": 1, "b": [2]}) == fsutil.fingerprint({"b": [2], "a": 1})
    assert fsutil.fingerprint({"a": 1}) != fsutil.fingerprint({"a": 2})
    assert len(fsutil.fingerprint("x", 20)) == 20
