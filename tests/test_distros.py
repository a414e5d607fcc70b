"""Each layout class detects its own tree (distros.detect), and knows its httpd from distributions.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from apachews import distros, httpd
from apachews.distros import catalogue


def _tree(root: Path, dirs: tuple[str, ...], files: tuple[str, ...]) -> None:
    for name in dirs:
        (root / name).mkdir(parents=True)
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("# a main config\n")


@pytest.mark.parametrize(
    ("dirs", "files", "main", "expected", "conf_root"),
    [
        (("mods-available", "mods-enabled"), ("apache2.conf",), "apache2.conf", "debian", "."),
        (("conf.d",), ("conf/httpd.conf",), "conf/httpd.conf", "rhel", "."),
        (("modules.d",), ("httpd.conf",), "httpd.conf", "gentoo", "."),
        ((), ("conf/httpd.conf",), "conf/httpd.conf", "generic", "conf"),
    ],
)
def test_each_layout_detects_its_tree(tmp_path: Path, dirs, files, main, expected, conf_root):
    _tree(tmp_path, dirs, files)
    found, root = distros.detect(tmp_path, tmp_path / main)
    assert found == expected and root == tmp_path / conf_root


def test_layouts_know_their_httpd_and_control_command():
    for name in distros.NAMES:
        layout = distros.get(name)
        if layout.facts is None:
            assert name == "generic" and layout.binary is None and layout.control == "apachectl"
            continue
        assert layout.facts == catalogue.layout_facts(name)
        assert layout.binary is not None and layout.binary.is_absolute() and layout.system_modules_dirs
        assert (layout.binary, layout.system_modules_dirs[0]) in httpd.SYSTEM_CANDIDATES
    assert {distros.get(d.layout).name for d in catalogue.distributions().values()} <= set(distros.NAMES)
