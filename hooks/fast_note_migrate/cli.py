"""Command-line parsing only: every verb's work is in ``commands``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from .durations import parse_duration
from .errors import EXIT_CODE_MEANINGS, ConfigError, ExitCode, MigrateError, Stopped

if TYPE_CHECKING:
    from .deploy import DeployOptions
    from .options import Settings

log = logging.getLogger("fast_note_migrate")

PROG = "fast-note-migrate"
EXIT_CODES_HELP = "exit codes (every verb):\n" + "\n".join(
    textwrap.fill(meaning, 79, initial_indent=f"  {int(code):>3}  ", subsequent_indent=" " * 7)
    for code, meaning in EXIT_CODE_MEANINGS.items()
)

DESCRIPTION = (
    "A drop-in for `prisma migrate deploy/status/resolve` on PostgreSQL: the same migrations "
    "folder, the same _prisma_migrations table and the same advisory lock, with bounded and "
    "explained lock waits, wait-for-schema and verify, and for a live database: a safety "
    "lint (squawk), lock and statement timeouts with retries, CREATE INDEX CONCURRENTLY, "
    "expand/contract phases and down migrations.\n\n"
    "`fast-note-migrate VERB --help` lists a verb's options. Every option can also be set "
    "through the environment variable shown in its help. Durations are written like 500ms, "
    "30s, 5m or 1h. status, verify and lint print JSON with --json, lint SARIF with --sarif."
)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs keep their line breaks, each line wrapped to the terminal;
    an option's help too, so that its environment variable and default stand on a line of
    their own."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            hanging = indent + " " * (len(line) - len(line.lstrip()))
            lines.append(_wrap(line, width, initial_indent=indent, subsequent_indent=hanging))
        return "\n".join(lines)

    def _split_lines(self, text: str, width: int) -> list[str]:
        return [part for line in text.splitlines() for part in _wrap(line, width).splitlines()]


def _wrap(text: str, width: int, initial_indent: str = "", subsequent_indent: str = "") -> str:
    """Wrapped at spaces only: never inside `lint-acknowledgments.toml` or a URL."""
    return textwrap.fill(
        text,
        width,
        initial_indent=initial_indent,
        subsequent_indent=subsequent_indent,
        break_on_hyphens=False,
    )


class _ArgumentError(ConfigError):
    """A mistake in the arguments, or in an environment variable read as one."""


class _Parser(argparse.ArgumentParser):
    """Reports argument errors like every other error (``main``), not on its own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.verbs: dict[str, argparse.ArgumentParser] = {}

    def error(self, message: str) -> NoReturn:
        raise _ArgumentError(message)


def _from_env(convert: Callable[[str], Any], env: str, value: str) -> Callable[[str], Any]:
    """``convert`` that names the environment variable when its value is the bad one."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except argparse.ArgumentTypeError as exc:
            if text != value:
                raise
            raise _ArgumentError(
                f"the environment variable {env}: {exc}",
                hint=f"fix or unset {env} (an option on the command line wins over it)",
            ) from None

    return parse


def _env_option(
    group: argparse._ActionsContainer,
    flag: str,
    env: str,
    default: str | None,
    help: str,
    *,
    default_note: str = "",
    **kwargs: Any,
) -> None:
    """An option that also reads ``env``; its help ends with a line naming the variable
    and the default."""
    shown = default_note or default
    tail = f"[env: {env}" + (f"; default: {shown}]" if shown else "]")
    value = os.environ.get(env)
    if value and "type" in kwargs:
        kwargs["type"] = _from_env(kwargs["type"], env, value)
    group.add_argument(flag, default=value or default, help=f"{help}\n{tail}", **kwargs)


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _one_of(what: str, *allowed: str) -> Callable[[str], str]:
    """A type that checks the value (argparse checks `choices` on flags only, not on a
    default taken from the environment)."""

    def parse(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"invalid {what} {text!r}: use {' or '.join(allowed)}")
        return text

    return parse


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: a whole number, 0 or more")
    return int(text)


def _global_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection and folder")
    _env_option(
        group,
        "--database-url",
        "DATABASE_URL",
        None,
        metavar="URL",
        help="the PostgreSQL URL, written as for Prisma (?schema= and Prisma's other "
        "parameters are read as Prisma reads them); required, except by lint --all",
    )
    _env_option(
        group,
        "--migrations-dir",
        "MIGRATIONS_DIR",
        "prisma/migrations",
        metavar="DIR",
        help="the Prisma migrations folder",
    )
    _env_option(
        group,
        "--connect-timeout",
        "MIGRATE_CONNECT_TIMEOUT",
        "1m",
        type=_duration,
        metavar="DURATION",
        help="keep retrying an unreachable database this long, then exit 6",
    )
    group = parser.add_argument_group("output")
    _env_option(
        group,
        "--log-format",
        "MIGRATE_LOG_FORMAT",
        "text",
        type=_one_of("log format", "text", "json"),
        metavar="text|json",
        help="logs on stderr as text or JSON lines",
    )
    group.add_argument("-v", "--verbose", action="store_true", help="debug logs")
    group.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def _lock_timeout_option(parser: argparse.ArgumentParser) -> None:
    _env_option(
        parser,
        "--lock-timeout",
        "MIGRATE_LOCK_TIMEOUT",
        "5m",
        type=_duration,
        metavar="DURATION",
        help="wait this long for the migration lock another deploy holds (Prisma waits a "
        "fixed 10s), then name the holder and exit 6",
    )


_ACKNOWLEDGE = (
    "A `-- fast-note-migrate: allow RULE (why)` comment on the line before a statement, or "
    "an entry in lint-acknowledgments.toml beside the migrations, acknowledges a finding."
)
DEPLOY_LINT_POLICY_HELP = (
    "what deploy does about the destructive or locking operations squawk finds in the "
    "pending migrations (dropping or renaming a column or table, changing a column's type, "
    "NOT NULL without a default, an index built without CONCURRENTLY …): block refuses with "
    "exit 2 before any change, warn logs them and applies, off does not lint.\n" + _ACKNOWLEDGE
)
LINT_POLICY_HELP = (
    "whether the findings fail the lint: block exits 2 when a destructive or locking "
    "operation is not acknowledged; warn and off list the findings and exit 0.\n" + _ACKNOWLEDGE
)


def _lint_policy_option(parser: argparse.ArgumentParser, help: str) -> None:
    _env_option(
        parser,
        "--lint-policy",
        "MIGRATE_LINT_POLICY",
        "warn",
        type=_one_of("lint policy", "block", "warn", "off"),
        metavar="block|warn|off",
        help=help,
    )


def _safety_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("safety on a live database")
    _env_option(
        group,
        "--statement-lock-timeout",
        "MIGRATE_STATEMENT_LOCK_TIMEOUT",
        "5s",
        type=_duration,
        metavar="DURATION",
        help="lock_timeout for each migration: give up a table lock after this long "
        "instead of queueing the app's queries behind it; 0 waits forever",
    )
    _env_option(
        group,
        "--statement-timeout",
        "MIGRATE_STATEMENT_TIMEOUT",
        "0",
        type=_duration,
        metavar="DURATION",
        help="statement_timeout for each migration; 0 is off",
    )
    _env_option(
        group,
        "--lock-retries",
        "MIGRATE_LOCK_RETRIES",
        "3",
        type=_count,
        metavar="N",
        help="retry a migration that hit the lock timeout (SQLSTATE 55P03) N times "
        "with backoff, naming the blocking sessions, before it is recorded as failed",
    )
    _env_option(
        group,
        "--lock-retry-delay",
        "MIGRATE_LOCK_RETRY_DELAY",
        "1s",
        type=_duration,
        metavar="DURATION",
        help="backoff before the first retry, doubled for each next one, at most 1m",
    )


def _phase_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("expand/contract phases")
    _env_option(
        group,
        "--phase",
        "MIGRATE_PHASE",
        "all",
        type=_one_of("phase", "all", "expand", "contract"),
        metavar="all|expand|contract",
        help="expand (pre-upgrade): apply in order up to the first migration marked "
        "`-- fast-note-migrate: phase=contract` (and refuse an expand migration after "
        "it); contract (post-upgrade, with --wait-for-rollout): apply the rest once "
        "the old pods are gone; all: everything in order",
    )
    _env_option(
        group,
        "--wait-for-rollout",
        "MIGRATE_WAIT_FOR_ROLLOUT",
        None,
        metavar="DEPLOYMENT",
        help="before applying, wait until this Deployment's rollout is complete and "
        "no pod of an older ReplicaSet remains; needs get/list on deployments, "
        "replicasets, pods (in a pod: its service account; elsewhere: kubectl)",
    )
    _env_option(
        group,
        "--namespace",
        "MIGRATE_NAMESPACE",
        None,
        metavar="NS",
        default_note="the pod's own (POD_NAMESPACE), else the kubeconfig's",
        help="the Deployment's namespace",
    )
    _env_option(
        group,
        "--rollout-timeout",
        "MIGRATE_ROLLOUT_TIMEOUT",
        "10m",
        type=_duration,
        metavar="DURATION",
        help="give up waiting for the rollout after this long and exit 3",
    )


def build_parser() -> _Parser:
    parser = _Parser(
        prog=PROG, description=DESCRIPTION, epilog=EXIT_CODES_HELP, formatter_class=_HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # Not required: without a verb, main prints this help and exits 2 (usage).
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")

    def verb(name: str, summary: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=EXIT_CODES_HELP,
            formatter_class=_HelpFormatter,
        )
        _global_options(sub)
        parser.verbs[name] = sub
        return sub

    sub = verb("deploy", "apply every pending migration in order (prisma migrate deploy)")
    _lock_timeout_option(sub)
    sub.add_argument(
        "--dry-run", action="store_true", help="print the plan; take no lock and change nothing"
    )
    sub.add_argument(
        "--allow-drift",
        action="store_true",
        help="apply even though an applied migration was edited (by default "
        "deploy stops with exit 5 before any change, as `wait` does)",
    )
    _lint_policy_option(sub, DEPLOY_LINT_POLICY_HELP)
    _safety_options(sub)
    _phase_options(sub)

    sub = verb(
        "status",
        "show every migration's state: applied, pending, running, "
        "interrupted, failed, edited, missing locally, rolled back",
    )
    sub.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document on stdout instead of the report (its JSON Schema: "
        "https://fast-note.dev/schemas/status/v1.json); logs stay on stderr",
    )

    sub = verb(
        "wait",
        "wait until every local migration is applied (for app pods); "
        "the database being ahead, or contract migrations pending, is fine",
    )
    _env_option(
        sub,
        "--timeout",
        "MIGRATE_WAIT_TIMEOUT",
        "10m",
        type=_duration,
        metavar="DURATION",
        help="give up after this long and exit 3",
    )
    _env_option(
        sub,
        "--interval",
        "MIGRATE_WAIT_INTERVAL",
        "2s",
        type=_duration,
        metavar="DURATION",
        help="the longest time between two checks: a deployer's NOTIFY wakes wait at once, "
        "this poll is the fallback (and the only way through PgBouncer)",
    )

    sub = verb(
        "verify",
        "check that the database matches these migrations (what `helm test` runs): "
        "reachable, nothing failed, edited or pending (pending contract migrations are fine)",
    )
    sub.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document on stdout instead of the report (its JSON Schema: "
        "https://fast-note.dev/schemas/verify/v1.json); logs stay on stderr",
    )

    sub = verb(
        "resolve",
        "mark a migration applied or rolled back without running it (prisma migrate resolve)",
    )
    target = sub.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--applied", metavar="NAME", help="record NAME as applied (baselining, or finished by hand)"
    )
    target.add_argument(
        "--rolled-back", metavar="NAME", help="record the failed migration NAME as rolled back"
    )
    _lock_timeout_option(sub)

    sub = verb(
        "lint",
        "lint the pending migrations (or --all) with squawk for destructive and locking operations",
    )
    _lint_policy_option(sub, LINT_POLICY_HELP)
    sub.add_argument(
        "--all",
        action="store_true",
        help="lint every migration in the folder, without a database (for CI)",
    )
    sub.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document on stdout instead of the findings (its JSON Schema: "
        "https://fast-note.dev/schemas/lint/v1.json); logs stay on stderr",
    )
    sub.add_argument(
        "--sarif",
        metavar="FILE",
        help="also write the findings as a SARIF 2.1.0 log into FILE (- for stdout, "
        "instead of the findings), for code-review annotations",
    )

    sub = verb(
        "down",
        "undo the applied migrations newer than NAME with their down.sql, "
        "newest first, each in a transaction",
    )
    sub.add_argument(
        "--to",
        required=True,
        metavar="NAME",
        help="the migration to go back to: it stays applied, the newer ones are "
        "undone and marked rolled back",
    )
    sub.add_argument(
        "--dry-run", action="store_true", help="print the plan; take no lock and change nothing"
    )
    _lock_timeout_option(sub)
    _safety_options(sub)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    from .options import Settings

    return Settings(
        lock_timeout=args.statement_lock_timeout,
        statement_timeout=args.statement_timeout,
        lock_retries=args.lock_retries,
        retry_delay=args.lock_retry_delay,
    )


def _deploy_options(args: argparse.Namespace) -> DeployOptions:
    from .deploy import DeployOptions
    from .options import Policy
    from .phases import Phase

    rollout = None
    if args.wait_for_rollout:  # imported only when used: every pod start runs deploy
        from .rollout import Target

        rollout = Target(args.wait_for_rollout, args.namespace, args.rollout_timeout)
    return DeployOptions(
        lint_policy=Policy(args.lint_policy),
        execution=_settings(args),
        phase=Phase(args.phase),
        rollout=rollout,
        allow_drift=args.allow_drift,
    )


def _run(args: argparse.Namespace) -> ExitCode:
    from . import commands
    from .db import DatabaseUrl
    from .migrations import MigrationsDir
    from .options import Policy

    url = args.database_url
    if args.verb == "lint" and args.all and not url:
        url = "postgresql://localhost/unused"  # lint --all reads files only, never connects
    migrations = MigrationsDir(args.migrations_dir)
    # Prisma resolves relative certificate paths against the prisma folder: here the folder
    # that holds the migrations folder.
    database = DatabaseUrl.parse(url, config_dir=migrations.path.parent)
    ctx = commands.Context(database, migrations, args.connect_timeout)
    handlers: dict[str, Callable[[], ExitCode]] = {
        "deploy": lambda: commands.deploy(
            ctx, lock_timeout=args.lock_timeout, dry_run=args.dry_run, options=_deploy_options(args)
        ),
        "status": lambda: commands.status(ctx, as_json=args.json),
        "wait": lambda: commands.wait(ctx, timeout=args.timeout, interval=args.interval),
        "verify": lambda: commands.verify(ctx, as_json=args.json),
        "resolve": lambda: commands.resolve(
            ctx, applied=args.applied, rolled_back=args.rolled_back, lock_timeout=args.lock_timeout
        ),
        "lint": lambda: commands.lint(
            ctx,
            policy=Policy(args.lint_policy),
            all_migrations=args.all,
            as_json=args.json,
            sarif=args.sarif,
        ),
        "down": lambda: commands.down(
            ctx,
            to=args.to,
            lock_timeout=args.lock_timeout,
            dry_run=args.dry_run,
            settings=_settings(args),
        ),
    }
    return handlers[args.verb]()


def _log_error(exc: MigrateError) -> None:
    """The message, then the `what to do:` line, each with the exit code (JSON lines)."""
    from .logs import fields

    context = fields(
        exit_code=int(exc.exit_code), prisma_code=exc.prisma_code or None, **exc.fields
    )
    log.error("%s", exc, extra=context)
    if exc.hint:
        log.error("what to do: %s", exc.hint, extra=context)


def _requested_log_format(argv: Sequence[str]) -> str:
    """--log-format or MIGRATE_LOG_FORMAT, read leniently: the arguments did not parse."""
    wanted = os.environ.get("MIGRATE_LOG_FORMAT", "")
    for flag, value in zip(argv, [*argv[1:], ""], strict=True):
        if flag == "--log-format":
            wanted = value
        elif flag.startswith("--log-format="):
            wanted = flag.partition("=")[2]
    return "json" if wanted == "json" else "text"


def _argument_error(
    parser: _Parser, argv: Sequence[str], message: str, *, hint: str = "", usage: bool = True
) -> int:
    """Like every other error: the message and a `what to do:` line on stderr, as JSON lines
    with --log-format json once the verb is known (else as text, after the usage line)."""
    from . import logs

    verb = argv[0] if argv and argv[0] in parser.verbs else ""
    log_format = _requested_log_format(argv) if verb else "text"
    if not hint and verb:
        hint = (
            f"run `{PROG} {verb} --help`: it lists the options, the values they take and "
            "the environment variable each is also read from"
        )
    elif not hint:
        hint = f"run `{PROG} --help` for the verbs, and `{PROG} VERB --help` for a verb's options"
    if log_format == "text" and usage:
        parser.verbs.get(verb, parser).print_usage(sys.stderr)
    logs.setup(log_format, 0, verb)
    _log_error(_ArgumentError(message, hint=hint))
    return int(ExitCode.USAGE)


# Young objects before a garbage collection (Python's default: 700). Every pod start
# allocates a few hundred thousand objects that stay alive (psycopg's adapters, the
# migrations and the history's rows): with the default the collector runs hundreds of times
# for nothing, about 10 % of a no-op start. Cycles are still collected.
GC_THRESHOLD = (100_000, 50, 100)


def main(argv: Sequence[str] | None = None) -> int:
    import gc

    gc.set_threshold(*GC_THRESHOLD)
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.verb == "lint" and args.json and args.sarif == "-":
            parser.error("--json and --sarif - both write on stdout: use a file for --sarif")
    except _ArgumentError as exc:
        return _argument_error(parser, argv, exc.message, hint=exc.hint)
    if args.verb is None:
        parser.print_help(sys.stderr)
        print(file=sys.stderr)
        message = f"no verb given: use one of {', '.join(parser.verbs)}"
        return _argument_error(parser, argv, message, usage=False)
    from . import logs, signals
    from .logs import fields

    logs.setup(args.log_format, -1 if args.quiet else (1 if args.verbose else 0), args.verb)
    try:
        with signals.stop_on_signals():
            code = _run(args)
    except MigrateError as exc:
        code = exc.exit_code
        _log_error(exc)
        log.debug("traceback", exc_info=True)
    except Stopped as stop:
        import signal

        code = stop.exit_code
        log.error(
            "stopped by %s: the statement in progress was cancelled and rolled back, "
            "the lock released",
            signal.Signals(stop.signum).name,
            extra=fields(exit_code=int(code)),
        )
        log.error("what to do: run the same command again", extra=fields(exit_code=int(code)))
    except Exception as exc:  # a bug or an unforeseen failure: short message, trace with -v
        code = ExitCode.FAILED
        log.error(
            "unexpected error: %s: %s", type(exc).__name__, exc, extra=fields(exit_code=int(code))
        )
        log.error(
            "what to do: run again with -v for the traceback, and report it",
            extra=fields(exit_code=int(code)),
        )
        log.debug("traceback", exc_info=True)
    log.debug("exit %d", int(code))
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
