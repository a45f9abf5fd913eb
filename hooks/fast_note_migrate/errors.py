"""The one exception tree of the migrator and the one table of exit codes.

Every verb returns an ``ExitCode``; every error carries the code it exits with and
a hint that tells the user what to do next.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes, the same for every verb (documented in the README)."""

    OK = 0
    FAILED = 1  # a migration or the database failed
    USAGE = 2  # usage or configuration error
    NOT_UP_TO_DATE = 3  # pending migrations; `wait` timed out
    BLOCKED = 4  # a failed migration blocks the history (Prisma's P3009 state)
    DRIFT = 5  # an applied migration was edited, or is missing locally where that matters
    TIMEOUT = 6  # timed out waiting for the lock or the database
    INTERRUPTED = 130  # stopped by SIGINT (128 + 2): the running statement was cancelled
    TERMINATED = 143  # stopped by SIGTERM (128 + 15): the running statement was cancelled


EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "ok",
    ExitCode.FAILED: "failed: a migration or the database failed",
    ExitCode.USAGE: "usage or configuration error",
    ExitCode.NOT_UP_TO_DATE: "not up to date: pending migrations, or `wait` timed out",
    ExitCode.BLOCKED: "a failed migration blocks the history (Prisma's P3009 state)",
    ExitCode.DRIFT: "drift: an applied migration was edited, or is missing locally",
    ExitCode.TIMEOUT: "timed out waiting for the migration lock or the database",
    ExitCode.INTERRUPTED: "interrupted (SIGINT): the running statement was cancelled and "
    "rolled back, the lock released",
    ExitCode.TERMINATED: "terminated (SIGTERM): the running statement was cancelled and "
    "rolled back, the lock released",
}


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived. A KeyboardInterrupt, so that psycopg cancels the
    statement in progress on the server before it lets this propagate."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode(128 + self.signum)


class MigrateError(Exception):
    """Root of every error the migrator reports to the user."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(
        self,
        message: str,
        *,
        hint: str = "",
        prisma_code: str = "",
        fields: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.prisma_code = prisma_code
        self.fields = fields or {}  # for JSON log lines: migration, sqlstate …

    def __str__(self) -> str:
        prefix = f"{self.prisma_code}: " if self.prisma_code else ""
        return f"{prefix}{self.message}"


class ConfigError(MigrateError):
    """Bad input: flags, environment, URL, migrations folder, files."""

    exit_code = ExitCode.USAGE


class DatabaseError(MigrateError):
    """The database answered with an error we cannot handle."""

    exit_code = ExitCode.FAILED


class MigrationFailed(MigrateError):
    """A migration's SQL failed (Prisma's P3018); it is recorded as failed."""

    exit_code = ExitCode.FAILED


class NotUpToDate(MigrateError):
    """Pending migrations remain, or `wait` ran out of time."""

    exit_code = ExitCode.NOT_UP_TO_DATE


class HistoryBlocked(MigrateError):
    """A failed migration blocks every later deploy (Prisma's P3009)."""

    exit_code = ExitCode.BLOCKED


class Drift(MigrateError):
    """An applied migration was edited after it was applied, or is missing locally."""

    exit_code = ExitCode.DRIFT


class LockTimeout(MigrateError):
    """Another migrator held the advisory lock for longer than --lock-timeout."""

    exit_code = ExitCode.TIMEOUT


class ConnectTimeout(MigrateError):
    """The database did not become reachable within --connect-timeout."""

    exit_code = ExitCode.TIMEOUT
