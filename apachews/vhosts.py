"""The server's VirtualHosts as the server itself sees them, and the one a route goes into.

`apachectl -S` (the same dump as `-t -D DUMP_VHOSTS`) names every vhost with its address, ServerName, aliases
and the file:line that defines it, for 2.2 (NameVirtualHost, `_default_:443`, `port *`) and 2.4 alike. It is
read through the transport, so it is the same on this machine and over SSH. Each vhost's own block is then
read from its file: `SSLEngine on` or an `SSLCertificateFile` makes it a TLS vhost (certbot's `*-le-ssl.conf`
sets SSLEngine in an included options file, but names its certificate in the block), ServerAlias lines add
names the dump leaves out (2.2, and vhosts alone on their address).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from apachews.errors import BadInput, JobFailed
from apachews.serial import Serialised
from apachews.transport import LOCAL, Transport

_WHERE = r"\((?P<file>.+):(?P<line>\d+)\)\s*$"
_NAMED_ADDRESS = re.compile(r"^(?P<address>\S+)\s+is a NameVirtualHost\s*$")
_DEFAULT = re.compile(r"^\s+default server (?P<name>\S+) " + _WHERE)
_NAMEVHOST = re.compile(r"^\s+port (?P<port>\d+|\*) namevhost (?P<name>\S+) " + _WHERE)
_ALIAS = re.compile(r"^\s+(?:wild )?alias (?P<name>\S+)\s*$")
_ALONE = re.compile(r"^(?P<address>\S+)\s+(?P<name>\S+) " + _WHERE)
_OPEN = re.compile(r"^\s*<VirtualHost\b", re.IGNORECASE)
_CLOSE = re.compile(r"^\s*</VirtualHost\s*>", re.IGNORECASE)
_TLS = re.compile(r"^\s*(SSLEngine\s+on|SSLCertificateFile\s)", re.IGNORECASE | re.MULTILINE)
_SERVER_ALIAS = re.compile(r"^\s*ServerAlias\s+(.+)$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class VHost(Serialised):
    """One <VirtualHost>: where the server says it is defined (file as the server names it, line of its
    opening tag), its address and port, its names, and whether it serves TLS."""

    address: str  # as the dump prints it: *:443, 127.0.0.1:8080, _default_:443, [::1]:80
    port: int | None  # None: any port (`*`)
    name: str
    file: str
    line: int
    aliases: tuple[str, ...] = ()
    tls: bool = False
    real_file: str = ""  # `file` with its symlinks resolved (sites-enabled -> sites-available): what is edited
    close_line: int = 0  # the line of its </VirtualHost>
    _omit = ("tls", "real_file", "close_line")  # JSON: `scheme`, and `edited` the file a change goes into
    _derived = ("scheme", "edited")

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def edited(self) -> str:
        return self.real_file or self.file

    @property
    def label(self) -> str:
        return f"{self.name}:{self.port or '*'} ({self.scheme}, {self.file}:{self.line})"

    def answers(self, name: str, port: int | None) -> bool:
        """Whether a request for name[:port] would be this vhost's by name (wildcard aliases included)."""
        if port is not None and self.port not in (None, port):
            return False
        name = name.lower()
        return name == self.name.lower() or any(fnmatch.fnmatchcase(name, alias.lower()) for alias in self.aliases)


def _port(text: str) -> int | None:
    tail = text.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


def parse(dump: str) -> list[VHost]:
    """The vhosts in an `apachectl -S` dump, one per definition (file:line), in the dump's order."""
    found: dict[tuple[str, int], VHost] = {}
    aliases: dict[tuple[str, int], list[str]] = {}
    address, last = "", None
    for raw in dump.splitlines():
        if raw.startswith(("ServerRoot:", "Syntax ")):
            break
        named = _NAMED_ADDRESS.match(raw)
        if named:
            address = named.group("address")
            continue
        alias = _ALIAS.match(raw)
        if alias and last is not None:
            aliases[last].append(alias.group("name"))
            continue
        match = _DEFAULT.match(raw) or _NAMEVHOST.match(raw)
        where_address = address
        if match is None:
            match = _ALONE.match(raw)
            if match is None:
                continue
            where_address = match.group("address")
        port = _port(where_address)
        if "port" in match.groupdict() and match.group("port").isdigit():
            port = int(match.group("port"))
        key = (match.group("file"), int(match.group("line")))
        last = key
        aliases.setdefault(key, [])
        if key not in found:
            found[key] = VHost(where_address, port, match.group("name"), key[0], key[1])
    return [replace(v, aliases=tuple(dict.fromkeys(aliases[k]))) for k, v in found.items()]


def block(lines: Sequence[str], line: int) -> tuple[int, int]:
    """The 0-based indexes of a vhost's opening tag (at 1-based `line`) and of its </VirtualHost>."""
    start = line - 1
    if not 0 <= start < len(lines) or not _OPEN.match(lines[start]):
        raise JobFailed(f"no <VirtualHost> at line {line}", hint="the file changed since apachectl -S: run again")
    for index in range(start + 1, len(lines)):
        if _CLOSE.match(lines[index]):
            return start, index
    raise JobFailed(f"the <VirtualHost> at line {line} has no </VirtualHost>")


def dump(control: str, host: Transport = LOCAL) -> str:
    """`apachectl -S`, or `-t -D DUMP_VHOSTS` where the control script does not pass -S on."""
    for args in (["-S"], ["-t", "-D", "DUMP_VHOSTS"]):
        result = host.run([control, *args], timeout=60)
        text = result.stdout + result.stderr
        if "VirtualHost configuration:" in text:
            return text
    raise JobFailed(
        f"{control} -S did not list the VirtualHosts: {text.strip()[-500:]}",
        hint="run apachectl -S on the server and fix what it reports",
    )


def read(control: str, host: Transport = LOCAL) -> list[VHost]:
    """Every vhost of the server behind `control`, with its TLS, aliases, real file and closing line."""
    vhosts = parse(dump(control, host))
    files = sorted({v.file for v in vhosts})
    texts = host.read_texts(files) if files else {}
    real = dict(zip(files, _resolved(files, host), strict=True))
    out = []
    for vhost in vhosts:
        lines = texts.get(vhost.file, "").splitlines()
        try:
            start, end = block(lines, vhost.line)
        except JobFailed:  # not a file apachews can read or edit (mod_macro's `Use`, no permission): kept, unedited
            out.append(replace(vhost, tls=vhost.port == 443, real_file=real[vhost.file]))
            continue
        body = "\n".join(lines[start : end + 1])
        extra = [word for match in _SERVER_ALIAS.finditer(body) for word in match.group(1).split()]
        out.append(
            replace(
                vhost,
                tls=bool(_TLS.search(body)),
                aliases=tuple(dict.fromkeys([*vhost.aliases, *extra])),
                real_file=real[vhost.file],
                close_line=end + 1,
            )
        )
    return out


def _resolved(files: Sequence[str], host: Transport) -> list[str]:
    """Each file with its links resolved, in one round trip ("" where it cannot be)."""
    result = host.sh('for f in "$@"; do readlink -f "$f" 2>/dev/null || echo; done', *files)
    resolved = result.stdout.split("\n")[: len(files)]
    return resolved + [""] * (len(files) - len(resolved))


@dataclass
class Choice:
    """The vhost a preset goes into (None: server level) and what to tell the user about it."""

    vhost: VHost | None
    note: str = ""
    candidates: list[VHost] = field(default_factory=list)


def parse_spec(spec: str) -> tuple[str, int | None]:
    """NAME[:PORT] (an IPv6 name in brackets)."""
    match = re.fullmatch(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9*._-]+)(?::(?P<port>\d{1,5}))?", spec)
    if not match:
        raise BadInput(f"--vhost {spec!r} is not NAME or NAME:PORT", hint="e.g. --vhost example.org:443")
    port = match.group("port")
    return match.group("name"), int(port) if port else None


def choose(vhosts: Sequence[VHost], spec: str | None, where: str = "") -> Choice:
    """--vhost NAME[:PORT]: the one vhost answering to it, else BadInput saying why. Without it: the only TLS
    vhost when the server has TLS vhosts (where browsers reach apps, and where certbot puts them), else the
    only plain one; none (server level) when there are none or several of that scheme."""
    listing = "; ".join(v.label for v in vhosts) or "none"
    if spec is not None:
        name, port = parse_spec(spec)
        matches = [v for v in vhosts if v.answers(name, port)]
        if not matches:
            raise BadInput(f"no VirtualHost{where} answers to {spec}", hint=f"the server's vhosts: {listing}")
        if len(matches) > 1:
            hint = "add the port: --vhost NAME:PORT" if port is None else "the same name is defined twice there"
            raise BadInput(
                f"{len(matches)} VirtualHosts{where} answer to {spec}: {'; '.join(v.label for v in matches)}",
                hint=f"{hint} (nothing was changed)",
            )
        if not matches[0].close_line:
            raise BadInput(
                f"the VirtualHost {matches[0].label} is not a <VirtualHost> block apachews can read and edit there",
                hint="Include the rendered routes in it yourself (apachews config), or install without --vhost",
            )
        return Choice(matches[0], f"into the VirtualHost {matches[0].label}")
    scheme = "https" if any(v.tls for v in vhosts) else "http"
    same = [v for v in vhosts if v.scheme == scheme]
    if len(same) == 1 and same[0].close_line:
        return Choice(
            same[0],
            f"into the VirtualHost {same[0].label}: the only {scheme} one on the server "
            "(--vhost NAME[:PORT] picks another, --server-wide keeps it at server level)",
        )
    if same:
        return Choice(
            None,
            f"at server level: the only {scheme} VirtualHost, {same[0].label}, is no block apachews can edit"
            if len(same) == 1
            else f"at server level: the server has {len(same)} {scheme} VirtualHosts; --vhost NAME[:PORT] puts the "
            f"routes into one ({'; '.join(v.label for v in same)})",
            same,
        )
    return Choice(None)


def include_path(conf_root: str, preset: str) -> str:
    """Where the routes a vhost includes live: beside the server's config, in no directory it includes."""
    return str(PurePosixPath(conf_root) / "apachews" / f"{preset}.conf")
