"""A stand-in for the fast-note app in the end-to-end tests (the ``fast-note`` image).

It serves HTTP on 127.0.0.1:$PORT (the node agent gives every pod its own port) and
answers every GET path -- so the chart's readiness and liveness paths, whatever they are:

* 200 and a JSON body once it can read the database (``DATABASE_URL``):
  ``SELECT migration_name FROM _prisma_migrations`` (finished, not rolled back);
* 503 until then (no database, no ``_prisma_migrations`` table yet).

The body tells the image, the migrations the image carries (``/app/prisma/migrations``,
i.e. ``MIGRATIONS_DIR``) and those applied in the database, so a test can ask a pod which
image it runs and what it sees. ``STANDIN_REQUIRE_MIGRATIONS=1`` makes it strict: 503 while
any of the image's migrations is not applied (an app that needs its schema).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg

QUERY = (
    "SELECT migration_name FROM _prisma_migrations "
    "WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL ORDER BY migration_name"
)
MIGRATIONS_DIR = Path(os.environ.get("STANDIN_MIGRATIONS_DIR", "/app/prisma/migrations"))


def local_migrations() -> list[str]:
    if not MIGRATIONS_DIR.is_dir():
        return []
    return sorted(p.name for p in MIGRATIONS_DIR.iterdir() if (p / "migration.sql").is_file())


def check_database() -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {
        "image": os.environ.get("FAST_NOTE_IMAGE", ""),
        "pod": os.environ.get("HOSTNAME", ""),
        "image_migrations": local_migrations(),
    }
    url = os.environ.get("DATABASE_URL")
    if not url:
        body["error"] = "DATABASE_URL is not set"
        return 503, body
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            applied = [row[0] for row in conn.execute(QUERY)]
    except psycopg.Error as exc:
        body["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return 503, body
    body["applied_migrations"] = applied
    missing = sorted(set(body["image_migrations"]) - set(applied))
    body["missing_migrations"] = missing
    if missing and os.environ.get("STANDIN_REQUIRE_MIGRATIONS") == "1":
        body["error"] = f"{len(missing)} migration(s) of this image are not applied"
        return 503, body
    return 200, body


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = check_database()
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: Any) -> None:
        if not self.path.startswith(("/health", "/ready", "/live")):
            sys.stderr.write(f"{time.strftime('%H:%M:%S')} {fmt % args}\n")


def main() -> int:
    port = int(os.environ.get("PORT", "3000"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    status, body = check_database()
    print(
        f"fast-note stand-in ({body['image'] or 'no image'}) on 127.0.0.1:{port}, "
        f"{len(body['image_migrations'])} migrations in the image, database: "
        f"{'ok' if status == 200 else body.get('error')}",
        flush=True,
    )

    def stop(*_: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever(poll_interval=0.2)
    print("fast-note stand-in stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
