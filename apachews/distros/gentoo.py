"""Gentoo: modules.d/NN_*.conf wrapped in <IfDefine PROXY>, modules relative to ServerRoot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from apachews.distros import Layout, Parts

if TYPE_CHECKING:
    from apachews.config import Rendering


class Gentoo(Layout):
    name = "gentoo"
    binary = Path("/usr/sbin/apache2")
    system_modules_dirs = (Path("/usr/lib64/apache2/modules"),)
    included_dirs = True
    tls_vhost = (
        "<VirtualHost _default_:443> in vhosts.d/00_default_ssl_vhost.conf (APACHE2_OPTS: -D SSL -D SSL_DEFAULT_VHOST)"
    )
    tls_vhost_dir = "vhosts.d"  # as *.include: only vhosts.d/*.conf is read

    def files(self, parts: Parts) -> dict[str, str]:
        body = parts.module_lines(self.modules_path) + "\n" + parts.proxy_conf
        indented = "".join(f"    {line}" if line.strip() else line for line in body.splitlines(keepends=True))
        return {f"modules.d/75_apachews_{parts.preset}.conf": f"<IfDefine PROXY>\n{indented}</IfDefine>\n"}

    def notes(self, parts: Parts) -> list[str]:
        return [
            'add "-D PROXY" to APACHE2_OPTS in /etc/conf.d/apache2, then: apache2ctl -t && rc-service apache2 reload'
        ]

    def capacity_file(self, family: str) -> str:
        # After modules.d/00_mpm.conf, where Gentoo keeps its MPM settings; not behind <IfDefine PROXY>.
        return "modules.d/76_apachews_capacity.conf"

    def capacity_notes(self, family: str) -> list[str]:
        return [
            "then: apache2ctl -t && rc-service apache2 restart (a full restart: ServerLimit and ThreadLimit do "
            "not change on a graceful reload)"
        ]

    def open_files_note(self, family: str, limit: int) -> str:
        return f'set rc_ulimit="-n {limit}" in /etc/conf.d/apache2 (OpenRC applies it when it starts Apache)'

    # -- placement: httpd.conf includes modules.d/*.conf; the files are active when PROXY is defined ---------
    def default_modules_dir(self, conf_root: Path) -> Path:
        return Path("/usr/lib64/apache2/modules")  # Gentoo's ServerRoot is /usr/lib64/apache2

    def placement_notes(self, rendering: Rendering, conf_root: Path) -> list[str]:
        return ['active only with "-D PROXY" in APACHE2_OPTS (/etc/conf.d/apache2)']
