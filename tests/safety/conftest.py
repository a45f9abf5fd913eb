"""Fixtures of the safety tests (the database, folder and CLI ones are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from testkit.database import Database, LockHolder


@pytest.fixture
def hold_lock(db: Database) -> Iterator[Callable[..., LockHolder]]:
    """``hold_lock(table, mode)``: a session named report-job holding a table lock."""
    holders: list[LockHolder] = []

    def hold(table: str, mode: str = "ACCESS SHARE") -> LockHolder:
        holder = LockHolder(db, table, mode)
        holders.append(holder)
        return holder

    yield hold
    for holder in holders:
        holder.release()
