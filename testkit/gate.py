"""Holding a migration at a chosen statement: an advisory lock the test holds (the gate)
keeps the migration's ``SELECT pg_advisory_lock(GATE)`` waiting, so the test can look at a
running migration, stop its deployer there, and then let it go."""

from __future__ import annotations

from types import TracebackType

from testkit.database import Database

GATE = 4242

# Runs statement by statement (CREATE INDEX CONCURRENTLY); its 4th statement waits at the gate.
GATED_MIGRATION = f"""CREATE TABLE t (x int);
INSERT INTO t VALUES (1);
CREATE INDEX CONCURRENTLY t_x ON t (x);
SELECT pg_advisory_lock({GATE});
INSERT INTO t VALUES (2);
"""


def migrator_runs(db: Database, needle: str) -> bool:
    """Whether a migrator session runs a statement containing ``needle`` right now."""
    return bool(
        db.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
            "application_name LIKE 'fast-note-migrate%%' AND query LIKE %s AND state = 'active'",
            f"%{needle}%",
        )
    )


class Gate:
    """Closed while the ``with`` block runs (a session named ``gate`` holds the lock)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.conn = db.connect(application_name="gate")

    def __enter__(self) -> Gate:
        self.conn.execute(f"SELECT pg_advisory_lock({GATE})")
        return self

    def reached(self) -> bool:
        """Whether a migrator waits at the gate."""
        return migrator_runs(self.db, f"pg_advisory_lock({GATE})")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.conn.close()
