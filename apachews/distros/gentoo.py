"""Gentoo: modules.d/NN_*.conf wrapped in <IfDefine PROXY>, modules relative to ServerRoot."""

from __future__ import annotations

from apachews.distros import Layout, Parts


class Gentoo(Layout):
    name = "gentoo"

    def files(self, parts: Parts) -> dict[str, str]:
        body = parts.module_lines(self.modules_path) + "\n" + parts.proxy_conf
        indented = "".join(f"    {line}" if line.strip() else line for line in body.splitlines(keepends=True))
        return {f"modules.d/75_apachews_{parts.preset}.conf": f"<IfDefine PROXY>\n{indented}</IfDefine>\n"}

    def notes(self, parts: Parts) -> list[str]:
        return [
            'add "-D PROXY" to APACHE2_OPTS in /etc/conf.d/apache2, then: apache2ctl -t && rc-service apache2 reload'
        ]
