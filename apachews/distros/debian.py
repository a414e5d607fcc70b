"""Debian and Ubuntu: mods-available/*.load + a2enmod, conf-available (2.4) or conf.d (2.2)."""

from __future__ import annotations

from apachews.distros import Layout, Parts


class Debian(Layout):
    name = "debian"
    modules_path = "/usr/lib/apache2/modules"

    def files(self, parts: Parts) -> dict[str, str]:
        files = {}
        # Debian's apache2 ships .load files for every stock module; only our backport needs one.
        if parts.needs_backport and "proxy_wstunnel" in parts.modules:
            files["mods-available/proxy_wstunnel.load"] = parts.module_lines(
                self.modules_path, guarded=False, names=("proxy_wstunnel",)
            )
        files[self._conf_file(parts)] = parts.proxy_conf
        return files

    def _conf_file(self, parts: Parts) -> str:
        directory = "conf.d" if parts.family == "2.2" else "conf-available"
        return f"{directory}/apachews-{parts.preset}.conf"

    def notes(self, parts: Parts) -> list[str]:
        notes = [f"run: a2enmod {' '.join(parts.modules)}"]
        if parts.family != "2.2":
            notes.append(f"run: a2enconf apachews-{parts.preset}")
        notes.append("then: apache2ctl -t && systemctl reload apache2 (or service apache2 reload)")
        return notes
