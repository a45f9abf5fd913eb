"""PostgreSQL restarts in the middle of a deploy (a failover, a crash): the migrator
exits with a clear error, or resumes, and never records a migration that did not
commit. Runs on its own PostgreSQL (fsync on, as in production), not the session one."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from testkit.pgserver import PostgresServer

from .conftest import CLI, REPO, Database, Migrations, new_database, wait_until

COUNT = 12


@pytest.fixture(scope="module")
def own_server() -> Iterator[PostgresServer]:
    with PostgresServer(fsync=True) as server:
        yield server


def build(migrations: Migrations) -> list[str]:
    names = []
    for i in range(1, COUNT + 1):
        name = f"20240101{i:06d}_slow{i:02d}"
        migrations.add("", f"CREATE TABLE s{i:02d} (id int);\nINSERT INTO s{i:02d} VALUES ({i});\n"
                           "SELECT pg_sleep(0.1);\n", name=name)
        names.append(name)
    return names


def consistent(db: Database, names: list[str]) -> list[str]:
    """Every recorded migration finished and its table holds its row; every other one
    left nothing. Returns the recorded names."""
    rows = db.query("SELECT migration_name, finished_at IS NOT NULL, rolled_back_at IS NULL "
                    "FROM _prisma_migrations ORDER BY migration_name")
    assert all(finished and not_rolled_back for _, finished, not_rolled_back in rows), rows
    recorded = [r[0] for r in rows]
    assert recorded == names[:len(recorded)]
    tables = set(db.tables())
    for i, name in enumerate(names, 1):
        assert (f"s{i:02d}" in tables) == (name in recorded), name
    return recorded


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restart_mid_deploy(own_server: PostgresServer, migrations: Migrations,
                                     mode: str) -> None:
    """`fast` ends every session (a planned restart); `immediate` is a crash with
    recovery. The migration in flight is rolled back by PostgreSQL, and not recorded."""
    names = build(migrations)
    db = new_database(own_server)
    env = {**os.environ, "DATABASE_URL": db.url(), "MIGRATIONS_DIR": str(migrations.path),
           "MIGRATE_CONNECT_TIMEOUT": "20s"}
    deployer = subprocess.Popen([*CLI, "deploy"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    wait_until(lambda: (db.scalar("SELECT count(*) FROM _prisma_migrations "
                                  "WHERE finished_at IS NOT NULL")
                        if db.scalar("SELECT to_regclass('_prisma_migrations') IS NOT NULL")
                        else 0) >= 3, timeout=60, what="3 migrations applied")
    own_server.stop(mode)
    own_server.start()
    out, err = deployer.communicate(timeout=120)
    output = out + err
    print(f"exit {deployer.returncode}: {err.strip().splitlines()[-2:]}")
    assert "Traceback" not in output
    if deployer.returncode == 0:  # the migrator reconnected and resumed
        assert consistent(db, names) == names
    else:
        assert deployer.returncode in (1, 6), output
        assert "lost the database connection" in err or "not reachable" in err, err
        assert "what to do:" in err
        recorded = consistent(db, names)
        assert 3 <= len(recorded) < COUNT
        in_flight = names[len(recorded)]
        assert in_flight in err, f"the error does not name {in_flight}:\n{err}"
    done = subprocess.run([*CLI, "deploy"], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert consistent(db, names) == names
    assert db.scalar("SELECT count(*) FROM _prisma_migrations") == COUNT
