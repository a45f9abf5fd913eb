"""Command-line parsing only: every verb's work is in ``commands``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from . import __version__
from .durations import parse_duration
from .errors import EXIT_CODE_MEANINGS, ExitCode, MigrateError

if TYPE_CHECKING:
    from .commands import DeployOptions
    from .execution import Settings

log = logging.getLogger("fast_note_migrate")

EXIT_CODES_HELP = "exit codes (every verb):\n" + "\n".join(
    f"  {int(code)}  {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items())

DESCRIPTION = """\
A drop-in for `prisma migrate deploy/status/resolve` on PostgreSQL: the same
migrations folder, the same _prisma_migrations table and the same advisory lock,
with bounded and explained lock waits, wait-for-schema and verify, and for a live
database: a safety lint (squawk), lock and statement timeouts with retries,
CREATE INDEX CONCURRENTLY, expand/contract phases and down migrations.

Every option can also be set through the environment variable shown in its help.
Durations are written like 500ms, 30s, 5m or 1h."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


LOG_FORMATS = ("text", "json")


def _log_format(text: str) -> str:
    # argparse checks `choices` on flags but not on a default from the environment
    if text not in LOG_FORMATS:
        raise argparse.ArgumentTypeError(f"invalid log format {text!r}: use text or json")
    return text


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
    group.add_argument("--log-format", type=_log_format, choices=LOG_FORMATS,
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


def _lint_policy(text: str) -> str:
    if text not in ("block", "warn", "off"):
        raise argparse.ArgumentTypeError(f"invalid lint policy {text!r}: block, warn or off")
    return text


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: a whole number, 0 or more")
    return int(text)


def _lint_policy_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--lint-policy", type=_lint_policy, metavar="block|warn|off",
                        default=_env("MIGRATE_LINT_POLICY", "warn"),
                        help=f"{what}: destructive or locking operations found by squawk "
                        "(drop/rename column or table, type change, NOT NULL without default, "
                        "index without CONCURRENTLY …) block (exit 2), only warn, or (off) "
                        "are not linted; a `-- fast-note-migrate: allow RULE (why)` comment on "
                        "the line before a statement acknowledges it (env: MIGRATE_LINT_POLICY; "
                        "default: warn)")


def _safety_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("safety on a live database")
    group.add_argument("--statement-lock-timeout", type=_duration, metavar="DURATION",
                       default=_env("MIGRATE_STATEMENT_LOCK_TIMEOUT", "5s"),
                       help="lock_timeout for each migration: give up a table lock after this "
                       "long instead of queueing the app's queries behind it; 0 waits forever "
                       "(env: MIGRATE_STATEMENT_LOCK_TIMEOUT; default: 5s)")
    group.add_argument("--statement-timeout", type=_duration, metavar="DURATION",
                       default=_env("MIGRATE_STATEMENT_TIMEOUT", "0"),
                       help="statement_timeout for each migration; 0 is off "
                       "(env: MIGRATE_STATEMENT_TIMEOUT; default: 0)")
    group.add_argument("--lock-retries", type=_count, metavar="N",
                       default=_env("MIGRATE_LOCK_RETRIES", "3"),
                       help="retry a migration that hit the lock timeout (SQLSTATE 55P03) N "
                       "times with backoff, naming the blocking sessions, before it is "
                       "recorded as failed (env: MIGRATE_LOCK_RETRIES; default: 3)")
    group.add_argument("--lock-retry-delay", type=_duration, metavar="DURATION",
                       default=_env("MIGRATE_LOCK_RETRY_DELAY", "1s"),
                       help="backoff before the first retry, doubled for each next one, at "
                       "most 1m (env: MIGRATE_LOCK_RETRY_DELAY; default: 1s)")


def _phase_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("expand/contract phases")
    group.add_argument("--phase", choices=("all", "expand", "contract"),
                       default=_env("MIGRATE_PHASE", "all"),
                       help="expand (pre-upgrade): apply in order up to the first migration "
                       "marked `-- fast-note-migrate: phase=contract` (and refuse an expand "
                       "migration after it); contract (post-upgrade, with --wait-for-rollout): "
                       "apply the rest once the old pods are gone; all: everything in order "
                       "(env: MIGRATE_PHASE; default: all)")
    group.add_argument("--wait-for-rollout", metavar="DEPLOYMENT",
                       default=os.environ.get("MIGRATE_WAIT_FOR_ROLLOUT") or None,
                       help="before applying, wait until this Deployment's rollout is complete "
                       "and no pod of an older ReplicaSet remains; needs the [kubernetes] "
                       "extra and get/list on deployments, replicasets, pods "
                       "(env: MIGRATE_WAIT_FOR_ROLLOUT)")
    group.add_argument("--namespace", metavar="NS",
                       default=os.environ.get("MIGRATE_NAMESPACE") or None,
                       help="the Deployment's namespace (env: MIGRATE_NAMESPACE; default: "
                       "POD_NAMESPACE, the pod's own namespace, or the kubeconfig's)")
    group.add_argument("--rollout-timeout", type=_duration, metavar="DURATION",
                       default=_env("MIGRATE_ROLLOUT_TIMEOUT", "10m"),
                       help="give up waiting for the rollout after this long and exit 3 "
                       "(env: MIGRATE_ROLLOUT_TIMEOUT; default: 10m)")


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
    _lint_policy_option(sub, "lint the pending migrations first")
    _safety_options(sub)
    _phase_options(sub)

    sub = verb("status", "show every migration's state: applied, pending, failed, edited, "
               "missing locally, rolled back")
    sub.add_argument("--json", action="store_true", help="print one JSON document on stdout")

    sub = verb("wait", "wait until every local migration is applied (for app pods); "
               "the database being ahead, or contract migrations pending, is fine")
    sub.add_argument("--timeout", type=_duration, default=_env("MIGRATE_WAIT_TIMEOUT", "10m"),
                     metavar="DURATION",
                     help="give up after this long and exit 3 (env: MIGRATE_WAIT_TIMEOUT; "
                     "default: 10m)")
    sub.add_argument("--interval", type=_duration, default=_env("MIGRATE_WAIT_INTERVAL", "2s"),
                     metavar="DURATION",
                     help="time between two checks (env: MIGRATE_WAIT_INTERVAL; default: 2s)")

    verb("verify", "check that the database matches these migrations: nothing failed, "
         "pending (but contract migrations) or edited (what `helm test` runs)")

    sub = verb("resolve", "mark a migration applied or rolled back without running it "
               "(prisma migrate resolve)")
    target = sub.add_mutually_exclusive_group(required=True)
    target.add_argument("--applied", metavar="NAME",
                        help="record NAME as applied (baselining, or finished by hand)")
    target.add_argument("--rolled-back", metavar="NAME",
                        help="record the failed migration NAME as rolled back")
    _lock_timeout_option(sub)

    sub = verb("lint", "lint the pending migrations (or --all) with squawk for destructive "
               "and locking operations")
    _lint_policy_option(sub, "whether the findings fail the lint (off lists them like "
                        "warn)")
    sub.add_argument("--all", action="store_true",
                     help="lint every migration in the folder, without a database (for CI)")

    sub = verb("down", "undo the applied migrations newer than NAME with their down.sql, "
               "newest first, each in a transaction")
    sub.add_argument("--to", required=True, metavar="NAME",
                     help="the migration to go back to: it stays applied, the newer ones are "
                     "undone and marked rolled back")
    sub.add_argument("--dry-run", action="store_true",
                     help="print the plan; take no lock and change nothing")
    _lock_timeout_option(sub)
    _safety_options(sub)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    from .execution import Settings

    return Settings(lock_timeout=args.statement_lock_timeout,
                    statement_timeout=args.statement_timeout,
                    lock_retries=args.lock_retries, retry_delay=args.lock_retry_delay)


def _deploy_options(args: argparse.Namespace) -> DeployOptions:
    from .commands import DeployOptions
    from .lint import Policy
    from .phases import Phase

    rollout = None
    if args.wait_for_rollout:  # imported only when used: every pod start runs deploy
        from .rollout import Target

        rollout = Target(args.wait_for_rollout, args.namespace, args.rollout_timeout)
    return DeployOptions(lint_policy=Policy(args.lint_policy), execution=_settings(args),
                         phase=Phase(args.phase), rollout=rollout)


def _run(args: argparse.Namespace) -> ExitCode:
    from . import commands
    from .db import DatabaseUrl
    from .lint import Policy
    from .migrations import MigrationsDir

    url = args.database_url
    if args.verb == "lint" and args.all and not url:
        url = "postgresql://localhost/unused"  # lint --all reads files only, never connects
    ctx = commands.Context(DatabaseUrl.parse(url),
                           MigrationsDir(args.migrations_dir), args.connect_timeout)
    handlers: dict[str, Callable[[], ExitCode]] = {
        "deploy": lambda: commands.deploy(ctx, lock_timeout=args.lock_timeout,
                                          dry_run=args.dry_run, options=_deploy_options(args)),
        "status": lambda: commands.status(ctx, as_json=args.json),
        "wait": lambda: commands.wait(ctx, timeout=args.timeout, interval=args.interval),
        "verify": lambda: commands.verify(ctx),
        "resolve": lambda: commands.resolve(ctx, applied=args.applied,
                                            rolled_back=args.rolled_back,
                                            lock_timeout=args.lock_timeout),
        "lint": lambda: commands.lint(ctx, policy=Policy(args.lint_policy),
                                      all_migrations=args.all),
        "down": lambda: commands.down(ctx, to=args.to, lock_timeout=args.lock_timeout,
                                      dry_run=args.dry_run, settings=_settings(args)),
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
