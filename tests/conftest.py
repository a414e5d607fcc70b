"""Shared pytest set-up. Fixtures live in tests/fixtures/, one module per area.

Markers follow the fixtures a test uses (directly or through other fixtures), so they cannot be forgotten:
`-m "not docker"` skips everything that needs an engine. `make test` runs `-m "not slow"`: one Docker build and
a few presets per proof; `make test-all` adds the slow ones (every preset on Debian 11, the real applications,
a second build at once, the local builder, the soak).
"""

from __future__ import annotations

import signal

import pytest

pytest_plugins = [
    "tests.fixtures.sources",
    "tests.fixtures.apache",
    "tests.fixtures.mirror",
    "tests.fixtures.docker",
    "tests.fixtures.target",
    "tests.fixtures.distros",
    "tests.fixtures.remote",
]

# fixture -> the markers every test using it gets
FIXTURE_MARKERS = {
    "docker_engine": ("docker",),
    "base_image": ("docker",),  # its users build httpd in a container (a minute or more, cold)
    "debian11_image": ("docker",),
    "ssh_server": ("docker",),  # a container of Debian 11's apache2 behind a real sshd
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for fixture, markers in FIXTURE_MARKERS.items():
            if fixture in used:
                for marker in markers:
                    item.add_marker(marker)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # CI runners, `timeout` and `docker stop` send SIGTERM: unwind like Ctrl-C, so that every `with` block and
    # fixture finaliser stops the Apaches, containers and keepers the tests started.
    signal.signal(signal.SIGTERM, _interrupt)
