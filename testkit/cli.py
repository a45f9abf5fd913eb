"""Running the real ``fast-note-migrate`` CLI: in-process (output captured by pytest's
``capsys``) or as a separate process with a controlled environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fast_note_migrate.cli import main
from testkit.pgserver import REPO

if TYPE_CHECKING:
    import pytest

CLI = [sys.executable, "-m", "fast_note_migrate"]


def is_migrator_variable(name: str) -> bool:
    """Whether the migrator reads this environment variable (``DATABASE_URL``,
    ``MIGRATIONS_DIR``, ``MIGRATE_*``)."""
    return name in ("DATABASE_URL", "MIGRATIONS_DIR") or name.startswith("MIGRATE_")


def clean_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without the migrator's variables, plus ``env``."""
    return {**{k: v for k, v in os.environ.items() if not is_migrator_variable(k)}, **(env or {})}


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err


def run_cli(
    *argv: str,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
    timeout: float = 60,
    wrapper: Sequence[str] = (),
) -> CliResult:
    """``fast-note-migrate ARGV`` as a separate process: the migrator's variables are
    exactly those of ``env``; ``wrapper`` is a command prefix (``setpriv …``)."""
    done = subprocess.run(
        [*wrapper, *CLI, *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_environment(env),
        timeout=timeout,
        check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


class Migrator:
    """``fast-note-migrate VERB --database-url URL --migrations-dir DIR ARGS`` against one
    database and one migrations folder (without ``--migrations-dir`` when ``migrations_dir``
    is None: ``prisma/migrations`` of the working directory)."""

    def __init__(
        self,
        url: str,
        migrations_dir: Path | None,
        capsys: pytest.CaptureFixture[str] | None = None,
    ) -> None:
        self.url = url
        self.dir = migrations_dir
        self.capsys = capsys

    def argv(self, verb: str, *args: str) -> list[str]:
        folder = ["--migrations-dir", str(self.dir)] if self.dir is not None else []
        return [verb, "--database-url", self.url, *folder, *args]

    def __call__(self, verb: str, *args: str) -> CliResult:
        """In this process, through ``fast_note_migrate.cli.main``, with the output of this
        call only (needs ``capsys``)."""
        assert self.capsys is not None, "running in-process needs pytest's capsys"
        self.capsys.readouterr()
        code = main(self.argv(verb, *args))
        captured = self.capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    def run(self, verb: str, *args: str, timeout: float = 60, **env: str) -> CliResult:
        """As a separate process, until it exits; ``env`` adds environment variables."""
        return run_cli(*self.argv(verb, *args), env=env, timeout=timeout)

    def spawn(
        self, verb: str, *args: str, capture: bool = True, **env: str
    ) -> subprocess.Popen[str]:
        """As a separate process, started and returned; stdout and stderr are pipes with
        ``capture``, else discarded. ``env`` adds environment variables (``HOSTNAME=…``)."""
        output = subprocess.PIPE if capture else subprocess.DEVNULL
        return subprocess.Popen(
            [*CLI, *self.argv(verb, *args)],
            stdout=output,
            stderr=output,
            text=True,
            env=clean_environment(env),
            cwd=REPO,
        )
