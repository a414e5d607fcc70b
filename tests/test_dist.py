"""`Dist`, the one loader of a build's output directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apachews.catalogue import Version
from apachews.dist import Dist
from apachews.errors import BadInput


def _dist(root: Path, info: dict[str, object], module: bool = True) -> Path:
    (root / "modules").mkdir(parents=True)
    if module:
        (root / "modules" / "mod_proxy_wstunnel.so").write_bytes(b"\x7fELF")
    Dist(root).write_info(info)
    return root


def test_loads_what_a_build_wrote(tmp_path: Path) -> None:
    root = _dist(tmp_path / "httpd-2.2.31", {"apache": "2.2.31", "backport": True})
    dist = Dist.load(root, module=True)
    assert json.loads((root / "build.json").read_text())["apache"] == "2.2.31"
    assert dist.backport and dist.built_for() == Version(2, 2, 31)
    assert dist.module == root / "modules" / "mod_proxy_wstunnel.so"
    assert Dist.of_module(dist.module) == dist and Dist.of_module(tmp_path / "elsewhere" / "x.so") is None
    assert not dist.has_httpd
    with pytest.raises(BadInput, match="no httpd install"):
        Dist.load(root, httpd=True)


def test_refuses_what_is_not_a_build(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no build.json"):
        Dist.load(tmp_path)
    root = _dist(tmp_path / "apxs-2.4.62", {"headers": "2.4.62"}, module=False)
    with pytest.raises(BadInput, match="with a module"):
        Dist.load(root, module=True)
    assert Dist(root).built_for() is None and not Dist(root).backport
    (root / "build.json").write_text("{not json")
    assert Dist(root).info() == {}
