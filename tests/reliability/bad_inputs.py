"""The table of bad inputs: one place for the tests and for docs/errors.md.

Each row is run by ``test_bad_inputs.py`` (expected exit code, the message, the
database unchanged, no password in any output) and rendered as Markdown by

    python -m tests.reliability.bad_inputs --markdown > docs/errors.md

In ``argv`` and ``env``, ``{url}`` is a working URL with a password, ``{server}`` is
``postgresql://postgres:PASSWORD@127.0.0.1:PORT``, ``{db}`` the database name,
``{port}`` its port, ``{dir}`` the migrations folder, ``{free_port}`` a port nothing
listens on.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from fast_note_migrate.errors import EXIT_CODE_MEANINGS
from testkit.migrations_folder import MigrationsFolder

PASSWORD = "Pa55-w0rd-never-shown"

# Folder set-ups: each builds the test's migrations folder.
Setup = Callable[[MigrationsFolder], None]


def one_migration(m: MigrationsFolder) -> None:
    m.add("20240101000001_init", "CREATE TABLE account (id int PRIMARY KEY);")


def migration_sql_is_a_folder(m: MigrationsFolder) -> None:
    one_migration(m)
    (m.path / "20240101000002_oops" / "migration.sql").mkdir(parents=True)


def dangling_symlink(m: MigrationsFolder) -> None:
    one_migration(m)
    folder = m.path / "20240101000002_link"
    folder.mkdir()
    (folder / "migration.sql").symlink_to(m.path / "no-such-file.sql")


def utf16_file(m: MigrationsFolder) -> None:
    one_migration(m)
    m.add("20240101000002_utf16", "CREATE TABLE b (id int);".encode("utf-16"))


def lock_file_is_a_folder(m: MigrationsFolder) -> None:
    one_migration(m)
    (m.path / "migration_lock.toml").mkdir()


def mysql_lock_file(m: MigrationsFolder) -> None:
    one_migration(m)
    (m.path / "migration_lock.toml").write_text('provider = "mysql"\n')


def migrations_dir_is_a_file(m: MigrationsFolder) -> None:
    m.path.rmdir()
    m.path.write_text("20240101000001_init\n")


def edited_then_new(m: MigrationsFolder) -> None:
    one_migration(m)
    m.add("20240101000002_next", "CREATE TABLE b (id int);")


# Database set-ups: SQL run on the fresh database before the command (after the folder).
FAILED_HISTORY = """
CREATE TABLE _prisma_migrations (
    id VARCHAR(36) PRIMARY KEY NOT NULL, checksum VARCHAR(64) NOT NULL,
    finished_at TIMESTAMPTZ, migration_name VARCHAR(255) NOT NULL, logs TEXT,
    rolled_back_at TIMESTAMPTZ, started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count INTEGER NOT NULL DEFAULT 0);
INSERT INTO _prisma_migrations (id, checksum, migration_name, logs)
VALUES ('00000000-0000-4000-8000-000000000001', 'x', '20240101000001_init',
        'Database error code: 42601');
"""
EDITED_HISTORY = FAILED_HISTORY.replace(
    "(id, checksum, migration_name, logs)", "(id, checksum, migration_name, logs, finished_at)"
).replace("'Database error code: 42601')", "'', now())")


@dataclass(frozen=True)
class BadInput:
    id: str
    kind: str  # URL, folder, file, flag, environment, history
    what: str  # the mistake, for the docs
    argv: tuple[str, ...]
    code: int
    message: str  # a phrase the output must contain
    hint: str = ""  # a phrase of the "what to do:" line
    env: dict[str, str] = field(default_factory=dict)
    folder: Setup = one_migration
    sql: str = ""
    known_bug: str = ""  # the row fails today for this reason (an xfail, strict)


def _u(**params: str) -> str:
    return "{url}" + "".join(f"&{k}={v}" for k, v in params.items())


ROWS: list[BadInput] = [
    # URLs
    BadInput(
        "url-missing",
        "URL",
        "no `DATABASE_URL` and no `--database-url`",
        ("deploy",),
        2,
        "no database URL given",
        "set DATABASE_URL",
        env={"DATABASE_URL": ""},
    ),
    BadInput(
        "url-accelerate",
        "URL",
        "a Prisma Accelerate URL (`prisma+postgres://`)",
        ("deploy",),
        2,
        "must start with postgresql://",
        "only PostgreSQL is supported",
        env={"DATABASE_URL": f"prisma+postgres://accelerate.example/?api_key={PASSWORD}"},
    ),
    BadInput(
        "url-sqlite",
        "URL",
        "a SQLite URL (`file:./dev.db`) left from local development",
        ("deploy",),
        2,
        "must start with postgresql://",
        "only PostgreSQL is supported",
        env={"DATABASE_URL": "file:./dev.db"},
    ),
    BadInput(
        "url-port-range",
        "URL",
        "a port out of range",
        ("deploy",),
        2,
        "malformed",
        "write it like",
        env={"DATABASE_URL": f"postgresql://postgres:{PASSWORD}@127.0.0.1:99999/db"},
    ),
    BadInput(
        "url-unencoded-password",
        "URL",
        "a `/` and a `#` in the password, not percent-encoded",
        ("deploy",),
        2,
        "postgresql://****@127.0.0.1",
        "percent-encode",
        env={"DATABASE_URL": f"postgresql://postgres:{PASSWORD}/x#y@127.0.0.1:5432/db"},
    ),
    BadInput(
        "url-unknown-db",
        "URL",
        "a database that does not exist",
        ("deploy",),
        2,
        'database "no_such_db" does not exist',
        "check the user, password and database name",
        env={"DATABASE_URL": "{server}/no_such_db?schema=public"},
    ),
    BadInput(
        "url-unknown-role",
        "URL",
        "a role that does not exist",
        ("status",),
        2,
        'role "nobody_here" does not exist',
        "check the user, password and database name",
        env={"DATABASE_URL": f"postgresql://nobody_here:{PASSWORD}@127.0.0.1:{{port}}/{{db}}"},
    ),
    BadInput(
        "url-sslmode",
        "URL",
        "an invalid `sslmode` parameter",
        ("deploy",),
        2,
        "invalid sslmode value",
        "sslmode takes disable, allow, prefer, require, verify-ca or verify-full",
        env={"DATABASE_URL": _u(sslmode="sometimes")},
    ),
    BadInput(
        "url-tls-root-certificate",
        "URL",
        "`sslmode=verify-full` with an `sslrootcert` file that is not there",
        ("status",),
        2,
        "the file of the URL parameter sslrootcert does not exist: /nonexistent/ca.pem",
        "mount the file, or fix the path in the URL parameter sslrootcert",
        env={"DATABASE_URL": _u(sslmode="verify-full", sslrootcert="/nonexistent/ca.pem")},
    ),
    BadInput(
        "url-tls-not-offered",
        "URL",
        "`sslmode=require` for a server without TLS (not retried as unreachable)",
        ("wait",),
        2,
        "TLS configuration error (URL parameter sslmode)",
        "retrying does not help",
        env={"DATABASE_URL": _u(sslmode="require")},
    ),
    BadInput(
        "url-tls-mixed",
        "URL",
        "Prisma's `sslidentity` (PKCS#12) mixed with libpq's `sslkey`",
        ("deploy",),
        2,
        "mixes Prisma's sslidentity",
        "use one or the other",
        env={"DATABASE_URL": _u(sslidentity="/certs/id.p12", sslkey="/certs/client.key")},
    ),
    BadInput(
        "url-pgbouncer-deploy",
        "URL",
        "`deploy` with `pgbouncer=true`: through a transaction pooler",
        ("deploy",),
        2,
        "deploy does not run through PgBouncer (the URL says pgbouncer=true)",
        "Prisma's directUrl",
        env={"DATABASE_URL": _u(pgbouncer="true")},
    ),
    BadInput(
        "url-pgbouncer-resolve",
        "URL",
        "`resolve` with `pgbouncer=true`",
        ("resolve", "--applied", "20240101000001_init"),
        2,
        "resolve does not run through PgBouncer",
        "Prisma's directUrl",
        env={"DATABASE_URL": _u(pgbouncer="true")},
    ),
    BadInput(
        "url-pgbouncer-value",
        "URL",
        "`pgbouncer=1` (Prisma takes `true` or `false` only)",
        ("status",),
        2,
        "the URL parameter pgbouncer must be true or false, not '1'",
        "write pgbouncer=true",
        env={"DATABASE_URL": _u(pgbouncer="1")},
    ),
    BadInput(
        "url-unreachable",
        "URL",
        "nothing listens at the host and port (`MIGRATE_CONNECT_TIMEOUT=500ms`)",
        ("wait",),
        6,
        "was not reachable within 500ms",
        "check the host and port",
        env={
            "DATABASE_URL": f"postgresql://postgres:{PASSWORD}@127.0.0.1:{{free_port}}/db",
            "MIGRATE_CONNECT_TIMEOUT": "500ms",
        },
    ),
    # folders
    BadInput(
        "dir-default-missing",
        "folder",
        "no `--migrations-dir`, and no `prisma/migrations` in the working directory",
        ("deploy",),
        2,
        "prisma/migrations does not exist",
        "MIGRATIONS_DIR",
        env={"MIGRATIONS_DIR": ""},
    ),
    BadInput(
        "dir-is-file",
        "folder",
        "`MIGRATIONS_DIR` names a file",
        ("status",),
        2,
        "is not a folder",
        "MIGRATIONS_DIR",
        folder=migrations_dir_is_a_file,
    ),
    BadInput(
        "dir-lock-provider",
        "folder",
        '`migration_lock.toml` says `provider = "mysql"`',
        ("deploy",),
        2,
        "P3019",
        "PostgreSQL migrations folder",
        folder=mysql_lock_file,
    ),
    BadInput(
        "dir-lock-is-folder",
        "folder",
        "`migration_lock.toml` is a folder",
        ("deploy",),
        2,
        "is a directory",
        "check the folder's permissions",
        folder=lock_file_is_a_folder,
    ),
    # files
    BadInput(
        "file-is-folder",
        "file",
        "`migration.sql` is a folder",
        ("deploy",),
        2,
        "is a directory",
        "check the file's permissions",
        folder=migration_sql_is_a_folder,
    ),
    BadInput(
        "file-dangling-link",
        "file",
        "`migration.sql` is a dangling symlink",
        ("deploy",),
        2,
        "P3015",
        "or remove the folder",
        folder=dangling_symlink,
    ),
    BadInput(
        "file-utf16",
        "file",
        "a `migration.sql` saved as UTF-16 by an editor",
        ("deploy",),
        2,
        "is not valid UTF-8 (byte 0xff at line 1)",
        "save the file as UTF-8",
        folder=utf16_file,
    ),
    # flags
    BadInput(
        "flag-unknown-verb",
        "flag",
        "a verb that does not exist (`migrate`)",
        ("migrate",),
        2,
        "invalid choice: 'migrate'",
        "run `fast-note-migrate --help` for the verbs",
    ),
    BadInput(
        "flag-no-verb",
        "flag",
        "no verb (the help is printed on stderr)",
        (),
        2,
        "no verb given: use one of deploy, status",
        "run `fast-note-migrate --help` for the verbs",
    ),
    BadInput(
        "flag-resolve-nothing",
        "flag",
        "`resolve` without `--applied` or `--rolled-back`",
        ("resolve",),
        2,
        "one of the arguments --applied --rolled-back is required",
        "run `fast-note-migrate resolve --help`",
    ),
    BadInput(
        "flag-resolve-both",
        "flag",
        "`resolve --applied A --rolled-back B`",
        ("resolve", "--applied", "a", "--rolled-back", "b"),
        2,
        "not allowed with argument",
        "run `fast-note-migrate resolve --help`",
    ),
    BadInput(
        "flag-resolve-unknown",
        "flag",
        "`resolve --applied` a name not in the folder",
        ("resolve", "--applied", "20991231000000_typo"),
        2,
        "P3017",
        "pass the folder name of a local migration",
    ),
    BadInput(
        "flag-resolve-never-applied",
        "flag",
        "`resolve --rolled-back` a migration never applied",
        ("resolve", "--rolled-back", "20240101000001_init"),
        2,
        "P3011",
        "check the name with `fast-note-migrate status`",
    ),
    BadInput(
        "flag-log-format",
        "flag",
        "`--log-format xml`",
        ("status", "--log-format", "xml"),
        2,
        "invalid log format 'xml'",
        "run `fast-note-migrate status --help`",
    ),
    BadInput(
        "flag-duration-unit",
        "flag",
        "`--connect-timeout 10d` (no such unit)",
        ("deploy", "--connect-timeout", "10d"),
        2,
        "invalid duration '10d': write it like 500ms, 30s, 5m or 1h",
        "run `fast-note-migrate deploy --help`",
    ),
    BadInput(
        "flag-extra-argument",
        "flag",
        "an argument no verb takes",
        ("status", "--json", "now"),
        2,
        "unrecognized arguments: now",
        "run `fast-note-migrate status --help`",
    ),
    BadInput(
        "flag-lint-two-on-stdout",
        "flag",
        "`lint --json --sarif -`: two documents on stdout",
        ("lint", "--all", "--json", "--sarif", "-"),
        2,
        "--json and --sarif - both write on stdout: use a file for --sarif",
        "run `fast-note-migrate lint --help`",
    ),
    # environment
    BadInput(
        "env-lock-timeout",
        "environment",
        "`MIGRATE_LOCK_TIMEOUT=forever`",
        ("deploy",),
        2,
        "the environment variable MIGRATE_LOCK_TIMEOUT: invalid duration 'forever'",
        "fix or unset MIGRATE_LOCK_TIMEOUT",
        env={"MIGRATE_LOCK_TIMEOUT": "forever"},
    ),
    BadInput(
        "env-log-format",
        "environment",
        "`MIGRATE_LOG_FORMAT=yaml`",
        ("status",),
        2,
        "the environment variable MIGRATE_LOG_FORMAT: invalid log format 'yaml'",
        "fix or unset MIGRATE_LOG_FORMAT",
        env={"MIGRATE_LOG_FORMAT": "yaml"},
    ),
    BadInput(
        "env-phase",
        "environment",
        "`MIGRATE_PHASE=later` (not a phase)",
        ("deploy",),
        2,
        "the environment variable MIGRATE_PHASE: invalid phase 'later'",
        "fix or unset MIGRATE_PHASE",
        env={"MIGRATE_PHASE": "later"},
    ),
    BadInput(
        "env-dir-missing",
        "environment",
        "`MIGRATIONS_DIR` points nowhere",
        ("verify",),
        2,
        "does not exist",
        "MIGRATIONS_DIR",
        env={"MIGRATIONS_DIR": "/nonexistent/prisma/migrations"},
    ),
    # history (the database's state, not the input, is wrong: each exits without changing it)
    BadInput(
        "history-baseline",
        "history",
        "the schema has tables but no migration history",
        ("deploy",),
        2,
        "P3005",
        "resolve --applied",
        sql="CREATE TABLE legacy (id int);",
    ),
    BadInput(
        "history-failed",
        "history",
        "an earlier migration failed (Prisma's P3009)",
        ("deploy",),
        4,
        "P3009",
        "resolve --rolled-back 20240101000001_init",
        sql=FAILED_HISTORY,
    ),
    BadInput(
        "history-edited",
        "history",
        "`wait` in an image whose migration differs from the applied one",
        ("wait", "--timeout", "1s"),
        5,
        "differs from the one applied",
        "deploy the image the database was migrated with",
        sql=EDITED_HISTORY,
    ),
    BadInput(
        "history-edited-deploy",
        "history",
        "`deploy` of a folder whose applied migration was edited since",
        ("deploy",),
        5,
        "was edited after it was applied",
        "--allow-drift",
        folder=edited_then_new,
        sql=EDITED_HISTORY,
    ),
]


def markdown() -> str:
    """The table for docs/errors.md."""
    lines = [
        "# Errors: bad input and what the migrator says",
        "",
        "Generated from `tests/reliability/bad_inputs.py` "
        "(`python -m tests.reliability.bad_inputs --markdown > docs/errors.md`); each row is "
        "a test that checks the exit code, the message, the `what to do:` line, that the "
        "database is unchanged and that no password appears in any output.",
        "",
        "Exit codes: "
        + " · ".join(
            f"{int(code)} {meaning.split(':')[0]}" for code, meaning in EXIT_CODE_MEANINGS.items()
        )
        + ".",
        "",
        "| kind | mistake | command | exit | message contains | what to do (excerpt) |",
        "|---|---|---|---:|---|---|",
    ]
    for row in ROWS:
        command = " ".join(("fast-note-migrate", *row.argv))
        hint = row.hint or "usage line: see `fast-note-migrate VERB --help`"
        message = row.message.replace("|", "\\|")
        lines.append(
            f"| {row.kind} | {row.what} | `{command}` | {row.code} | `{message}` | {hint} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.bad_inputs")
    parser.add_argument("--markdown", action="store_true", help="print the Markdown table")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown())
    else:
        for row in ROWS:
            print(f"{row.id:28} exit {row.code}  {row.message}")


if __name__ == "__main__":
    main()
