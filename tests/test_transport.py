"""transport: --host parsing, inventories, and the local transport the server stage uses on this machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from apachews.cli._hosts import read_inventory
from apachews.errors import BadInput
from apachews.transport import LOCAL, HostSpec, outermost


@pytest.mark.parametrize(
    "text, spec",
    [
        ("web1", HostSpec("web1")),
        ("admin@web1.example:2222", HostSpec("web1.example", "admin", 2222)),
        ("root@[::1]:22", HostSpec("::1", "root", 22)),
        ("10.0.0.7", HostSpec("10.0.0.7")),
    ],
)
def test_host_specs(text: str, spec: HostSpec) -> None:
    assert HostSpec.parse(text) == spec
    assert HostSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text", ["-oProxyCommand=x", "a b", "user@", "web1:0", "web1:70000", "x;rm"])
def test_bad_host_specs_are_refused(text: str) -> None:
    with pytest.raises(BadInput):
        HostSpec.parse(text)


def test_inventory(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts"
    inventory.write_text("[web]\nweb1  # the first\nadmin@web2:2222 ansible_user=x\n\n# gone: web3\n")
    assert read_inventory(inventory) == ["web1", "admin@web2:2222"]
    inventory.write_text("# nobody\n")
    with pytest.raises(BadInput):
        read_inventory(inventory)


def test_local_transport_reads_like_the_remote_one(tmp_path: Path) -> None:
    (tmp_path / "a b").mkdir()
    (tmp_path / "a b" / "x.conf").write_text("x\n")
    (tmp_path / "link").symlink_to("a b")
    assert LOCAL.kinds([tmp_path / "a b", tmp_path / "a b/x.conf", tmp_path / "link", tmp_path / "no"]) == [
        "dir",
        "file",
        "link",
        "none",
    ]
    assert LOCAL.glob(str(tmp_path / "a b" / "*.conf")) == [str(tmp_path / "a b" / "x.conf")]
    # The sh glob the remote side runs, run here: quoting keeps the space, the wildcard stays live.
    from apachews.transport import Transport

    assert Transport.glob(LOCAL, str(tmp_path / "a b" / "*.conf")) == [str(tmp_path / "a b" / "x.conf")]
    assert Transport.kinds(LOCAL, [tmp_path / "link", tmp_path / "no"]) == ["link", "none"]
    assert outermost(["/etc/apache2", "/etc/apache2/x", "/usr/lib/m.so", "/etc/apache2x"]) == [
        "/etc/apache2",
        "/etc/apache2x",
        "/usr/lib/m.so",
    ]
