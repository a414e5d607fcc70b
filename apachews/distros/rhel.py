"""RHEL, CentOS, Fedora: conf.modules.d/ (2.4) for LoadModule, conf.d/ for the proxy config."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from apachews.distros import Layout, Parts

if TYPE_CHECKING:
    from apachews.config import Rendering


class Rhel(Layout):
    name = "rhel"
    binary = Path("/usr/sbin/httpd")
    system_modules_dirs = (Path("/usr/lib64/httpd/modules"), Path("/usr/lib/httpd/modules"))
    included_dirs = True
    ca_bundle = "/etc/pki/tls/certs/ca-bundle.crt"
    tls_vhost = "<VirtualHost _default_:443> in conf.d/ssl.conf (yum install mod_ssl)"
    tls_vhost_dir = "conf.d"  # as *.include: conf.d/*.conf does not read it at server level

    def files(self, parts: Parts) -> dict[str, str]:
        conf = f"conf.d/apachews-{parts.preset}.conf"
        modules = parts.module_lines(self.modules_path)
        if parts.family == "2.2":  # CentOS 5/6 have no conf.modules.d: modules go with the config
            return {conf: modules + "\n" + parts.proxy_conf}
        # After RHEL's own 00-proxy.conf (which loads mod_proxy and friends), so the guards find them loaded.
        return {"conf.modules.d/10-apachews-proxy.conf": modules, conf: parts.proxy_conf}

    def notes(self, parts: Parts) -> list[str]:
        # CentOS 5/6 (2.2) have SysV init; RHEL/CentOS 7+ (2.4) systemd.
        reload = "service httpd reload" if parts.family == "2.2" else "systemctl reload httpd"
        return [f"copy the files under /etc/httpd/ (or: apachews install), then: apachectl -t && {reload}"]

    def capacity_file(self, family: str) -> str:
        # conf.d/ is read after the MPM: 2.4 loads it in conf.modules.d/00-mpm.conf with httpd's defaults,
        # CentOS 6 sets it in httpd.conf's <IfModule prefork.c> / <IfModule worker.c> above its Include conf.d.
        return "conf.d/apachews-capacity.conf"

    def capacity_notes(self, family: str) -> list[str]:
        restart = "service httpd restart" if family == "2.2" else "systemctl restart httpd"
        return [
            f"then: apachectl -t && {restart} (a full restart: ServerLimit and ThreadLimit do not change on a "
            "graceful reload)"
        ]

    def open_files_note(self, family: str, limit: int) -> str:
        if family == "2.2":  # CentOS 5/6: SysV init sources /etc/sysconfig/httpd
            return f"add `ulimit -n {limit}` to /etc/sysconfig/httpd (its init script reads it)"
        return (
            f"a systemd drop-in: /etc/systemd/system/httpd.service.d/limits.conf with [Service] LimitNOFILE={limit}, "
            "then systemctl daemon-reload"
        )

    # -- placement: the main config includes conf.modules.d/*.conf and conf.d/*.conf; nothing to enable ----
    def default_modules_dir(self, conf_root: Path) -> Path:
        return conf_root / "modules"  # /etc/httpd/modules -> /usr/lib64/httpd/modules

    def placement_notes(self, rendering: Rendering, conf_root: Path) -> list[str]:
        return []
