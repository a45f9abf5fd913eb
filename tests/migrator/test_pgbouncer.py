"""Through a real PgBouncer in transaction pooling mode (``?pgbouncer=true``): status, wait,
verify and lint work, also many waits at once; deploy, resolve and down refuse before they
touch the database (the advisory lock and session settings do not survive a transaction
pooler: migrations go to the database itself, Prisma's ``directUrl``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from testkit.cli import Migrator
from testkit.database import Database
from testkit.migrations_folder import MigrationsFolder
from testkit.pgbouncer import PgBouncer, pgbouncer_binary
from testkit.pgserver import PostgresServer, free_port
from testkit.waiting import wait_until

pytestmark = pytest.mark.skipif(
    pgbouncer_binary() is None,
    reason="pgbouncer is not installed (Debian: apt-get install pgbouncer; .ci/run installs it)",
)

WAITERS = 20


@pytest.fixture(scope="module")
def bouncer(pg_server: PostgresServer) -> Iterator[PgBouncer]:
    """PgBouncer (transaction mode, a pool of 4 server connections) before the session's
    PostgreSQL."""
    with PgBouncer(pg_server, pool_size=4) as pooler:
        yield pooler


def pooled(
    bouncer: PgBouncer, db: Database, migrations: MigrationsFolder, **params: str
) -> Migrator:
    return Migrator(bouncer.url(db.name, **params), migrations.path)


def two_migrations(migrations: MigrationsFolder) -> None:
    migrations.add("init", "CREATE TABLE account (id int PRIMARY KEY);")
    migrations.add("notes", "CREATE TABLE note (id int PRIMARY KEY, body text);")


def test_many_waits_through_pgbouncer_succeed_after_a_direct_deploy(
    bouncer: PgBouncer, db: Database, migrations: MigrationsFolder, migrate: Migrator
) -> None:
    """An upgrade: 20 app pods wait for the new migration through the pooler, polling every
    50 ms on 4 shared server connections, while the migration Job deploys it through the
    direct URL. Every wait exits 0 (with prepared statements, the pods' statements collide
    on the shared server connections: DuplicatePreparedStatement)."""
    migrations.add("init", "CREATE TABLE account (id int PRIMARY KEY);")
    assert migrate.run("deploy").code == 0  # the release before
    migrations.add("notes", "CREATE TABLE note (id int PRIMARY KEY, body text);")
    app = pooled(bouncer, db, migrations)
    waiters = [
        app.spawn("wait", "--interval", "50ms", "--timeout", "90s", HOSTNAME=f"app-{i}")
        for i in range(WAITERS)
    ]
    try:
        wait_until(
            lambda: bouncer.clients(db.name) == WAITERS or any(w.poll() for w in waiters),
            60,
            "every wait to connect",
        )
        time.sleep(1.0)  # every pod polls the pending migration many times
        early = [w for w in waiters if w.poll() is not None]
        assert not early, "a wait exited before the deploy:\n" + early[0].communicate()[1]
        deployed = migrate.run("deploy")
        assert deployed.code == 0, deployed.output
        results = [w.communicate(timeout=60) for w in waiters]
    finally:
        for w in waiters:
            if w.poll() is None:
                w.kill()
                w.communicate()
    failures = [(w.returncode, err) for w, (_, err) in zip(waiters, results, strict=True)]
    failures = [(code, err) for code, err in failures if code != 0]
    assert not failures, f"{len(failures)} waits failed, the first:\n{failures[0][1]}"
    assert all("the database is up to date" in err for _, err in results)
    assert len(db.applied()) == 2


def test_status_verify_and_lint_through_pgbouncer_in_another_schema(
    bouncer: PgBouncer, db: Database, migrations: MigrationsFolder
) -> None:
    """The read-only verbs work through the pooler, also for a schema other than public
    (their queries name the schema: no session search_path is needed)."""
    two_migrations(migrations)
    app = pooled(bouncer, db, migrations, schema="app")
    status = app.run("status", "--json")
    assert status.code == 3, status.output
    assert json.loads(status.out)["summary"]["pending"] == 2
    lint = app.run("lint")
    assert lint.code == 0, lint.output
    assert "lint: 2 migration(s)" in lint.out
    direct = Migrator(db.url(schema="app"), migrations.path)
    assert direct.run("deploy").code == 0
    status = app.run("status", "--json")
    assert status.code == 0, status.output
    assert json.loads(status.out)["up_to_date"] is True
    verify = app.run("verify")
    assert verify.code == 0, verify.output
    assert "verify: OK" in verify.out
    assert db.tables("app") == ["_prisma_migrations", "account", "note"]


@pytest.mark.parametrize(
    "argv",
    [
        ("deploy",),
        ("deploy", "--dry-run"),
        ("resolve", "--applied", "{first}"),
        ("resolve", "--rolled-back", "{first}"),
        ("down", "--to", "{first}"),
    ],
    ids=["deploy", "deploy-dry-run", "resolve-applied", "resolve-rolled-back", "down"],
)
def test_migrating_verbs_refuse_pgbouncer_before_touching_the_database(
    argv: tuple[str, ...], bouncer: PgBouncer, db: Database, migrations: MigrationsFolder
) -> None:
    """deploy, resolve and down with ``pgbouncer=true``: exit 2, naming directUrl, and the
    database as it was."""
    two_migrations(migrations)
    first = sorted(p.name for p in migrations.path.iterdir())[0]
    before = db.snapshot()
    result = pooled(bouncer, db, migrations).run(*(a.format(first=first) for a in argv))
    assert result.code == 2, result.output
    assert "pgbouncer=true" in result.output
    assert "directUrl" in result.output
    assert "what to do:" in result.output
    assert "Traceback" not in result.output
    assert db.snapshot() == before


def test_the_refusal_comes_before_any_connection(
    db: Database, migrations: MigrationsFolder
) -> None:
    """Nothing listens at the URL's port: the refusal is immediate (exit 2), not a
    connection attempt retried for --connect-timeout (exit 6)."""
    two_migrations(migrations)
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/{db.name}?pgbouncer=true"
    started = time.monotonic()
    result = Migrator(url, migrations.path).run("deploy", MIGRATE_CONNECT_TIMEOUT="30s")
    assert result.code == 2, result.output
    assert time.monotonic() - started < 15
    assert "not reachable" not in result.output
