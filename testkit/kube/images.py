"""The node agent's image table: which local program stands in for which container image.

There is no container runtime here, so an image reference is mapped to a local runtime:

* ``fast-note-migrate`` (any registry, any tag) -> this repository's migrator, the
  ``fast-note-migrate`` script beside the Python that runs the agent (the image's
  ENTRYPOINT is ``fast-note-migrate``; a pod's ``command`` replaces it, ``args`` follow).
* ``fast-note`` (the app) -> ``testkit/kube/standin_app.py`` (ENTRYPOINT), and the image's
  file tree from the *images folder*: ``<images>/fast-note/<tag>/`` holds the files the
  image would have, e.g. ``<images>/fast-note/1.0.0/app/prisma/migrations/<name>/migration.sql``.
  Each top-level folder of the tag folder is bind-mounted at ``/<name>`` inside the
  container (read-only). A tag without a folder is an ``ErrImagePull``. Without an images
  folder, every tag gets ``examples/prisma/migrations`` at ``/app/prisma/migrations``.
* anything else (busybox, alpine, …) -> the host's own programs: the pod must give a
  ``command``; without one the image is unknown (``ErrImagePull``).

Tests define images with :func:`define_image` (``testkit.harness.Images`` builds on it).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STANDIN_APP = Path(__file__).resolve().parent / "standin_app.py"
EXAMPLE_MIGRATIONS = REPO / "examples" / "prisma" / "migrations"
APP_MIGRATIONS_PATH = "/app/prisma/migrations"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MIGRATOR_IMAGE = "fast-note-migrate"
APP_IMAGE = "fast-note"


class ImagePullError(Exception):
    """The image is not in the table (the agent reports ErrImagePull)."""


@dataclass
class Runtime:
    """What a container of an image runs on this machine."""

    image: str
    entrypoint: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)  # path in the container -> host dir
    is_app: bool = False


def parse_image(ref: str) -> tuple[str, str]:
    """``registry.example.com:5000/acme/fast-note:1.2.3@sha256:…`` -> ("fast-note", "1.2.3")."""
    ref = ref.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    name, _, tag = last.partition(":")
    return name, tag or "latest"


def _venv_bin() -> Path:
    return Path(sys.executable).parent


def resolve(ref: str, images_dir: Path | None) -> Runtime:
    name, tag = parse_image(ref)
    path = f"{_venv_bin()}:{SYSTEM_PATH}"
    if name == MIGRATOR_IMAGE:
        script = _venv_bin() / "fast-note-migrate"
        return Runtime(ref, [str(script)], {"PATH": path})
    if name == APP_IMAGE:
        env = {"PATH": path, "FAST_NOTE_IMAGE": ref, "FAST_NOTE_IMAGE_TAG": tag}
        rt = Runtime(ref, [sys.executable, str(STANDIN_APP)], env, is_app=True)
        if images_dir is None:
            rt.files[APP_MIGRATIONS_PATH] = EXAMPLE_MIGRATIONS
            return rt
        root = images_dir / name / tag
        if not root.is_dir():
            raise ImagePullError(f"image {ref}: no folder {root} in the node agent's image table")
        for entry in sorted(root.iterdir()):
            if entry.is_dir():
                rt.files["/" + entry.name] = entry
        return rt
    return Runtime(ref, [], {"PATH": SYSTEM_PATH})


def define_image(images_dir: Path, ref: str, migrations: dict[str, str | Path]) -> Path:
    """Create the app image ``ref`` in the images folder with these migrations.

    ``migrations`` maps a migration folder name to its SQL text or to an existing
    migration folder/file to copy. Returns the image's migrations folder.
    """
    name, tag = parse_image(ref)
    target = images_dir / name / tag / APP_MIGRATIONS_PATH.lstrip("/")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    lock = EXAMPLE_MIGRATIONS / "migration_lock.toml"
    (target / "migration_lock.toml").write_text(
        lock.read_text() if lock.exists() else 'provider = "postgresql"\n'
    )
    for folder, sql in migrations.items():
        (target / folder).mkdir()
        dest = target / folder / "migration.sql"
        if isinstance(sql, Path):
            src = sql / "migration.sql" if sql.is_dir() else sql
            shutil.copyfile(src, dest)
        else:
            dest.write_text(sql)
    return target
