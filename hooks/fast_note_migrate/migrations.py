"""The migrations folder on disk: listing, reading and checksums (Prisma's rules)."""

from __future__ import annotations

import codecs
import hashlib
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .errors import ConfigError

SCRIPT_NAME = "migration.sql"
DOWN_SCRIPT_NAME = "down.sql"
LOCK_FILE = "migration_lock.toml"
_PROVIDER = re.compile(r'^\s*provider\s*=\s*"([^"]*)"', re.MULTILINE)


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def render_checksum(text: str) -> str:
    """Lowercase hex sha256 of the script, as Prisma stores it."""
    return _sha256(text).hex()


def _old_format(digest: bytes) -> str:
    """Prisma's early checksums: each byte in hex without zero padding."""
    return "".join(f"{byte:x}" for byte in digest)


def script_matches_checksum(text: str, checksum: str) -> bool:
    """Prisma's comparison: as-is, CRLF->LF, LF->CRLF; old unpadded checksums too."""
    variants = (text, text.replace("\r\n", "\n"), text.replace("\n", "\r\n"))
    for variant in variants:
        digest = _sha256(variant)
        rendered = _old_format(digest) if checksum and len(checksum) != 64 else digest.hex()
        if rendered == checksum:
            return True
    return False


@dataclass(frozen=True)
class Migration:
    """One ``<name>/migration.sql`` folder."""

    name: str
    folder: str  # the migrations folder (a string: a Path each costs at every pod start)

    @cached_property
    def directory(self) -> Path:
        return Path(self.folder, self.name)

    @property
    def script_path(self) -> Path:
        return self.directory / SCRIPT_NAME

    @property
    def down_path(self) -> Path:
        return self.directory / DOWN_SCRIPT_NAME

    @property
    def has_script(self) -> bool:
        return self.script_path.is_file()

    def _no_script_error(self) -> ConfigError:
        return ConfigError(
            f"migration folder {self.name} has no {SCRIPT_NAME}",
            hint=f"add {self.directory / SCRIPT_NAME} or remove the folder",
            prisma_code="P3015",
        )

    def check_exists(self) -> None:
        """Raise P3015 when the folder has no migration.sql. It reads the file (no stat
        first): its bytes are what the checksum needs next."""
        _ = self.raw

    def check(self) -> None:
        """Raise what running this migration would meet before any SQL: no migration.sql
        (P3015), an unreadable file, or one that is not valid UTF-8."""
        self.executable_sql()

    @cached_property
    def raw(self) -> bytes:
        try:
            return _read(f"{self.folder}/{self.name}/{SCRIPT_NAME}")
        except FileNotFoundError:
            raise self._no_script_error() from None
        except OSError as exc:
            raise ConfigError(
                f"cannot read {self.script_path}: {(exc.strerror or str(exc)).lower()}",
                hint="check the file's permissions: the migrator's user must be able to read it",
            ) from None

    @property
    def text(self) -> str:
        """The script as Prisma reads it: UTF-8, invalid bytes replaced by U+FFFD (decoded
        on each use, not kept: a data migration can be large)."""
        return self.raw.decode("utf-8", errors="replace")

    @cached_property
    def checksum(self) -> str:
        if self.is_utf8:  # then the bytes are what Prisma hashes
            return hashlib.sha256(self.raw).hexdigest()
        return render_checksum(self.text)

    @cached_property
    def is_utf8(self) -> bool:
        try:
            self.raw.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    def matches(self, checksum: str) -> bool:
        # The file's bytes as they are first: for valid UTF-8 they are what Prisma hashes
        # (every file at every pod start: the other variants need a decoded copy).
        if hashlib.sha256(self.raw).hexdigest() == checksum:
            return True
        return script_matches_checksum(self.text, checksum)

    def executable_bytes(self) -> bytes:
        """``executable_sql()`` encoded, without another copy of the file: its bytes, the
        BOM left out (refuses a file that is not UTF-8 as executable_sql does)."""
        if not self.is_utf8:
            self.executable_sql()  # raises the error that names the byte
        bom = codecs.BOM_UTF8
        return self.raw[len(bom) :] if self.raw.startswith(bom) else self.raw

    def executable_sql(self) -> str:
        """The SQL to run; refuses a file that is not valid UTF-8 instead of guessing.

        A leading BOM counts for the checksum but is not SQL, so it is not sent.
        """
        try:
            return self.raw.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            line = self.raw[: exc.start].count(b"\n") + 1
            raise ConfigError(
                f"{self.script_path} is not valid UTF-8 (byte 0x{self.raw[exc.start]:02x} "
                f"at line {line})",
                hint="save the file as UTF-8 and deploy again",
            ) from None


def _read(path: str) -> bytes:
    """A file's bytes with two system calls for a small one (Path.read_bytes costs three
    times as much, which counts for 1000 files at every pod start)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        first = os.read(fd, _READ_SIZE)
        if len(first) < _READ_SIZE:  # a regular file's read is short only at its end
            return first
        chunks = [first]
        while chunk := os.read(fd, _READ_SIZE):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


_READ_SIZE = 1 << 16


def _unreadable_folder(path: Path, exc: OSError) -> ConfigError:
    return ConfigError(
        f"cannot read the migrations folder {path}: {(exc.strerror or str(exc)).lower()}",
        hint="check the folder's permissions: the migrator's user must be able to list it "
        "and read its files",
    )


class MigrationsDir:
    """A Prisma ``migrations`` folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def check(self) -> None:
        """Fail early on a missing or unreadable folder, or a lock file for another
        provider (P3019)."""
        if not self.path.is_dir():
            what = "is not a folder" if self.path.exists() else "does not exist"
            raise ConfigError(
                f"the migrations folder {self.path} {what}",
                hint="pass --migrations-dir or set MIGRATIONS_DIR to your prisma/migrations",
            )
        try:
            lock_text = (self.path / LOCK_FILE).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _unreadable_folder(self.path, exc) from None
        found = _PROVIDER.search(lock_text)
        if found and found.group(1) != "postgresql":
            raise ConfigError(
                f'{self.path / LOCK_FILE} says provider = "{found.group(1)}", this migrator '
                'only supports "postgresql"',
                hint="point --migrations-dir at a PostgreSQL migrations folder",
                prisma_code="P3019",
            )

    def list(self) -> list[Migration]:
        """Every sub-folder, ordered by name; a file is no migration."""
        self.check()
        try:  # scandir: the entry types come with the listing, no stat per entry
            with os.scandir(self.path) as scan:
                names = sorted(entry.name for entry in scan if entry.is_dir())
        except OSError as exc:
            raise _unreadable_folder(self.path, exc) from None
        folder = str(self.path)
        return [Migration(name, folder) for name in names]
