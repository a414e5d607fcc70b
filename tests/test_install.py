"""Placement (the shared API), `apachews install` / `uninstall` and `verify --live`.

The server under test is a throwaway copy of this machine's Debian apache2 tree (/etc/apache2 copied to a temp
dir and started on a free 127.0.0.1 port with its own run/lock/log dirs: tests/debian_tree.py). The machine's
own /etc/apache2 is never written.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from apachews import config, distros
from apachews.distros import placement
from apachews.errors import BadInput
from tests import debian_tree

pytestmark = pytest.mark.skipif(debian_tree.available() is not None, reason=str(debian_tree.available()))


@pytest.fixture
def tree(tmp_path: Path) -> debian_tree.DebianServer:
    return debian_tree.make(tmp_path / "server")


@pytest.fixture
def fake_module(tmp_path: Path) -> Path:
    # Placement only copies bytes; the real apxs-built module is used where Apache loads it.
    so = tmp_path / "mod_proxy_wstunnel.so"
    so.write_bytes(b"\x7fELF not really")
    return so


def test_debian_placement_enables_like_a2enmod_and_unplace_restores(tree, fake_module) -> None:
    before = debian_tree.snapshot(tree.conf_root)
    rendering = config.render("jupyter", apache="2.4.71", distro="debian", prefer="wstunnel")
    placed = distros.place(rendering, tree.conf_root, module_so=fake_module, modules_dir=tree.modules_dir)
    etc = tree.conf_root
    assert os.readlink(etc / "mods-enabled/proxy.load") == "../mods-available/proxy.load"
    assert os.readlink(etc / "mods-enabled/proxy.conf") == "../mods-available/proxy.conf"
    assert (etc / "mods-enabled/proxy_wstunnel_apachews.load").resolve() == (
        etc / "mods-available/proxy_wstunnel_apachews.load"
    )
    assert (
        str(tree.modules_dir / placement.MODULE_FILE)
        in (etc / "mods-available/proxy_wstunnel_apachews.load").read_text()
    )
    assert (etc / "conf-enabled/apachews-jupyter.conf").is_file()
    assert (tree.modules_dir / placement.MODULE_FILE).read_bytes() == fake_module.read_bytes()
    assert set(placed) == {Path(c["path"]) for c in placed.changes}
    # The record survives a round trip through JSON (install's manifest).
    distros.unplace(distros.Placement.from_dict(placed.to_dict()))
    assert debian_tree.snapshot(tree.conf_root) == before
    assert not (tree.modules_dir / placement.MODULE_FILE).exists()


def test_stock_wstunnel_is_disabled_while_ours_is_installed_and_back_after(tree, fake_module) -> None:
    etc = tree.conf_root
    (etc / "mods-enabled/proxy.load").symlink_to("../mods-available/proxy.load")
    (etc / "mods-enabled/proxy_wstunnel.load").symlink_to("../mods-available/proxy_wstunnel.load")
    before = debian_tree.snapshot(etc)
    rendering = config.render("generic", apache="2.4.71", distro="debian", prefer="wstunnel")
    placed = distros.place(rendering, etc, module_so=fake_module, modules_dir=tree.modules_dir)
    assert not os.path.lexists(etc / "mods-enabled/proxy_wstunnel.load")
    # proxy.load was enabled already: not ours, so not recorded and not removed later.
    assert etc / "mods-enabled/proxy.load" not in set(placed)
    distros.unplace(placed)
    assert debian_tree.snapshot(etc) == before


def test_a_failing_step_rolls_back_every_earlier_one(tree, fake_module) -> None:
    etc = tree.conf_root
    # The last step (the a2enconf link) cannot be made: conf-enabled is a file here.
    for entry in (etc / "conf-enabled").iterdir():
        entry.unlink()
    (etc / "conf-enabled").rmdir()
    (etc / "conf-enabled").write_text("not a directory\n")
    before = debian_tree.snapshot(etc)
    rendering = config.render("gateone", apache="2.4.71", distro="debian", prefer="wstunnel")
    with pytest.raises(OSError):
        distros.place(rendering, etc, module_so=fake_module, modules_dir=tree.modules_dir / "new" / "dir")
    assert debian_tree.snapshot(etc) == before
    assert not (tree.modules_dir / "new").exists()  # directories it made are gone too


def test_refuses_to_overwrite_and_to_remove_edited_files(tree) -> None:
    etc = tree.conf_root
    rendering = config.render("generic", apache="2.4.71", distro="debian")
    (etc / "conf-available/apachews-generic.conf").write_text("# the admin's own\n")
    with pytest.raises(BadInput, match="would overwrite"):
        distros.place(rendering, etc)
    (etc / "conf-available/apachews-generic.conf").unlink()
    placed = distros.place(rendering, etc)
    (etc / "conf-available/apachews-generic.conf").write_text("# edited after install\n")
    with pytest.raises(BadInput, match="changed since install"):
        distros.unplace(placed)
    assert (etc / "conf-available/apachews-generic.conf").read_text() == "# edited after install\n"


@pytest.mark.parametrize("distro", ["rhel", "gentoo", "generic"])
def test_other_layouts_place_the_rendering_files_with_our_module_path(tmp_path, distro, fake_module) -> None:
    root = tmp_path / "conf"
    root.mkdir()
    rendering = config.render("generic", apache="2.4.6", distro=distro)
    placed = distros.place(rendering, root, module_so=fake_module, modules_dir=tmp_path / "mods")
    text = "".join((root / name).read_text() for name in rendering.files)
    assert f'LoadModule proxy_wstunnel_module "{tmp_path / "mods" / placement.MODULE_FILE}"' in text
    assert sorted(placed.paths) == sorted(
        [root / n for n in rendering.files] + [tmp_path / "mods" / placement.MODULE_FILE]
    )
    distros.unplace(placed)
    assert list(root.iterdir()) == []
