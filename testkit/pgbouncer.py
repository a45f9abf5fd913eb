"""A throw-away PgBouncer in transaction pooling mode in front of a PostgresServer.

The system's ``pgbouncer`` binary (Debian's package: ``apt-get install pgbouncer``) runs
in the foreground from a private temporary directory with its own configuration, on a free
port of 127.0.0.1, and is stopped by its pid: the system's PgBouncer service, if any, is
never touched. PgBouncer refuses to run as root, so as root it runs as the unprivileged
user ``nobody``, as the PostgreSQL server does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from testkit.pgserver import UNPRIVILEGED_USER, PostgresServer, free_port


def pgbouncer_binary() -> str | None:
    """The pgbouncer executable on PATH or in Debian's /usr/sbin, or None."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


@dataclass
class PgBouncer:
    """PgBouncer on 127.0.0.1 forwarding every database to ``server``: trust
    authentication (the server's own roles), ``pool_mode = transaction`` and a small pool,
    so that clients share server connections as they do behind a production pooler."""

    server: PostgresServer
    pool_size: int = 4
    port: int = field(default_factory=free_port)
    workdir: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="fast-note-pgbouncer-"))
    )
    process: subprocess.Popen[bytes] | None = None

    @property
    def logfile(self) -> Path:
        return self.workdir / "pgbouncer.log"

    def url(self, database: str, **params: str) -> str:
        """A URL of ``database`` through the pooler, ``pgbouncer=true`` unless overridden."""
        query = "&".join(f"{k}={v}" for k, v in {"pgbouncer": "true", **params}.items())
        return f"postgresql://{self.server.user}@127.0.0.1:{self.port}/{database}?{query}"

    def _write_config(self) -> Path:
        (self.workdir / "userlist.txt").write_text(f'"{self.server.user}" ""\n')
        config = self.workdir / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.server.port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.workdir}\n"
            "auth_type = trust\n"
            f"auth_file = {self.workdir / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 500\n"
            f"logfile = {self.logfile}\n"
            f"admin_users = {self.server.user}\n"
        )
        if os.geteuid() == 0:
            entry = pwd.getpwnam(UNPRIVILEGED_USER)
            for path in (self.workdir, *self.workdir.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        return config

    def start(self, timeout: float = 15.0) -> PgBouncer:
        binary = pgbouncer_binary()
        if binary is None:
            raise RuntimeError("pgbouncer is not installed (apt-get install pgbouncer)")
        config = self._write_config()
        kwargs: dict[str, object] = {}
        if os.geteuid() == 0:
            entry = pwd.getpwnam(UNPRIVILEGED_USER)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid}
        self.process = subprocess.Popen(  # type: ignore[call-overload]
            [binary, str(config)],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **kwargs,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited at start:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen within {timeout}s:\n{self.log()}")

    def clients(self, database: str) -> int:
        """Client connections to ``database`` (the admin console's SHOW CLIENTS, which
        speaks the simple query protocol only)."""
        admin = f"postgresql://{self.server.user}@127.0.0.1:{self.port}/pgbouncer"
        with psycopg.connect(admin, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
            cursor = conn.execute("SHOW CLIENTS")
            column = [d.name for d in cursor.description or []].index("database")
            return sum(1 for row in cursor.fetchall() if row[column] == database)

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def stop(self) -> None:
        """SIGTERM to this PgBouncer's pid (an immediate shutdown), then wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()
