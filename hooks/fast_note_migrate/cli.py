"""Command-line parsing only: every verb's work is in ``commands``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .durations import parse_duration
from .errors import EXIT_CODE_MEANINGS, ExitCode, MigrateError

log = logging.getLogger("fast_note_migrate")

EXIT_CODES_HELP = "exit codes (every verb):\n" + "\n".join(
    f"  {int(code)}  {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items())

DESCRIPTION = """\
A drop-in for `prisma migrate deploy/status/resolve` on PostgreSQL: the same
migrations folder, the same _prisma_migrations table and the same advisory lock,
with bounded and explained lock waits, wait-for-schema and verify.

Every option can also be set through the environment variable shown in its help.
Durations are written like 500ms, 30s, 5m or 1h."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _global_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection and folder")
    group.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                       metavar="URL",
                       help="Prisma-style PostgreSQL URL, ?schema= and Prisma's other "
                       "parameters accepted (env: DATABASE_URL)")
    group.add_argument("--migrations-dir", default=_env("MIGRATIONS_DIR", "prisma/migrations"),
                       metavar="DIR",
                       help="the Prisma migrations folder (env: MIGRATIONS_DIR; "
                       "default: prisma/migrations)")
    group.add_argument("--connect-timeout", type=_duration,
                       default=_env("MIGRATE_CONNECT_TIMEOUT", "1m"), metavar="DURATION",
                       help="keep retrying an unreachable database this long, then exit 6 "
                       "(env: MIGRATE_CONNECT_TIMEOUT; default: 1m)")
    group = parser.add_argument_group("output")
    group.add_argument("--log-format", choices=("text", "json"),
                       default=_env("MIGRATE_LOG_FORMAT", "text"),
                       help="logs on stderr as text or JSON lines (env: MIGRATE_LOG_FORMAT)")
    group.add_argument("-v", "--verbose", action="store_true", help="debug logs")
    group.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def _lock_timeout_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lock-timeout", type=_duration,
                        default=_env("MIGRATE_LOCK_TIMEOUT", "5m"), metavar="DURATION",
                        help="wait this long for the migration lock held by another deploy, "
                        "then name the holder and exit 6 (env: MIGRATE_LOCK_TIMEOUT; "
                        "default: 5m; Prisma's is a fixed 10s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fast-note-migrate", description=DESCRIPTION, epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, summary: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=summary, description=summary, epilog=EXIT_CODES_HELP,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        _global_options(sub)
        return sub

    sub = verb("deploy", "apply every pending migration in order (prisma migrate deploy)")
    _lock_timeout_option(sub)
    sub.add_argument("--dry-run", action="store_true",
                     help="print the plan; take no lock and change nothing")

    sub = verb("status", "show every migration's state: applied, pending, failed, edited, "
               "missing locally, rolled back")
    sub.add_argument("--json", action="store_true", help="print one JSON document on stdout")

    sub = verb("wait", "wait until every local migration is applied (for app pods); "
               "the database being ahead is fine")
    sub.add_argument("--timeout", type=_duration, default=_env("MIGRATE_WAIT_TIMEOUT", "10m"),
                     metavar="DURATION",
                     help="give up after this long and exit 3 (env: MIGRATE_WAIT_TIMEOUT; "
                     "default: 10m)")
    sub.add_argument("--interval", type=_duration, default=_env("MIGRATE_WAIT_INTERVAL", "2s"),
                     metavar="DURATION",
                     help="time between two checks (env: MIGRATE_WAIT_INTERVAL; default: 2s)")

    verb("verify", "check that the database matches these migrations: nothing failed, "
         "pending or edited (what `helm test` runs)")

    sub = verb("resolve", "mark a migration applied or rolled back without running it "
               "(prisma migrate resolve)")
    target = sub.add_mutually_exclusive_group(required=True)
    target.add_argument("--applied", metavar="NAME",
                        help="record NAME as applied (baselining, or finished by hand)")
    target.add_argument("--rolled-back", metavar="NAME",
                        help="record the failed migration NAME as rolled back")
    _lock_timeout_option(sub)
    return parser


def _run(args: argparse.Namespace) -> ExitCode:
    from . import commands
    from .db import DatabaseUrl
    from .migrations import MigrationsDir

    ctx = commands.Context(DatabaseUrl.parse(args.database_url),
                           MigrationsDir(args.migrations_dir), args.connect_timeout)
    handlers: dict[str, Callable[[], ExitCode]] = {
        "deploy": lambda: commands.deploy(ctx, lock_timeout=args.lock_timeout,
                                          dry_run=args.dry_run),
        "status": lambda: commands.status(ctx, as_json=args.json),
        "wait": lambda: commands.wait(ctx, timeout=args.timeout, interval=args.interval),
        "verify": lambda: commands.verify(ctx),
        "resolve": lambda: commands.resolve(ctx, applied=args.applied,
                                            rolled_back=args.rolled_back,
                                            lock_timeout=args.lock_timeout),
    }
    return handlers[args.verb]()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from . import logs

    logs.setup(args.log_format, -1 if args.quiet else (1 if args.verbose else 0))
    try:
        code = _run(args)
    except MigrateError as exc:
        log.error("%s", exc)
        if exc.hint:
            log.error("what to do: %s", exc.hint)
        code = exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        code = ExitCode.FAILED
    except Exception as exc:  # a bug or an unforeseen failure: short message, trace with -v
        log.error("unexpected error: %s: %s", type(exc).__name__, exc)
        log.error("what to do: run again with -v for the traceback, and report it")
        log.debug("traceback", exc_info=True)
        code = ExitCode.FAILED
    log.debug("exit %d", int(code))
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
