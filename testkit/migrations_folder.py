"""A Prisma migrations folder built by a test, and the example migrations it can copy.

The examples are ``examples/app/prisma/migrations`` (the example app's Prisma history) followed
by ``examples/safety/migrations`` (an expand/contract rename of ``User.email``, each step
with its ``down.sql``).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from testkit.pgserver import REPO

PRISMA_EXAMPLES = REPO / "examples" / "app" / "prisma" / "migrations"
SAFETY_EXAMPLES = REPO / "examples" / "safety" / "migrations"
PRISMA_LAST = "20240301120000_index_notes_updated_at"  # last of examples/app/prisma
RELEASE_N = "20240401090400_validate_user_email_address"  # last expand step of the rename

_TIMESTAMPED = re.compile(r"\d+_")


def example_folders() -> list[Path]:
    """Every example migration folder, in name order."""
    return sorted(
        (p for base in (PRISMA_EXAMPLES, SAFETY_EXAMPLES) for p in base.iterdir() if p.is_dir()),
        key=lambda p: p.name,
    )


class MigrationsFolder:
    """Builds a Prisma migrations folder (one sub-folder per migration, each with its
    ``migration.sql`` and optionally a ``down.sql``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        self.count = 0  # migrations added so far

    def add(self, name: str, sql: str | bytes, *, down: str | bytes | None = None) -> str:
        """Add a migration and return its folder name. A ``name`` that starts with a
        timestamp (``20240101000000_init``) is used as it is; a bare slug (``init``) gets
        the timestamp ``2024010100NNNN``, NNNN counting the migrations added."""
        self.count += 1
        if not _TIMESTAMPED.match(name):
            name = f"2024010100{self.count:04d}_{name}"
        folder = self.path / name
        folder.mkdir()
        self.script(name).write_bytes(_encoded(sql))
        if down is not None:
            self.down_script(name).write_bytes(_encoded(down))
        return name

    def script(self, name: str) -> Path:
        return self.path / name / "migration.sql"

    def down_script(self, name: str) -> Path:
        return self.path / name / "down.sql"

    def remove(self, name: str) -> None:
        """Delete a migration's folder."""
        shutil.rmtree(self.path / name)

    def remove_down(self, name: str) -> None:
        self.down_script(name).unlink()

    def copy_examples(self, *, since: str = "", upto: str = "~") -> list[str]:
        """Copy the example migrations named after ``since``, up to ``upto`` (all of them by
        default; ``upto=PRISMA_LAST``: the Prisma history only) and return their names."""
        names = []
        for source in example_folders():
            if since < source.name <= upto:
                shutil.copytree(source, self.path / source.name)
                self.count += 1
                names.append(source.name)
        return names


def _encoded(sql: str | bytes) -> bytes:
    return sql.encode() if isinstance(sql, str) else sql
