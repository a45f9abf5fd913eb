"""The container images of the end-to-end tests on a real node (kubelet and containerd),
built with buildah from the project's own Dockerfiles, without a registry, cached by input.

* ``fast-note-migrate:<version>`` (:func:`migrator_image`): ``hooks/Dockerfile`` as it is;
  the version is ``__version__`` of the migrator, the chart's appVersion. Its pip steps get
  the host's CA bundle as a read-only volume (never a layer).
* ``fast-note:<tag>`` (:func:`build_app`): ``examples/app/Dockerfile`` with exactly the given
  migrations at ``prisma/migrations`` of the build context. Tags share every layer but the
  migrations, so each extra tag costs seconds.
* ``fast-note-e2e/pause:3.2`` (:data:`PAUSE_IMAGE`), the pods' sandbox: ``pause.c`` of the
  cached Kubernetes source, compiled statically.

The Dockerfiles name public base images; stand-ins are built under their names first and
never exported: ``debian:bookworm-slim`` (mmdebstrap, variant minbase, from the machine's
apt sources) and ``python:3.11-slim-bookworm`` (``dockerfiles/python.Dockerfile`` on it).

Everything lives in :data:`CACHE`: buildah's own storage (overlay driver; never the host's
default storage), the rootfs tarball, build logs, and one docker-archive per image, named
by a hash of its inputs (Dockerfile, context files, base image id), so an unchanged image
is neither rebuilt nor exported again. :func:`import_images` loads archives into a
containerd under the names the kubelet looks up (:func:`normalized`).
``python -m testkit.kube.images`` builds them all, with the example app as ``fast-note:dev``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tools.fetch_tools import PINS

CACHE = Path(os.environ.get("FAST_NOTE_E2E_CACHE", "/var/cache/fast-note-e2e")) / "images"
REPO = Path(__file__).resolve().parents[2]
EXAMPLE_APP = REPO / "examples" / "app"
EXAMPLE_MIGRATIONS = EXAMPLE_APP / "prisma" / "migrations"
APP_REPOSITORY = "fast-note"
BUNDLED_REPOSITORY = "fast-note-migrations"  # the migrator with an app tag's migrations inside
PAUSE_IMAGE = "fast-note-e2e/pause:3.2"

_DOCKERFILES = Path(__file__).resolve().parent / "dockerfiles"
_DEBIAN = "debian:bookworm-slim"
_PYTHON = "python:3.11-slim-bookworm"
_APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
_HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
_SLIM = ("man", "doc", "info", "locale", "lintian")  # what Docker's slim images leave out
_MMDEBSTRAP = (
    "--variant=minbase",
    "--format=tar",
    "--skip=output/dev",  # the runtime provides /dev
    *(f"--dpkgopt=path-exclude=/usr/share/{folder}/*" for folder in _SLIM),
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    # As in Docker's debian images: no package caches or downloaded .debs left in layers.
    '--aptopt=Dir::Cache::pkgcache ""',
    '--aptopt=Dir::Cache::srcpkgcache ""',
    '--aptopt=DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; }',
)
_APP_FILES = ("server.js", "stage-rootfs.sh")  # what examples/app/Dockerfile copies
_IMPORTED_FROM = "fast-note-e2e.archive"  # containerd label: the archive of an image
_PAUSE_CFLAGS = ("-static", "-O2", "-Wall", "-Werror", "-DVERSION=v3.2")
# hooks/Dockerfile's context after .dockerignore (which is an input too).
_MIGRATOR_INPUTS = (
    ".dockerignore",
    "pyproject.toml",
    "README.md",
    "hooks/requirements.lock",
    "hooks/build.lock",
    "hooks/fast_note_migrate",
)


class ImageError(RuntimeError):
    """A build, an export or an import failed; the message ends with its log's last lines."""


def migrator_image() -> str:
    """``fast-note-migrate:<__version__>``, the tag the chart deploys by default."""
    source = (REPO / "hooks" / "fast_note_migrate" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', source, re.MULTILINE)
    if match is None:
        raise ImageError("no __version__ in hooks/fast_note_migrate/__init__.py")
    return f"fast-note-migrate:{match[1]}"


def normalized(ref: str) -> str:
    """The name containerd and the kubelet use: ``fast-note:1.0.0`` is
    ``docker.io/library/fast-note:1.0.0``, ``fast-note-e2e/pause:3.2`` is
    ``docker.io/fast-note-e2e/pause:3.2`` (Docker's rules; nothing is pulled)."""
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return ref
    if ":" not in ref.rpartition("/")[2] and "@" not in ref:
        ref += ":latest"
    return f"docker.io/{ref}" if rest else f"docker.io/library/{ref}"


def example_migrations() -> dict[str, Path]:
    """The example app's migrations: folder name -> folder, in order."""
    folders = sorted(p for p in EXAMPLE_MIGRATIONS.iterdir() if (p / "migration.sql").is_file())
    return {p.name: p for p in folders}


def ensure_images(
    app_tags: Mapping[str, Mapping[str, str | Path]], bundled: Iterable[str] = ()
) -> list[Path]:
    """Build what is missing: the migrator, pause and ``fast-note:<tag>`` for each of
    ``app_tags`` (tag -> migrations, as :func:`build_app` takes them), and for the tags in
    ``bundled`` also ``fast-note-migrations:<tag>`` (examples/app/migrator.Dockerfile: the
    migrator with that tag's migrations inside). Returns the archives to import, in order."""
    with _locked():
        migrator = _archive(_migrator_spec(_python()))
        archives = [migrator, pause_archive()]
        archives += [build_app(tag, migrations) for tag, migrations in app_tags.items()]
        for tag in bundled:
            with _app_context(tag, app_tags[tag]) as context:
                archives.append(_archive(_bundled_spec(tag, context, migrator)))
    return archives


def build_app(tag: str, migrations: Mapping[str, str | Path]) -> Path:
    """The archive of ``fast-note:<tag>`` carrying exactly ``migrations``: folder name ->
    SQL text, or an existing migration folder (its migration.sql is copied)."""
    with _locked():
        debian = _debian()
        with _app_context(tag, migrations) as context:
            return _archive(_app_spec(tag, context, debian))


def pause_archive() -> Path:
    """The archive of :data:`PAUSE_IMAGE` alone (built if missing)."""
    with _locked():
        _compile_pause()
        return _archive(_pause_spec())


def unbuilt(app_tags: Mapping[str, Mapping[str, str | Path]]) -> list[str]:
    """The images :func:`ensure_images` would build or export now; builds nothing."""
    debian = _stored(_debian_spec())
    python = _stored(_python_spec(debian)) if debian else None
    missing = []
    if python is None or not _archive_path(_migrator_spec(python)).exists():
        missing.append(migrator_image())
    try:
        pause_built = _pause_binary().exists() and _archive_path(_pause_spec()).exists()
    except ImageError:  # no Kubernetes source to take pause.c from
        pause_built = False
    if not pause_built:
        missing.append(PAUSE_IMAGE)
    for tag, migrations in app_tags.items():
        if debian is None or not _app_exported(tag, migrations, debian):
            missing.append(f"{APP_REPOSITORY}:{tag}")
    return missing


def import_images(address: str, archives: Iterable[Path]) -> None:
    """Import archives into the containerd at ``address`` (namespace ``k8s.io``, the
    kubelet's), unpacked for its default snapshotter. An image imported from the same
    archive before (a label says which) is not imported again."""
    ctr = ["ctr", "--address", address, "-n", "k8s.io", "images"]
    rows = [line.split() for line in _run([*ctr, "ls"]).splitlines()[1:]]
    labels = {row[0]: row[-1].split(",") for row in rows if row}  # REF … LABELS
    for archive in archives:
        name = _archive_ref(archive)
        label = f"{_IMPORTED_FROM}={archive.name}"
        if label in labels.get(name, []):
            _log(f"{name}: imported already, from {archive.name}")
            continue
        with _step(f"importing {archive.name}"):
            _run([*ctr, "import", str(archive)])
            _run([*ctr, "label", name, label])


# --- the images --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """One ``buildah bud``: what it builds, from what, and what its result depends on."""

    ref: str  # the name the pods use
    dockerfile: Path
    context: Path
    upstream: str  # what the image is built on: the base image's id, the rootfs's key
    inputs: tuple[str, ...] = (".",)  # the context's files and folders the image holds
    volumes: tuple[str, ...] = ()
    build_args: tuple[str, ...] = ()

    def key(self) -> str:
        digest = hashlib.sha256()
        for part in (self.ref, self.upstream, *self.volumes, *self.build_args):
            _feed(digest, part.encode())
        _feed(digest, self.dockerfile.read_bytes())
        for path in _files(self.context, self.inputs):
            _feed(digest, str(path.relative_to(self.context)).encode())
            _feed(digest, b"x" if os.access(path, os.X_OK) else b"-")
            _feed(digest, path.read_bytes())
        return digest.hexdigest()

    @property
    def label(self) -> str:
        path = self.dockerfile
        return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


def _debian_spec() -> _Spec:
    folder = CACHE / "debian" / _rootfs_key()  # holds rootfs.tar
    return _Spec(_DEBIAN, _DOCKERFILES / "debian.Dockerfile", folder, folder.name, inputs=())


def _python_spec(debian: str) -> _Spec:
    return _Spec(_PYTHON, _DOCKERFILES / "python.Dockerfile", _DOCKERFILES, debian, inputs=())


def _migrator_spec(python: str) -> _Spec:
    ca_volume = f"{_HOST_CA}:{_HOST_CA}:ro"  # pip reaches PyPI with the host's trust
    dockerfile = REPO / "hooks" / "Dockerfile"
    return _Spec(migrator_image(), dockerfile, REPO, python, _MIGRATOR_INPUTS, (ca_volume,))


def _pause_spec() -> _Spec:
    folder = _pause_binary().parent
    return _Spec(PAUSE_IMAGE, _DOCKERFILES / "pause.Dockerfile", folder, "", inputs=("pause",))


def _app_spec(tag: str, context: Path, debian: str) -> _Spec:
    return _Spec(f"{APP_REPOSITORY}:{tag}", EXAMPLE_APP / "Dockerfile", context, debian)


def _bundled_spec(tag: str, context: Path, migrator: Path) -> _Spec:
    dockerfile = EXAMPLE_APP / "migrator.Dockerfile"
    build_arg = f"MIGRATOR={normalized(migrator_image())}"
    ref = f"{BUNDLED_REPOSITORY}:{tag}"
    return _Spec(ref, dockerfile, context, migrator.name, ("prisma",), build_args=(build_arg,))


def _debian() -> str:
    _rootfs()
    return _base(_debian_spec())


def _python() -> str:
    return _base(_python_spec(_debian()))


def _app_exported(tag: str, migrations: Mapping[str, str | Path], debian: str) -> bool:
    with _app_context(tag, migrations) as context:
        return _archive_path(_app_spec(tag, context, debian)).exists()


def _rootfs_key() -> str:
    sources = _apt_sources()
    return _digest("bookworm", *_MMDEBSTRAP, str(sources), sources.read_text())[:16]


def _apt_sources() -> Path:
    return next(p for p in _APT_SOURCES if p.exists())


def _rootfs() -> Path:
    """The bookworm minbase tarball, made once per apt sources and options."""
    tarball = _debian_spec().context / "rootfs.tar"
    if tarball.exists():
        return tarball
    shutil.rmtree(tarball.parent.parent, ignore_errors=True)  # an older rootfs
    tarball.parent.mkdir(parents=True)
    partial = tarball.with_name("partial.tar")
    sources = _apt_sources()
    with _step(f"mmdebstrap bookworm (minbase, the apt sources of {sources})"):
        # In a mount namespace of its own: the chroot's /proc, /sys, /dev mounts stay there.
        argv = [*_UNSHARE, "mmdebstrap", *_MMDEBSTRAP, "bookworm", str(partial), str(sources)]
        _run(argv, log=CACHE / "logs" / "mmdebstrap.log")
    partial.rename(tarball)
    return tarball


def _pause_binary() -> Path:
    """Where the static pause binary of the current pause.c and flags is (or will be)."""
    source = _pause_source()
    compiler = _run(["gcc", "--version"]).splitlines()[0]
    return CACHE / "pause" / _digest(source.read_text(), *_PAUSE_CFLAGS, compiler)[:16] / "pause"


def _compile_pause() -> None:
    binary = _pause_binary()
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        with _step("compiling pause.c (static)"):
            _run(["gcc", *_PAUSE_CFLAGS, "-o", str(binary), str(_pause_source())])


def _pause_source() -> Path:
    """``build/pause/linux/pause.c`` of the Kubernetes source the control plane is built
    from (``testkit/kube/build-control-plane.sh`` caches the tarball), extracted once."""
    version = PINS["kubernetes"].version
    src = CACHE.parent / f"kubernetes-{version}" / "src"
    tarballs = sorted(src.glob("kubernetes_*.orig.tar.gz"))
    if not tarballs:
        raise ImageError(f"no Kubernetes source tarball in {src}: run `make e2e-control-plane`")
    source = CACHE / "pause" / tarballs[-1].name.replace(".orig.tar.gz", ".pause.c")
    if not source.exists():
        source.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=source.parent) as tmp:
            member = "*/build/pause/linux/pause.c"
            _run(["tar", "-xzf", str(tarballs[-1]), "-C", tmp, "--wildcards", member])
            next(Path(tmp).glob(member)).rename(source)
    return source


@contextmanager
def _app_context(tag: str, migrations: Mapping[str, str | Path]) -> Iterator[Path]:
    """A build context for examples/app/Dockerfile: the app's files and exactly these
    migrations at prisma/migrations; removed afterwards."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"app-{tag}-", dir=CACHE) as tmp:
        context = Path(tmp)
        for name in _APP_FILES:
            shutil.copy2(EXAMPLE_APP / name, context)  # keeps the mtime: buildah's cache hits
        target = context / "prisma" / "migrations"
        target.mkdir(parents=True)
        shutil.copy2(EXAMPLE_MIGRATIONS / "migration_lock.toml", target)
        for name, sql in migrations.items():
            (target / name).mkdir()
            script = target / name / "migration.sql"
            if isinstance(sql, Path):
                shutil.copy2(sql / "migration.sql" if sql.is_dir() else sql, script)
            else:
                script.write_text(sql)
        yield context


# --- buildah, its cache and the archives -------------------------------------------------

# buildah and mmdebstrap run in a mount namespace of their own: their overlay and bind mounts
# never reach the host's mount table and vanish with them, even when they are killed.
_UNSHARE = ("unshare", "--mount", "--propagation", "private")
# There buildah also sees /var/lib read-only: its storage is in CACHE, and the blob-info cache
# of its image library (hard-wired to /var/lib/containers/cache for root) stays in memory.
_BUILDAH = (*_UNSHARE, "sh", "-c", 'mount --bind -o ro /var/lib /var/lib && exec "$@"', "-")


def _buildah(*args: str, log: Path | None = None) -> str:
    storage = ["--root", str(CACHE / "storage"), "--runroot", str(CACHE / "run")]
    return _run([*_BUILDAH, "buildah", *storage, "--storage-driver", "overlay", *args], log)


def _build(spec: _Spec) -> str:
    """Build ``spec``; returns the image id."""
    logs = CACHE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    iidfile = logs / f"{_slug(spec.ref)}.iid"
    # --network=host: RUN steps reach apt and PyPI without a bridge or NAT rules on the host.
    args = ["bud", "--pull=never", "--layers", "--network=host", "--iidfile", str(iidfile)]
    args += ["--file", str(spec.dockerfile), "--tag", normalized(spec.ref)]
    for volume in spec.volumes:
        args += ["--volume", volume]
    for build_arg in spec.build_args:
        args += ["--build-arg", build_arg]
    _buildah(*args, str(spec.context), log=logs / f"{_slug(spec.ref)}.log")
    return iidfile.read_text().strip()


def _stored(spec: _Spec) -> str | None:
    """The id of the image built from ``spec``'s inputs, if it is still stored."""
    stamp = CACHE / "stamps" / f"{_slug(spec.ref)}.json"
    recorded = json.loads(stamp.read_text()) if stamp.exists() else {}
    if recorded.get("key") != spec.key():
        return None
    stored = _buildah("images", "--all", "--quiet", "--no-trunc").split()
    return str(recorded["id"]) if recorded["id"] in stored else None


def _base(spec: _Spec) -> str:
    """A base image's id, built unless the image of the same inputs is still stored."""
    image_id = _stored(spec)
    if image_id is not None:
        return image_id
    with _step(f"building {spec.ref} ({spec.label})"):
        image_id = _build(spec)
    stamp = CACHE / "stamps" / f"{_slug(spec.ref)}.json"
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"key": spec.key(), "id": image_id}))
    return image_id


def _archive_path(spec: _Spec) -> Path:
    return CACHE / "archives" / f"{_slug(spec.ref)}-{spec.key()[:16]}.tar"


def _archive_ref(archive: Path) -> str:
    """The (normalized) name a docker-archive gives its image."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            raise ImageError(f"{archive}: no manifest.json, not a docker-archive")
        return str(json.load(member)[0]["RepoTags"][0])


def _archive(spec: _Spec) -> Path:
    """The docker-archive of ``spec``, built and exported unless one with its key exists."""
    slug = _slug(spec.ref)
    archive = _archive_path(spec)
    if archive.exists():
        _log(f"{spec.ref}: cached, {archive.name}")
        return archive
    with _step(f"building {spec.ref} ({spec.label})"):
        image_id = _build(spec)
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with _step(f"exporting {spec.ref} as {normalized(spec.ref)}"):
        # By id, so that the archive names this reference only (not every tag of the image).
        _buildah("push", "--quiet", image_id, f"docker-archive:{partial}:{normalized(spec.ref)}")
    partial.rename(archive)
    for old in archive.parent.iterdir():
        if old != archive and re.fullmatch(re.escape(slug) + r"-[0-9a-f]{16}\.tar", old.name):
            old.unlink()
    return archive


# --- helpers -----------------------------------------------------------------------------


def _run(argv: list[str], log: Path | None = None) -> str:
    """Run ``argv``; its output is returned, or written to ``log``. Raises ImageError."""
    if log is None:
        result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output = result.stdout
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, text=True)
        output = log.read_text(errors="replace")
    if result.returncode != 0:
        tail = "\n".join(output.splitlines()[-25:])
        where = f" (log: {log})" if log else ""
        raise ImageError(f"{' '.join(argv)} exited {result.returncode}{where}:\n{tail}")
    return output if log is None else ""


def _files(root: Path, inputs: Iterable[str]) -> list[Path]:
    found: list[Path] = []
    for name in inputs:
        path = root / name
        found += sorted(path.rglob("*")) if path.is_dir() else [path]
    return [p for p in found if p.is_file() and "__pycache__" not in p.parts]


def _feed(digest: hashlib._Hash, data: bytes) -> None:
    digest.update(len(data).to_bytes(8, "big"))
    digest.update(data)


def _digest(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        _feed(digest, part.encode())
    return digest.hexdigest()


def _slug(ref: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", ref)


def _log(message: str, end: str = "\n") -> None:
    print(f"[images {time.strftime('%H:%M:%S')}] {message}", end=end, file=sys.stderr, flush=True)


@contextmanager
def _step(what: str) -> Iterator[None]:
    """``[images 04:51:02] building …… done in 104 s`` on stderr."""
    _log(f"{what}…", end="")
    start = time.monotonic()
    try:
        yield
    except BaseException:
        print(" failed", file=sys.stderr, flush=True)
        raise
    took = time.monotonic() - start
    print(f" done in {took:.1f} s" if took < 10 else f" done in {took:.0f} s", file=sys.stderr)


_held: list[IO[str]] = []  # the lock file, while this process holds the lock


@contextmanager
def _locked() -> Iterator[None]:
    """One builder per cache at a time (others wait); re-entrant within a process."""
    if _held:
        yield
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(f"waiting for another build ({CACHE / '.lock'})")
            fcntl.flock(lock, fcntl.LOCK_EX)
        _held.append(lock)
        try:
            yield
        finally:
            _held.clear()


def main() -> int:
    try:
        archives = ensure_images({"dev": example_migrations()})
    except ImageError as error:
        print(f"images: {error}", file=sys.stderr)
        return 1
    print("\n".join(str(archive) for archive in archives))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
