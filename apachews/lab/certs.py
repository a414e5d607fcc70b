"""Lab TLS: a self-signed certificate for 127.0.0.1, made at test time."""

from __future__ import annotations

import subprocess
from pathlib import Path

from apachews.errors import JobFailed


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (as a SAN, so it verifies), made at test time."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    result = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise JobFailed("openssl could not make a test certificate", hint=result.stderr[-1000:])
    return cert, key
