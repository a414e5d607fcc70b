"""The SSH tests' server: Debian 11's own apache2 (apachews/target:debian11, made by `apachews image target
debian11`; glibc 2.31, no Python) in a container on the host network, its sshd and apache2 listening on
127.0.0.1 only, reached with the system's OpenSSH client through a throwaway key and ssh config (the user's
~/.ssh is never read or written), with a sudo user beside root. tests/fixtures/remote.py and
benchmarks/remote_bench.py use it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from apachews import module
from apachews.httpd import free_port, wait_for_port

IMAGE = "apachews/target:debian11"
SUDO_USER = "admin"

_START = r"""
set -e
useradd -m -s /bin/sh -p '*' {user}  # no password, not locked: sshd refuses locked accounts
echo '{user} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/{user}
for home in /root /home/{user}; do
    mkdir -p $home/.ssh && printf '%s\n' "$PUBKEY" > $home/.ssh/authorized_keys && chmod 700 $home/.ssh
done
chown -R {user}: /home/{user}/.ssh
printf 'Listen 127.0.0.1:{http}\n' > /etc/apache2/ports.conf
sed -i 's/<VirtualHost \*:80>/<VirtualHost 127.0.0.1:{http}>/' /etc/apache2/sites-available/000-default.conf
ssh-keygen -A >/dev/null
mkdir -p /run/sshd
apache2ctl start
exec /usr/sbin/sshd -D -e -p {ssh} -o ListenAddress=127.0.0.1 -o PermitRootLogin=prohibit-password \
    -o PasswordAuthentication=no -o UsePAM=no -o MaxSessions=50 -o MaxStartups=50
"""


@dataclass
class SshServer:
    container: str
    ssh_port: int
    http_port: int
    config: Path  # an ssh config file: Host "debian11" (root) and "debian11-admin" (sudo)

    @property
    def host(self) -> str:
        return "debian11"

    @property
    def admin(self) -> str:
        return f"{SUDO_USER}@debian11-admin"

    def exec(self, script: str, check: bool = True) -> str:
        """Run sh in the container (the test's own view of the server, not apachews')."""
        done = subprocess.run(
            ["docker", "exec", self.container, "sh", "-c", script], capture_output=True, text=True, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{script}: {done.stderr}")
        return done.stdout

    def tree_hash(self, root: str = "/etc/apache2") -> str:
        """Every entry under root: path, type, mode, bytes or link target, hashed."""
        listing = self.exec(
            f"cd {root} && find . -printf '%p %y %m %l\\n' | LC_ALL=C sort && "
            "find . -type f | LC_ALL=C sort | xargs sha256sum"
        )
        return hashlib.sha256(listing.encode()).hexdigest()


def available() -> str | None:
    """Why the target cannot run here, or None when it can."""
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "no OpenSSH client (apt-get install openssh-client)"
    if shutil.which("docker") is None:
        return "no docker CLI"
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, check=False).returncode != 0:
        return f"no {IMAGE} image: run `apachews image target debian11`"
    return None


@contextmanager
def running(work: Path) -> Iterator[SshServer]:
    """The container started (ssh and http on free 127.0.0.1 ports), removed when the block ends."""
    work.mkdir(parents=True, exist_ok=True)
    key = work / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ssh_port, http_port = free_port(), free_port()
    common = (
        f"    HostName 127.0.0.1\n    Port {ssh_port}\n    IdentityFile {key}\n    IdentitiesOnly yes\n"
        f"    IdentityAgent none\n    UserKnownHostsFile {work / 'known_hosts'}\n    StrictHostKeyChecking no\n"
        "    LogLevel ERROR\n"
    )
    config = work / "ssh_config"
    config.write_text(f"Host debian11\n    User root\n{common}Host debian11-admin\n{common}")
    name = f"apachews-ssh-{uuid.uuid4().hex[:10]}"
    public = key.with_suffix(".pub").read_text().strip()
    script = _START.format(user=SUDO_USER, http=http_port, ssh=ssh_port)
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, "--network", "host", "-e", f"PUBKEY={public}",
         "--entrypoint", "sh", IMAGE, "-c", script],
        check=True, capture_output=True,
    )  # fmt: skip
    try:

        def alive() -> bool:
            state = ["docker", "inspect", "-f", "{{.State.Running}}", name]
            return b"true" in subprocess.run(state, capture_output=True, check=False).stdout

        if not wait_for_port(ssh_port, 60, alive) or not wait_for_port(http_port, 30, alive):
            logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True, check=False)
            raise AssertionError(f"the container's sshd or apache2 never listened: {logs.stdout}{logs.stderr}")
        yield SshServer(name, ssh_port, http_port, config)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def portable_module(out: Path) -> Path:
    """mod_proxy_wstunnel.so cross-compiled with zig for glibc 2.17 against this host's 2.4 headers (the
    same module ABI as Debian 11's 2.4.62): it loads there. (Until `apachews build --target` does it.)"""
    out.mkdir(parents=True, exist_ok=True)
    so = out / "mod_proxy_wstunnel.so"
    subprocess.run(
        [sys.executable, "-m", "ziglang", "cc", "-target", "x86_64-linux-gnu.2.17",
         "-shared", "-fPIC", "-O2", "-I/usr/include/apache2", "-I/usr/include/apr-1.0", "-D_GNU_SOURCE", "-DLINUX",
         "-o", str(so), *map(str, module.source_paths())],
        check=True, capture_output=True,
    )  # fmt: skip
    return so


def portable_unavailable() -> str | None:
    """Why portable_module cannot be built here, or None."""
    try:
        import ziglang  # noqa: F401
    except ImportError:
        return "no ziglang (pip install ziglang)"
    if not Path("/usr/include/apache2/httpd.h").exists():
        return "no Apache headers (apt-get install apache2-dev)"
    return None
