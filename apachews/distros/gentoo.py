"""Gentoo: modules.d/NN_*.conf wrapped in <IfDefine PROXY>, modules relative to ServerRoot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from apachews.distros import lab
from apachews.distros.base import Layout, Parts
from apachews.distros.catalogue import LayoutFacts, layout_facts
from apachews.distros.lab import Additions
from apachews.httpd import Httpd, Server

if TYPE_CHECKING:
    from apachews.rendering import Rendering


class Gentoo(Layout):
    name = "gentoo"
    facts: LayoutFacts = layout_facts("gentoo")
    included_dirs = True
    tls_vhost = (
        "<VirtualHost _default_:443> in vhosts.d/00_default_ssl_vhost.conf (APACHE2_OPTS: -D SSL -D SSL_DEFAULT_VHOST)"
    )
    tls_vhost_dir = "vhosts.d"  # as *.include: only vhosts.d/*.conf is read

    defines = ("PROXY",)  # APACHE2_OPTS in /etc/conf.d/apache2: -D PROXY for proxy configs
    lab_skeleton = True  # verify's tree: a skeleton of what the packages ship, httpd's defaults

    def live_conf_name(self, version: str) -> str:
        return "modules.d/75_apachews_live_verify.conf"

    def markers(self, server_root: Path, conf_dir: Path) -> list[Path]:
        return [conf_dir / "modules.d"]

    def detects(self, kinds: list[str]) -> bool:
        return kinds == ["dir"]

    def files(self, parts: Parts) -> dict[str, str]:
        body = parts.module_lines(self.modules_path) + "\n" + parts.proxy_conf
        indented = "".join(f"    {line}" if line.strip() else line for line in body.splitlines(keepends=True))
        return {f"modules.d/75_apachews_{parts.preset}.conf": f"<IfDefine PROXY>\n{indented}</IfDefine>\n"}

    def notes(self, parts: Parts) -> list[str]:
        return [
            f'add "-D PROXY" to APACHE2_OPTS in /etc/conf.d/apache2, then: {self.control} -t && '
            "rc-service apache2 reload"
        ]

    def capacity_file(self, family: str) -> str:
        # After modules.d/00_mpm.conf, where Gentoo keeps its MPM settings; not behind <IfDefine PROXY>.
        return "modules.d/76_apachews_capacity.conf"

    def capacity_notes(self, family: str) -> list[str]:
        return [
            f"then: {self.control} -t && rc-service apache2 restart (a full restart: ServerLimit and ThreadLimit do "
            "not change on a graceful reload)"
        ]

    def open_files_note(self, family: str, limit: int) -> str:
        return f'set rc_ulimit="-n {limit}" in /etc/conf.d/apache2 (OpenRC applies it when it starts Apache)'

    # -- placement: httpd.conf includes modules.d/*.conf; the files are active when PROXY is defined ---------
    def default_modules_dir(self, conf_root: Path) -> Path:
        return self.system_modules_dirs[0]  # Gentoo's ServerRoot is /usr/lib64/apache2

    def placement_notes(self, rendering: Rendering, conf_root: Path) -> list[str]:
        return ['active only with "-D PROXY" in APACHE2_OPTS (/etc/conf.d/apache2)']

    # -- the lab tree (distros.trees, for verify): modules.d/*.conf behind <IfDefine>, vhosts.d/ with the default
    # <VirtualHost>, written here from what the distribution ships (its packages are not at hand), the rendering
    # placed as `apachews install` would.
    def lab_tree(
        self, root: Path, httpd: Httpd, rendering: Rendering, module: Path | None, port: int, additions: Additions
    ) -> Server:
        self.check_rendering(rendering)
        tree = lab.skeleton(root, httpd, port, additions)
        conf = root / "httpd.conf"
        for sub in ("modules.d", "vhosts.d"):
            (root / sub).mkdir()
        loads = lab.load_lines(httpd, tree.base) + lab.load_lines(httpd, tree.proxy, define="PROXY") + tree.extra_loads
        conf.write_text(tree.main_conf("gentoo-httpd.conf.j2", loads))
        (root / "vhosts.d" / "00_default_vhost.conf").write_text(
            lab.render("gentoo-default-vhost.conf.j2", root=root, port=port)
        )
        # The TLS front: a <VirtualHost> of verify's own.
        name = "00_apachews_verify.conf" if tree.verify_first else "99_apachews_verify.conf"
        (root / "modules.d" / name).write_text(tree.verify_conf(additions, lab.tls_vhost(additions, "")))
        (root / "modules.d" / "00_apachews_verify_first.conf").write_text(additions.first)
        self.place(rendering, root, module_so=module, modules_dir=root / "apachews-modules")
        return Server(httpd, root, conf, port, root / "logs" / "error_log", defines=self.defines, files_dir=root)
