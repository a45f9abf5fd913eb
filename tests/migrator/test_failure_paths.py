"""Interrupted, terminated and half-finished runs end in a known, recoverable state."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from testkit.cli import CLI, Migrator, clean_environment
from testkit.database import Database, LockHolder
from testkit.gate import GATED_MIGRATION, Gate, migrator_runs
from testkit.migrations_folder import MigrationsFolder
from testkit.pgserver import REPO
from testkit.waiting import wait_until


class Pid1:
    """The CLI as PID 1 of its own PID namespace, as in a container."""

    def __init__(self, migrate: Migrator, verb: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", *CLI, *migrate.argv(verb, *args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=clean_environment(),
        )
        self.pid1 = 0
        wait_until(self._find_child, 10, "the migrator to start as PID 1")

    def _find_child(self) -> bool:
        children = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        self.pid1 = int(children[0]) if children else 0
        return bool(self.pid1)

    def terminate(self) -> tuple[int, str, float]:
        """SIGTERM as Kubernetes sends it; the exit code, stderr and seconds to exit."""
        started = time.monotonic()
        os.kill(self.pid1, signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=20)
        finally:
            self.proc.kill()
        return self.proc.returncode, err, time.monotonic() - started


needs_pid_namespace = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="a PID namespace of its own needs root and unshare",
)


@needs_pid_namespace
def test_sigterm_to_pid1_cancels_the_migration_and_releases_the_lock(
    db: Database, migrations: MigrationsFolder, migrate: Migrator
) -> None:
    """As PID 1 the migrator stops within seconds on SIGTERM with exit 143; the running
    migration is rolled back, no row is left and the lock is free."""
    migrations.add("20240101000000_slow", "CREATE TABLE t (x int);\nSELECT pg_sleep(120);\n")
    pid1 = Pid1(migrate, "deploy")
    wait_until(lambda: migrator_runs(db, "pg_sleep"), 20, "the migration to run")

    code, err, seconds = pid1.terminate()

    assert code == 143, err
    assert seconds < 8, f"took {seconds:.1f}s to stop"
    assert "stopped by SIGTERM" in err
    db.settle()
    assert db.tables() == ["_prisma_migrations"]
    assert db.history() == []


@needs_pid_namespace
def test_sigterm_to_pid1_stops_a_wait_at_once(
    db: Database, migrations: MigrationsFolder, migrate: Migrator
) -> None:
    """``wait`` in an app pod's init container stops on SIGTERM, not after its timeout."""
    migrations.add("20240101000000_init", "CREATE TABLE t (x int);")
    pid1 = Pid1(migrate, "wait", "--timeout", "5m", "--interval", "200ms")
    wait_until(lambda: db.migrator_sessions() == 1, 20, "wait to connect")
    time.sleep(0.5)

    code, err, seconds = pid1.terminate()

    assert code == 143, err
    assert seconds < 5
    db.settle()


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "terminated"])
def test_an_interrupted_statement_by_statement_migration_resumes(
    db: Database, migrations: MigrationsFolder, migrate: Migrator, stop: signal.Signals
) -> None:
    """Killed (eviction, OOM) or terminated in the middle: while it runs, ``status`` says
    running and ``wait`` keeps waiting; afterwards the next deploy resumes at the first
    statement that did not commit, without running the committed ones again."""
    name = migrations.add("20240101000000_split", GATED_MIGRATION)
    with Gate(db) as gate:
        deployer = migrate.spawn("deploy", "--statement-lock-timeout", "0", capture=False)
        try:
            wait_until(gate.reached, 20, "the migration to wait at its 4th statement")

            running = migrate("status", "--json")
            state = json.loads(running.out)["migrations"][0]
            assert running.code == 3 and state["state"] == "running", running.output
            waiting = migrate("wait", "--timeout", "300ms", "--interval", "100ms")
            assert waiting.code == 3, waiting.output
            assert "being applied now" in waiting.err

            deployer.send_signal(stop)
            deployer.wait(timeout=20)
            # the server ends the backend of a vanished client within its check interval;
            # opening the gate before would let the orphaned statement finish
            wait_until(lambda: db.migrator_sessions() == 0, 15, "the deployer's session to end")
        finally:
            deployer.kill()
    db.settle()

    interrupted = migrate("status")
    assert interrupted.code == 3, interrupted.output
    assert "INTERRUPTED" in interrupted.out
    assert "3 of 5 statements done" in interrupted.out
    assert migrate("wait", "--timeout", "200ms", "--interval", "100ms").code == 3

    resumed = migrate("deploy")

    assert resumed.code == 0, resumed.output
    assert "resumes at statement 4 of 5" in resumed.err
    assert db.query("SELECT x FROM t ORDER BY x") == [(1,), (2,)]
    assert db.scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_x'::regclass")
    [row] = db.history()
    assert (row.name, row.applied, row.logs, row.steps) == (name, True, None, 1)
    assert migrate("verify").code == 0


def test_an_interrupted_migration_whose_file_changed_is_not_resumed(
    db: Database, migrations: MigrationsFolder, migrate: Migrator
) -> None:
    """Resuming runs the rest of the file that was started: a changed file stops deploy
    with exit 5 before any change."""
    migrations.add("20240101000000_split", GATED_MIGRATION)
    with Gate(db) as gate:
        deployer = migrate.spawn("deploy", "--statement-lock-timeout", "0", capture=False)
        try:
            wait_until(gate.reached, 20, "the migration to wait")
            deployer.kill()
            deployer.wait(timeout=20)
            wait_until(lambda: db.migrator_sessions() == 0, 15, "the deployer's session to end")
        finally:
            deployer.kill()
    db.settle()
    migrations.script("20240101000000_split").write_text(GATED_MIGRATION + "SELECT 1;\n")
    before = db.snapshot()

    result = migrate("deploy")

    assert result.code == 5, result.output
    assert "has changed since" in result.err
    assert db.snapshot() == before


def test_a_file_that_leaves_its_transaction_open_fails(
    db: Database, migrations: MigrationsFolder, migrate: Migrator
) -> None:
    """BEGIN without COMMIT: what it did would roll back at disconnect, so the migration
    is recorded as failed (exit 1, naming the BEGIN) and nothing after it is applied."""
    name = migrations.add(
        "20240101000000_open", "CREATE TABLE a (x int);\nBEGIN;\nINSERT INTO a VALUES (1);\n"
    )
    migrations.add("20240101000001_next", "CREATE TABLE b (x int);")

    result = migrate("deploy")

    assert result.code == 1, result.output
    assert "leaves a transaction open: the BEGIN at line 2 has no COMMIT" in result.err
    assert db.tables() == ["_prisma_migrations", "a"]
    assert db.query("SELECT count(*) FROM a") == [(0,)]
    [row] = db.history()
    assert row.name == name and not row.finished and "BEGIN at line 2" in (row.logs or "")
    assert migrate("status").code == 4


def test_a_lock_timeout_inside_the_files_own_transaction_retries_the_whole_block(
    db: Database, migrations: MigrationsFolder, migrate: Migrator
) -> None:
    """55P03 inside BEGIN … COMMIT aborts the transaction: the retry starts again at the
    BEGIN (not at the failed statement, which would meet 25P02), and the block's INSERT is
    applied once."""
    migrations.add("20240101000000_gate", "CREATE TABLE gate (x int);")
    assert migrate("deploy").code == 0
    migrations.add(
        "20240101000001_block",
        "CREATE TABLE b (x int);\nBEGIN;\n"
        "INSERT INTO b VALUES (1);\nALTER TABLE gate ADD COLUMN y int;\nCOMMIT;\n",
    )
    holder = LockHolder(db, "gate")
    holder.release_after(1.5)

    result = migrate(
        "deploy",
        "--statement-lock-timeout",
        "300ms",
        "--lock-retries",
        "10",
        "--lock-retry-delay",
        "100ms",
    )

    assert result.code == 0, result.output
    assert "retry 1/10" in result.err
    assert db.query("SELECT x FROM b") == [(1,)]
    assert db.columns("gate") == ["x", "y"]


def test_deploy_refuses_an_edited_migration_before_any_change(
    db: Database, migrations: MigrationsFolder, migrate: Migrator
) -> None:
    """An applied migration edited afterwards stops deploy with exit 5 (the hook Job fails
    and the old pods keep serving) instead of applying the rest and leaving every new pod's
    ``wait`` to fail; ``--allow-drift`` goes on deliberately."""
    migrations.add("20240101000000_init", "CREATE TABLE a (x int);")
    assert migrate("deploy").code == 0
    migrations.script("20240101000000_init").write_text("CREATE TABLE a (x int, y int);")
    migrations.add("20240101000001_next", "CREATE TABLE b (x int);")
    before = db.snapshot()

    refused = migrate("deploy")

    assert refused.code == 5, refused.output
    assert "20240101000000_init was edited after it was applied" in refused.err
    assert "--allow-drift" in refused.err
    assert db.snapshot() == before
    allowed = migrate("deploy", "--allow-drift")
    assert allowed.code == 0, allowed.output
    assert "b" in db.tables()


@pytest.mark.parametrize(
    "existing",
    [
        "CREATE VIEW v AS SELECT 1 AS x",
        "CREATE MATERIALIZED VIEW m AS SELECT 1 AS x",
        "CREATE TABLE p (x int) PARTITION BY RANGE (x)",
        "CREATE TABLE spatial_ref_sys (srid int PRIMARY KEY); "
        "CREATE VIEW geometry_columns AS SELECT 1 AS x",
    ],
    ids=["view", "materialized-view", "partitioned-table", "postgis"],
)
def test_only_ordinary_tables_need_a_baseline(
    db: Database, migrations: MigrationsFolder, migrate: Migrator, existing: str
) -> None:
    """P3005 as Prisma decides it: views, partitioned tables and PostGIS's own tables do
    not make a fresh database look like one that needs baselining."""
    db.run(existing)
    migrations.add("20240101000000_init", "CREATE TABLE a (x int);")

    result = migrate("deploy")

    assert result.code == 0, result.output
    assert db.applied() == ["20240101000000_init"]


def test_an_ordinary_table_still_needs_a_baseline(
    db: Database, migrations: MigrationsFolder, migrate: Migrator
) -> None:
    db.run("CREATE TABLE legacy (x int)")
    migrations.add("20240101000000_init", "CREATE TABLE a (x int);")

    result = migrate("deploy")

    assert result.code == 2 and "P3005" in result.err and "legacy" in result.err


def test_status_json_shows_the_files_checksum_for_a_pending_migration_rolled_back_before(
    db: Database, migrations: MigrationsFolder, migrate: Migrator
) -> None:
    """A failed migration, resolved as rolled back and fixed: what deploy will apply is the
    fixed file, so that is the checksum status shows."""
    migrations.add("20240101000000_bad", "CREATE TABLE a (x nonexistent_type);")
    assert migrate("deploy").code == 1
    assert migrate("resolve", "--rolled-back", "20240101000000_bad").code == 0
    migrations.script("20240101000000_bad").write_text("CREATE TABLE a (x int);")

    document = json.loads(migrate("status", "--json").out)

    [item] = document["migrations"]
    assert item["state"] == "pending" and item["rolled_back_before"]
    from fast_note_migrate.migrations import render_checksum

    assert item["checksum"] == render_checksum("CREATE TABLE a (x int);")


def test_connections_use_tcp_keepalives(db: Database) -> None:
    """A vanished database host is noticed in about 90 s, not the kernel's two hours."""
    from fast_note_migrate.db import DatabaseUrl, connect

    conn = connect(DatabaseUrl.parse(db.url()), "status", 5)
    try:
        params = conn.info.get_parameters()
    finally:
        conn.close()
    assert params.get("keepalives") == "1" and params.get("keepalives_idle") == "30"


def test_wait_reconnects_after_its_backend_is_terminated(
    db: Database, migrations: MigrationsFolder, migrate: Migrator
) -> None:
    """A failover or an administrator's pg_terminate_backend is not the end of ``wait``:
    it connects again and goes on waiting."""
    migrations.add("20240101000000_init", "CREATE TABLE a (x int);")
    waiter = migrate.spawn("wait", "--timeout", "60s", "--interval", "200ms")
    try:
        wait_until(lambda: db.migrator_sessions() == 1, 20, "wait to connect")
        db.run(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
            "application_name LIKE 'fast-note-migrate wait%%'"
        )
        wait_until(lambda: db.migrator_sessions() == 1, 20, "wait to connect again")
        assert migrate("deploy").code == 0
        _, err = waiter.communicate(timeout=30)
    finally:
        waiter.kill()
    assert waiter.returncode == 0, err
    assert "lost the database connection" in err and "reconnecting" in err


def test_wait_reconnects_after_a_database_restart(migrations: MigrationsFolder) -> None:
    """PostgreSQL restarted (an RDS reboot): ``wait`` retries within --connect-timeout."""
    from testkit.pgserver import PostgresServer

    migrations.add("20240101000000_init", "CREATE TABLE a (x int);")
    with PostgresServer() as server:
        database = Database.on(server)
        migrate = Migrator(database.url(), migrations.path)
        waiter = migrate.spawn(
            "wait", "--timeout", "60s", "--interval", "200ms", "--connect-timeout", "30s"
        )
        try:
            wait_until(lambda: database.migrator_sessions() == 1, 20, "wait to connect")
            server.restart()
            assert migrate.run("deploy").code == 0
            _, err = waiter.communicate(timeout=40)
        finally:
            waiter.kill()
    assert waiter.returncode == 0, err
    assert "reconnecting" in err


def test_wait_is_woken_by_the_deployers_notify_not_by_its_next_poll(
    db: Database, migrations: MigrationsFolder, migrate: Migrator
) -> None:
    """With a poll interval of ten minutes, ``wait`` still ends as soon as the deploy
    commits: the deployer's NOTIFY wakes it (the poll is only the fallback)."""
    migrations.add("20240101000000_init", "CREATE TABLE a (x int);")
    waiter = migrate.spawn("wait", "--timeout", "15m", "--interval", "10m")
    try:
        wait_until(lambda: db.migrator_sessions() == 1, 20, "wait to connect")
        assert migrate("deploy").code == 0
        _, err = waiter.communicate(timeout=30)
    finally:
        waiter.kill()
    assert waiter.returncode == 0, err
    assert "up to date" in err


def test_an_interrupted_run_recorded_with_another_statement_count_is_not_resumed(
    db: Database, migrations: MigrationsFolder, migrate: Migrator
) -> None:
    """Progress recorded by a migrator that split the same file differently (another
    version) cannot say where to go on: deploy stops with exit 5 before any change."""
    from fast_note_migrate.history import PROGRESS
    from fast_note_migrate.migrations import render_checksum

    name = migrations.add("20240101000000_split", GATED_MIGRATION)
    assert migrate("status").code == 3  # creates nothing; the table comes next
    db.run(
        "CREATE TABLE _prisma_migrations (id VARCHAR(36) PRIMARY KEY, checksum VARCHAR(64) "
        "NOT NULL, finished_at TIMESTAMPTZ, migration_name VARCHAR(255) NOT NULL, logs TEXT, "
        "rolled_back_at TIMESTAMPTZ, started_at TIMESTAMPTZ NOT NULL DEFAULT now(), "
        "applied_steps_count INTEGER NOT NULL DEFAULT 0)"
    )
    db.run(
        "INSERT INTO _prisma_migrations (id, checksum, migration_name, logs) "
        "VALUES ('00000000-0000-4000-8000-000000000001', %s, %s, %s)",
        render_checksum(GATED_MIGRATION),
        name,
        PROGRESS.format(done=3, total=9, next=4),
    )
    before = db.snapshot()

    result = migrate("deploy")

    assert result.code == 5, result.output
    assert "splits it into 5" in result.err
    assert db.snapshot() == before
