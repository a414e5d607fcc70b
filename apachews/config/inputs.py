"""The values a `Deployment` takes from its options, each validated before it can reach a file (no directive
injection): backend URLs, the public URL, paths, --allow clients, CA files."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from apachews.errors import BadInput

_URL_CHARS = re.compile(r"[A-Za-z0-9._~:/\[\]-]+")
_PATH_RE = re.compile(r"/[A-Za-z0-9._~/-]*")
_NETLOC_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]+)?")
# Words mod_authz_host reads as something other than a host: "Allow from all" lets everyone in on 2.2.
_ALLOW_RESERVED = ("all", "env", "none", "local", "granted", "denied")
_FILE_RE = re.compile(r"/[A-Za-z0-9._/-]+")
_HOST_RE = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


@dataclass(frozen=True)
class Backend:
    tls: bool
    netloc: str  # host:port, IPv6 in brackets
    path: str

    def url(self, kind: str, path_suffix: str = "") -> str:
        scheme = {"ws": "ws", "http": "http"}[kind] + ("s" if self.tls else "")
        return f"{scheme}://{self.netloc}{join_path(self.path, path_suffix) if path_suffix else self.path}"


def validate_backend(value: str, option: str = "--backend") -> Backend:
    if not _URL_CHARS.fullmatch(value or ""):
        raise BadInput(
            f"{option} {value!r} has characters that are not allowed in a backend URL",
            hint="use scheme://host:port/path with letters, digits and . _ ~ : / - only",
        )
    try:
        parts = urlsplit(value)
    except ValueError as error:  # e.g. "ws://[zz]/": brackets around something that is no IPv6 address
        raise BadInput(f"{option} {value!r} is not a valid URL: {error}") from None
    if parts.scheme not in ("ws", "wss", "http", "https"):
        raise BadInput(f"{option} {value!r}: the scheme must be ws, wss, http or https")
    if not _NETLOC_RE.fullmatch(parts.netloc):
        raise BadInput(
            f"{option} {value!r}: {parts.netloc!r} is not host[:port]",
            hint="e.g. ws://127.0.0.1:8080/ or ws://[::1]:8080/",
        )
    try:
        port = parts.port
    except ValueError:
        raise BadInput(f"{option} {value!r}: the port must be a number from 1 to 65535") from None
    host = parts.hostname or ""
    if port is not None and not 1 <= port <= 65535 or parts.port == 0:
        raise BadInput(f"{option} {value!r}: the port must be a number from 1 to 65535")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise BadInput(f"{option} {value!r}: no user, query or fragment in a backend URL")
    try:
        address = ipaddress.ip_address(host)
        netloc_host = f"[{host}]" if address.version == 6 else host
    except ValueError:
        if not _HOST_RE.fullmatch(host):
            raise BadInput(f"{option} {value!r}: {host!r} is not a valid host name") from None
        netloc_host = host
    tls = parts.scheme in ("wss", "https")
    default_port = 443 if tls else 80
    path = parts.path or "/"
    validate_path(path, option)
    return Backend(tls, f"{netloc_host}:{port or default_port}", path)


@dataclass(frozen=True)
class Public:
    """Where users reach this server (--public-url): written into the app-side settings, never into Apache's files
    except the scheme (RequestHeader X-Forwarded-Proto)."""

    scheme: str
    netloc: str  # host[:port], the port only when it is not the scheme's default

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    @property
    def host(self) -> str:
        return self.netloc.rsplit(":", 1)[0] if not self.netloc.endswith("]") else self.netloc


DEFAULT_PUBLIC_URL = "https://www.example.org"


def validate_public_url(value: str) -> Public:
    parts = urlsplit(value or "") if _URL_CHARS.fullmatch(value or "") else None
    if parts is None or parts.scheme not in ("http", "https") or not _NETLOC_RE.fullmatch(parts.netloc):
        raise BadInput(
            f"--public-url {value!r} is not scheme://host[:port]",
            hint="the URL users open, e.g. https://apps.example.org or http://10.0.0.5:8080 (http or https)",
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise BadInput(f"--public-url {value!r}: give scheme://host[:port] only", hint="the path is --path")
    default = {"http": ":80", "https": ":443"}[parts.scheme]
    netloc = parts.netloc[: -len(default)] if parts.netloc.endswith(default) else parts.netloc
    return Public(parts.scheme, netloc.lower())


def validate_path(value: str, option: str = "--path") -> str:
    if not _PATH_RE.fullmatch(value or "") or "//" in value or "/../" in f"{value}/" or "/./" in f"{value}/":
        raise BadInput(
            f"{option} {value!r} is not a safe URL path",
            hint="start with / and use letters, digits and . _ ~ / - only (no //, no ..)",
        )
    return value


@dataclass(frozen=True)
class Allowed:
    value: str
    is_ip: bool

    def __str__(self) -> str:
        return self.value


def validate_allow(value: str) -> Allowed:
    if (value or "").lower() in _ALLOW_RESERVED or (value or "").lower().startswith("env="):
        raise BadInput(
            f"--allow {value!r} is a keyword to Apache, not a client",
            hint="leave --allow out to let every client in; give IP addresses, CIDR ranges or host names",
        )
    try:
        return Allowed(str(ipaddress.ip_network(value, strict=False)), True)
    except ValueError:
        pass
    if _HOST_RE.fullmatch(value or ""):
        return Allowed(value, False)
    raise BadInput(f"--allow {value!r} is neither an IP address, a CIDR range nor a host name")


def validate_ca_file(value: str, option: str = "--backend-ca") -> str:
    """An absolute path to a PEM file of CA certificates (SSLProxyCACertificateFile)."""
    if not _FILE_RE.fullmatch(value or "") or "/../" in f"{value}/" or "//" in value:
        raise BadInput(
            f"{option} {value!r} is not an absolute file path apachews can write into a config",
            hint="give the absolute path of the PEM file (letters, digits and . _ / - only)",
        )
    return value


def join_path(base: str, suffix: str) -> str:
    if not suffix:
        return base
    return base.rstrip("/") + suffix


def proxy_target(location: str, url: str) -> str:
    """The ProxyPass URL for `location`, with a trailing slash exactly where the location has one: mod_proxy
    swaps the one prefix for the other, so a mismatch turns /vnc/vnc.html into //vnc.html (or drops a /)."""
    scheme, rest = url.split("://", 1)
    netloc, slash, path = rest.partition("/")
    path = "/" + path if slash else ""
    if location.endswith("/"):
        path = path if path.endswith("/") else path + "/"
    else:
        path = path.rstrip("/")
    return f"{scheme}://{netloc}{path}"
