"""hooks/Dockerfile and its lock files: what the image is built from, read without a build
(the end-to-end tests build and run it)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from fast_note_migrate import __version__
from testkit.kube import images

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "hooks" / "Dockerfile").read_text()
STAGES = re.split(r"^FROM ", DOCKERFILE, flags=re.M)[1:]
LOCKS = {name: ROOT / "hooks" / name for name in ("requirements.lock", "build.lock")}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# One logical line of the Dockerfile (continuations joined) per RUN.
RUNS = [" ".join(m.split()) for m in re.findall(r"^RUN (.*?)(?<!\\)$", DOCKERFILE, re.M | re.S)]


def _requirements(lock: Path) -> list[str]:
    """The lock's requirements, each with its continuation lines (comments dropped)."""
    text = re.sub(r"#.*", "", lock.read_text())
    return [r for r in (" ".join(e.split()) for e in text.replace("\\\n", " ").splitlines()) if r]


def _label(name: str) -> str:
    """The value of an OCI label of the final stage, with its ARG default filled in."""
    match = re.search(rf'org\.opencontainers\.image\.{name}="([^"]*)"', STAGES[-1])
    assert match, f"no org.opencontainers.image.{name} label in the final stage"
    args = dict(re.findall(r"^ARG (\w+)=(\S*)$", STAGES[-1], re.M))
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], match[1])


def test_the_dockerfile_names_the_buildkit_syntax_it_is_written_for() -> None:
    """`RUN --mount` needs the Dockerfile 1.2+ syntax: the first line asks BuildKit for it."""
    assert DOCKERFILE.splitlines()[0] == "# syntax=docker/dockerfile:1"
    assert any(run.startswith("--mount=type=bind,") for run in RUNS)


def test_the_image_carries_the_oci_labels_of_its_version_source_licence_and_revision() -> None:
    chart = yaml.safe_load((ROOT / "charts" / "fast-note" / "Chart.yaml").read_text())
    assert _label("version") == __version__
    assert _label("licenses") == PYPROJECT["project"]["license"] == "MIT"
    assert _label("source") in chart["sources"]
    assert re.search(r'org\.opencontainers\.image\.revision="\$\{REVISION\}"', STAGES[-1])
    assert "--build-arg REVISION=" in DOCKERFILE  # the documented build command sets it


@pytest.mark.parametrize("name", LOCKS)
def test_every_locked_requirement_is_pinned_and_hashed(name: str) -> None:
    requirements = _requirements(LOCKS[name])
    assert requirements, f"{name} is empty"
    for line in requirements:
        assert re.match(r"^[A-Za-z0-9._-]+==[^ ;]+ ", line), f"{name}: not pinned: {line}"
        hashes = re.findall(r"--hash=sha256:(\S+)", line)
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), line


def test_the_lock_satisfies_pyproject_with_the_pkcs12_extra_and_no_kubernetes_client() -> None:
    """`make lock` after a change of the dependencies: every one is locked at a version its
    specifier allows; cryptography (Prisma's sslidentity) is in, the kubernetes client out."""
    locked = {}
    for line in _requirements(LOCKS["requirements.lock"]):
        name, _, version = line.split(" ")[0].partition("==")
        locked[name.lower()] = version
    project = PYPROJECT["project"]
    for spec in [*project["dependencies"], *project["optional-dependencies"]["pkcs12"]]:
        req = Requirement(spec)
        assert req.specifier.contains(locked[req.name.lower()]), f"{spec}: {locked}"
    assert "cryptography" in locked and "kubernetes" not in locked


def test_every_pip_install_in_the_image_checks_hashes_or_uses_no_index() -> None:
    installs = [run for run in RUNS if "pip install" in run or "install --" in run]
    assert installs
    for run in installs:
        assert "--require-hashes" in run or "--no-index" in run, run
    assert any("--require-hashes" in r and "-r /tmp/requirements.lock" in r for r in installs)
    assert any("--require-hashes" in r and "-r /tmp/build.lock" in r for r in installs)


def test_the_venv_installs_the_same_lock_with_hashes() -> None:
    """CI's and the developers' .venv get exactly the image's dependencies."""
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    assert re.search(r"pip install .*--require-hashes .*-r hooks/requirements\.lock", makefile)
    dev = (ROOT / "requirements-dev.txt").read_text()
    pinned_twice = [n for n in ("psycopg", "squawk-cli", "cryptography") if f"\n{n}" in dev]
    assert not pinned_twice, f"requirements-dev.txt pins {pinned_twice}: the lock does"


def test_the_runtime_stage_removes_pip_and_setuptools_and_fails_if_they_remain() -> None:
    final = STAGES[-1]
    for removed in ('"$site"/pip ', '"$site"/setuptools ', "/usr/local/bin/pip "):
        assert removed in final
    assert "! python -m pip --version" in final and "! python -c 'import setuptools'" in final


def test_the_build_context_and_the_image_cache_key_include_the_lock_files() -> None:
    """Every file the Dockerfile takes from the context passes .dockerignore and is an input
    of the cached e2e image, so a new lock rebuilds it."""
    used = re.findall(r"source=(hooks/[\w.]+)", DOCKERFILE)
    used += [p.rstrip("/") for p in re.findall(r"^COPY (?!--from)(.*) \S+$", DOCKERFILE, re.M)]
    used = [part for entry in used for part in entry.split()]
    allowed = (ROOT / ".dockerignore").read_text().splitlines()
    assert {"hooks/requirements.lock", "hooks/build.lock"} <= set(used)
    for path in used:
        assert f"!{path}" in allowed or f"!{path}/" in allowed, path
        assert path in images._MIGRATOR_INPUTS, path
