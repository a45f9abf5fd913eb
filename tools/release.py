"""Release artifacts and the one project version.

    python -m tools.release check [--dist dist]    # make release-check
    python -m tools.release package [--out dist]   # make package

The one source is ``__version__`` in hooks/fast_note_migrate/__init__.py. pyproject.toml reads
it (setuptools' dynamic version), Chart.yaml's version and appVersion equal it, the chart's
default image tags are empty (the appVersion), and the images are tagged with it
(testkit/kube/images.py for the migrator, :func:`package` for the example app). ``check``
refuses a mismatch, a CHANGELOG.md without the version's section (or ``Unreleased`` before the
tag), a release tag ``vX.Y.Z`` (``RELEASE_TAG``, or ``GITHUB_REF_NAME`` on a tag) of another
version, and a dist/ whose SHA256SUMS does not match. Each problem ends with ``what to do:``.

Releases are published to :data:`REGISTRY`: the chart as ``oci://ghcr.io/fast-note/charts/fast-note``,
the images under :data:`IMAGES`, which the chart's values name.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # no stubs in .venv

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "fast-note"
HELMS = {"helm3": ROOT / ".tools" / "bin" / "helm3", "helm4": ROOT / ".tools" / "bin" / "helm4"}
VERSION_FILE = ROOT / "hooks" / "fast_note_migrate" / "__init__.py"
VERSION_ATTR = "fast_note_migrate.__version__"
# Where a release is published (GitHub Container Registry of the project).
REGISTRY = "ghcr.io"
CHART_REPOSITORY = f"oci://{REGISTRY}/fast-note/charts"
# values.yaml key of each image -> its repository under REGISTRY
IMAGES = {"image": "fast-note/fast-note-example", "migration.image": "fast-note/fast-note-migrate"}
# MAJOR.MINOR.PATCH: what Helm (SemVer 2) and pip (PEP 440) both read, and write, the same way.
RELEASE = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")


@dataclass(frozen=True)
class Problem:
    """One mismatch: what is wrong and what to do about it."""

    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what}\n  what to do: {self.fix}"


def project_version(version_file: Path = VERSION_FILE) -> str:
    """``__version__`` as written in the migrator's ``__init__.py``."""
    match = re.search(r'^__version__ = "([^"]*)"', version_file.read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit(f'no __version__ = "…" line in {version_file}')
    return match[1]


def artifacts(version: str) -> dict[str, str]:
    """What ``package`` puts into dist/: description -> file name."""
    return {
        "chart": f"fast-note-{version}.tgz",
        "wheel": f"fast_note_migrate-{version}-py3-none-any.whl",
        "sdist": f"fast_note_migrate-{version}.tar.gz",
        "migrator image": f"fast-note-migrate-{version}.image.tar",
        "example app image": f"fast-note-example-{version}.image.tar",
    }


def published_image(key: str, version: str) -> str:
    """The reference a release publishes the image of values key ``key`` under."""
    return f"{REGISTRY}/{IMAGES[key]}:{version}"


# --- release-check ------------------------------------------------------------------------


def check(root: Path = ROOT, tag: str | None = None, dist: Path | None = None) -> list[Problem]:
    """Every place the version or the published location is written, against ``__version__``."""
    version = project_version(root / VERSION_FILE.relative_to(ROOT))
    source = "hooks/fast_note_migrate/__init__.py"
    if not RELEASE.fullmatch(version):
        return [
            Problem(f"__version__ is {version!r}, not MAJOR.MINOR.PATCH", f"fix it in {source}")
        ]
    problems = [
        *_check_pyproject(root),
        *_check_dockerfile(root, version),
        *_check_chart(root, version),
        *_check_changelog(root, version, tag),
    ]
    if tag is not None and tag != f"v{version}":
        problems.append(
            Problem(
                f"the release tag is {tag}, the project version is {version}",
                f"tag the commit v{version}, or set __version__ in {source} to the tag's version",
            )
        )
    if dist is not None and (dist / "SHA256SUMS").exists():
        problems += _check_dist(dist, version)
    return problems


def _check_pyproject(root: Path) -> Iterator[Problem]:
    project = tomllib.loads((root / "pyproject.toml").read_text())
    dynamic = project.get("tool", {}).get("setuptools", {}).get("dynamic", {}).get("version")
    if "version" in project["project"] or dynamic != {"attr": VERSION_ATTR}:
        yield Problem(
            "pyproject.toml does not read the version from __version__",
            f'keep `dynamic = ["version"]` and [tool.setuptools.dynamic] version = '
            f'{{attr = "{VERSION_ATTR}"}}, no static version',
        )


def _check_dockerfile(root: Path, version: str) -> Iterator[Problem]:
    """The migrator image's version label (``ARG VERSION=…``, the default of a plain build)."""
    dockerfile = (root / "hooks" / "Dockerfile").read_text()
    for found in re.findall(r"^ARG VERSION=(\S*)", dockerfile, re.MULTILINE):
        if found != version:
            yield Problem(
                f"hooks/Dockerfile has ARG VERSION={found}, the project version is {version}",
                f"set ARG VERSION={version} in hooks/Dockerfile",
            )


def _check_chart(root: Path, version: str) -> Iterator[Problem]:
    chart = yaml.safe_load((root / "charts/fast-note/Chart.yaml").read_text())
    for field in ("version", "appVersion"):
        if str(chart.get(field)) != version:
            yield Problem(
                f"charts/fast-note/Chart.yaml {field} is {chart.get(field)}, "
                f"the project version is {version}",
                f"set {field} in charts/fast-note/Chart.yaml to {version} (both fields)",
            )
    values = yaml.safe_load((root / "charts/fast-note/values.yaml").read_text())
    for key, repository in IMAGES.items():
        image = _lookup(values, key)
        where = f"charts/fast-note/values.yaml {key}"
        if str(image.get("tag", "")) not in ("", version):
            yield Problem(
                f"{where}.tag is {image.get('tag')}, the project version is {version}",
                f'set {key}.tag to "" (the chart\'s appVersion)',
            )
        if image.get("digest"):
            yield Problem(
                f"{where}.digest is set", f'set {key}.digest to "": a digest is per build'
            )
        found = f"{image.get('registry')}/{image.get('repository')}"
        if found != f"{REGISTRY}/{repository}":
            yield Problem(
                f"{where} is {found}, the releases publish it as {REGISTRY}/{repository}",
                f"set {key}.registry to {REGISTRY} and {key}.repository to {repository} "
                "(or change IMAGES in tools/release.py where the releases publish it)",
            )


def _check_changelog(root: Path, version: str, tag: str | None) -> Iterator[Problem]:
    sections = re.findall(r"^## \[([^\]]+)\]", (root / "CHANGELOG.md").read_text(), re.MULTILINE)
    if version in sections:
        return
    if tag is not None:
        yield Problem(
            f"CHANGELOG.md has no section [{version}] for the release tag {tag}",
            f"rename [Unreleased] to [{version}] with the release date, above a new empty "
            "[Unreleased]",
        )
    elif "Unreleased" not in sections:
        yield Problem(
            f"CHANGELOG.md has neither a section [{version}] nor [Unreleased]",
            "record the changes under a `## [Unreleased]` section (Keep a Changelog)",
        )


def _check_dist(dist: Path, version: str) -> Iterator[Problem]:
    listed = {}
    for line in (dist / "SHA256SUMS").read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    for what, name in artifacts(version).items():
        if name not in listed:
            yield Problem(
                f"{dist}/SHA256SUMS lists no {what} {name} (built for another version?)",
                "run `make package` again",
            )
    for name, digest in listed.items():
        path = dist / name
        if not path.is_file() or _sha256(path) != digest:
            yield Problem(f"{path} does not match {dist}/SHA256SUMS", "run `make package` again")


def _lookup(values: dict[str, Any], dotted: str) -> dict[str, Any]:
    node: Any = values
    for part in dotted.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def release_tag(env: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """The tag being released: ``RELEASE_TAG``, else GitHub's ``GITHUB_REF_NAME`` when the
    ref is a tag (``GITHUB_REF_TYPE``; without it, a name starting with ``v`` and a digit)."""
    if env.get("RELEASE_TAG"):
        return env["RELEASE_TAG"]
    name, kind = env.get("GITHUB_REF_NAME", ""), env.get("GITHUB_REF_TYPE", "")
    if name and (kind == "tag" or (not kind and re.match(r"v\d", name))):
        return name
    return None


# --- package ------------------------------------------------------------------------------


def package(out: Path) -> list[Path]:
    """Build every artifact of the release into ``out`` (emptied first), then SHA256SUMS."""
    version = project_version()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    built = [package_chart(out), *build_python(out), *export_images(out, version)]
    expected = {out / name for name in artifacts(version).values()}
    if set(built) != expected:
        raise SystemExit(f"built {sorted(map(str, built))}, expected {sorted(map(str, expected))}")
    sums = out / "SHA256SUMS"
    sums.write_text("".join(f"{_sha256(p)}  {p.name}\n" for p in sorted(built)))
    for path in sorted(built):
        print(f"{path.stat().st_size / 1e6:10.2f} MB  {path}")
    print(f"{'':13} {sums} (`sha256sum -c SHA256SUMS` in {out})")
    return [*built, sums]


def package_chart(out: Path) -> Path:
    """``helm package`` the chart into ``out``; both Helm majors ``helm lint --strict`` the
    .tgz, alone and with each values/*.yaml. Returns the .tgz."""
    version = project_version()
    tgz = out / artifacts(version)["chart"]
    with _step(f"chart {tgz.name} (helm package, helm3 and helm4 lint --strict)"):
        _run([str(HELMS["helm3"]), "package", str(CHART), "--destination", str(out)])
        if not tgz.exists():
            raise SystemExit(f"helm package made no {tgz.name}: is Chart.yaml's version {version}?")
        for helm in HELMS.values():
            for values in [None, *sorted((ROOT / "values").glob("*.yaml"))]:
                _run(
                    [
                        str(helm),
                        "lint",
                        "--strict",
                        str(tgz),
                        *(["-f", str(values)] if values else []),
                    ]
                )
    return tgz


def build_python(out: Path) -> list[Path]:
    """The wheel and the sdist (``python -m build``), checked by ``twine check --strict``."""
    names = artifacts(project_version())
    wheel, sdist = out / names["wheel"], out / names["sdist"]
    with _step(f"python {wheel.name} and {sdist.name} (python -m build, twine check)"):
        _run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)])
        for path in (wheel, sdist):
            if not path.exists():
                raise SystemExit(f"python -m build made no {path.name}: {sorted(os.listdir(out))}")
        _run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)])
    return [wheel, sdist]


def export_images(out: Path, version: str) -> list[Path]:
    """The migrator and the example app (with its migrations), built by testkit's builder
    (buildah, cached by input), as docker-archives named as the release publishes them."""
    from testkit.kube import images

    archives = images.ensure_images({version: images.example_migrations()})
    names = artifacts(version)
    wanted = {
        images.normalized(images.migrator_image()): ("migration.image", names["migrator image"]),
        images.normalized(f"{images.APP_REPOSITORY}:{version}"): (
            "image",
            names["example app image"],
        ),
    }
    exported = []
    for archive in archives:
        local = _archive_ref(archive)
        if local in wanted:
            key, name = wanted.pop(local)
            with _step(f"image {name} ({published_image(key, version)})"):
                _retag(archive, out / name, published_image(key, version))
            exported.append(out / name)
    if wanted:
        raise SystemExit(f"the image builder returned no archive of {', '.join(wanted)}")
    return exported


def _archive_ref(archive: Path) -> str:
    with tarfile.open(archive) as tar:
        manifest = tar.extractfile("manifest.json")
        return str(json.load(manifest)[0]["RepoTags"][0]) if manifest else ""


def _retag(archive: Path, target: Path, ref: str) -> None:
    """Copy a docker-archive, its image named ``ref`` (what `docker load` then calls it)."""
    repository, _, tag = ref.rpartition(":")
    with tarfile.open(archive) as source, tarfile.open(target, "w") as copy:
        for member in source:
            data = source.extractfile(member) if member.isfile() else None
            if member.name in ("manifest.json", "repositories") and data is not None:
                document = json.load(data)
                if member.name == "manifest.json":
                    document[0]["RepoTags"] = [ref]
                else:  # {repository: {tag: top layer id}}
                    [top] = [layer for tags in document.values() for layer in tags.values()]
                    document = {repository: {tag: top}}
                text = json.dumps(document).encode()
                member.size, data = len(text), io.BytesIO(text)
            copy.addfile(member, data)


# --- helpers ------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-30:])
        raise SystemExit(f"{' '.join(argv)} exited {result.returncode}:\n{tail}")


@contextmanager
def _step(what: str) -> Iterator[None]:
    print(f"[package] {what} …", end="", flush=True)
    start = time.monotonic()
    try:
        yield
    except BaseException:
        print(" failed", flush=True)
        raise
    print(f" {time.monotonic() - start:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.release", description=__doc__.split("\n\n")[0]
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    check_parser = verbs.add_parser("check", help="refuse a version mismatch (make release-check)")
    check_parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="checked if built")
    check_parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to check")
    package_parser = verbs.add_parser("package", help="build every artifact (make package)")
    package_parser.add_argument("--out", type=Path, default=ROOT / "dist")
    args = parser.parse_args(argv)
    if args.verb == "package":
        package(args.out)
        return 0
    tag = release_tag()
    problems = check(args.root, tag=tag, dist=args.dist)
    for problem in problems:
        print(f"release-check: {problem}", file=sys.stderr)
    if problems:
        return 1
    version = project_version(args.root / VERSION_FILE.relative_to(ROOT))
    print(
        f"release-check: {version} everywhere (__version__, pyproject.toml, Chart.yaml version "
        f"and appVersion, the default image tags, hooks/Dockerfile, CHANGELOG.md"
        + (f", the tag {tag}" if tag else "")
        + (f", {args.dist.name}/SHA256SUMS" if (args.dist / "SHA256SUMS").exists() else "")
        + f"); images published to {REGISTRY}: "
        + ", ".join(IMAGES.values())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
