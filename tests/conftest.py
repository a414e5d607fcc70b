"""Shared pytest set-up. Fixtures live in tests/fixtures/, one module per area."""

pytest_plugins = [
    "tests.fixtures.sources",
    "tests.fixtures.apache",
    "tests.fixtures.mirror",
    "tests.fixtures.docker",
]
