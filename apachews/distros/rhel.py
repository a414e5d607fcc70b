"""RHEL, CentOS, Fedora: conf.modules.d/ (2.4) for LoadModule, conf.d/ for the proxy config."""

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


class Rhel(Layout):
    name = "rhel"
    facts: LayoutFacts = layout_facts("rhel")
    included_dirs = True
    ca_bundle = "/etc/pki/tls/certs/ca-bundle.crt"
    tls_vhost = "<VirtualHost _default_:443> in conf.d/ssl.conf (yum install mod_ssl)"
    tls_vhost_dir = "conf.d"  # as *.include: conf.d/*.conf does not read it at server level

    main_config_loads_modules = False  # conf.modules.d/*.conf: our file there
    lab_skeleton = True  # verify's tree: a skeleton of what the packages ship, httpd's defaults

    def live_conf_name(self, version: str) -> str:
        return "conf.d/apachews-live-verify.conf"

    def markers(self, server_root: Path, conf_dir: Path) -> list[Path]:
        return [server_root / "conf.d", server_root / "conf" / "httpd.conf"]

    def detects(self, kinds: list[str]) -> bool:
        return kinds[0] == "dir" and kinds[1] != "none"

    def conf_root_of(self, server_root: Path, conf_dir: Path) -> Path:
        return server_root  # conf.d/ and conf.modules.d/ sit beside conf/

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
        tree = self.facts.conf_root
        return [f"copy the files under {tree}/ (or: apachews install), then: {self.control} -t && {reload}"]

    def capacity_file(self, family: str) -> str:
        # conf.d/ is read after the MPM: 2.4 loads it in conf.modules.d/00-mpm.conf with httpd's defaults,
        # CentOS 6 sets it in httpd.conf's <IfModule prefork.c> / <IfModule worker.c> above its Include conf.d.
        return "conf.d/apachews-capacity.conf"

    def capacity_notes(self, family: str) -> list[str]:
        restart = "service httpd restart" if family == "2.2" else "systemctl restart httpd"
        return [
            f"then: {self.control} -t && {restart} (a full restart: ServerLimit and ThreadLimit do not change on a "
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

    # -- the lab tree (distros.trees, for verify): httpd.conf including conf.modules.d/*.conf and conf.d/*.conf,
    # mod_reqtimeout among the base modules; CentOS 6 for 2.2: modules in httpd.conf, conf.d/. Written here
    # from what the distribution ships (its packages are not at hand: the skeleton keeps what decides where a
    # rendering goes and what is enabled), the rendering placed as `apachews install` would.
    def lab_tree(
        self, root: Path, httpd: Httpd, rendering: Rendering, module: Path | None, port: int, additions: Additions
    ) -> Server:
        self.check_rendering(rendering)
        # Its TLS front is its mod_ssl package's conf.d/ssl.conf, which loads mod_ssl itself.
        own = ("ssl",) if additions.tls_port is not None else ()
        tree = lab.skeleton(root, httpd, port, additions, own)
        conf = root / "conf" / "httpd.conf"
        (root / "conf.d").mkdir()
        conf.parent.mkdir()
        if tree.is_22:  # CentOS 6: the modules are loaded in httpd.conf itself, the rest comes from conf.d/
            loads = lab.load_lines(httpd, tree.base + tree.proxy) + tree.extra_loads
        else:
            loads = ""
            (root / "conf.modules.d").mkdir()
            (root / "conf.modules.d" / "00-base.conf").write_text(lab.load_lines(httpd, tree.base) + tree.extra_loads)
            (root / "conf.modules.d" / "00-proxy.conf").write_text(lab.load_lines(httpd, tree.proxy))
        conf.write_text(tree.main_conf("rhel-httpd.conf.j2", loads))
        name = "00-apachews-verify.conf" if tree.verify_first else "zz-apachews-verify.conf"
        (root / "conf.d" / name).write_text(tree.verify_conf(additions, ""))
        (root / "conf.d" / "00-apachews-verify-first.conf").write_text(additions.first)
        if additions.tls_port is not None:
            (root / "conf.d" / "ssl.conf").write_text(_ssl_conf(root, httpd, rendering, additions))
        self.place(rendering, root, module_so=module, modules_dir=root / "apachews-modules")
        return Server(httpd, root, conf, port, root / "logs" / "error_log", files_dir=root)


def _ssl_conf(root: Path, httpd: Httpd, rendering: Rendering, additions: Additions) -> str:
    """conf.d/ssl.conf as mod_ssl's package ships it (CentOS 6 for 2.2, RHEL 7+ for 2.4: its own Listen, session
    cache and <VirtualHost _default_:443> with its own logs), on the test port with the test certificate; a
    rendering for --vhost tls is Included inside that <VirtualHost>, where its user put it."""
    is_22 = httpd.version.family == "2.2"
    return lab.render(
        "rhel-ssl.conf.j2",
        root=root,
        is_22=is_22,
        loads=lab.load_lines(httpd, ("ssl",) if is_22 else ("ssl", "socache_shmcb")).rstrip("\n"),
        shmcb=is_22 or (httpd.modules_dir / "mod_socache_shmcb.so").exists(),
        port=additions.tls_port,
        cert=additions.tls_cert,
        key=additions.tls_key,
        include=root / rendering.tls_include if rendering.tls_include else None,
    )
