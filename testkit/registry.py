"""A real OCI registry on loopback, for pushing and installing the chart as a release does:
Debian's ``docker-registry`` (CNCF distribution 2.8; ``apt-get install docker-registry``),
with its own config file and storage in a folder of the caller, no auth, plain HTTP, stopped
by its pid.

    with LocalRegistry(tmp_path) as registry:
        helm push chart.tgz oci://{registry.host}/charts --plain-http
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from types import TracebackType

DOCKER_REGISTRY = Path("/usr/bin/docker-registry")
_READY_TIMEOUT = 15.0
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only

_CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


class RegistryError(RuntimeError):
    """The registry did not start; the message ends with its log."""


class LocalRegistry:
    """``docker-registry serve`` on 127.0.0.1 and a free port; ``host`` is ``127.0.0.1:PORT``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> LocalRegistry:
        if not DOCKER_REGISTRY.exists():
            raise RegistryError(
                f"{DOCKER_REGISTRY} is missing\n"
                "what to do: apt-get install docker-registry (Debian's OCI registry)"
            )
        for _ in range(3):  # another process may take the free port first
            if self._start():
                return self
        raise RegistryError(f"docker-registry did not start:\n{self._log_tail()}")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _start(self) -> bool:
        """Start on a free port; True once ``/v2/`` answers, False if the process exited."""
        self.port = _free_port()
        config = self.folder / "config.yml"
        config.write_text(_CONFIG.format(storage=self.folder / "storage", port=self.port))
        with (self.folder / "registry.log").open("ab") as log:
            self._process = subprocess.Popen(
                [str(DOCKER_REGISTRY), "serve", str(config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                return False
            if _answers(f"http://{self.host}/v2/"):
                return True
            time.sleep(0.05)
        self.stop()
        raise RegistryError(
            f"docker-registry not ready in {_READY_TIMEOUT:.0f} s:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        log = self.folder / "registry.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.exists() else ""


def _answers(url: str) -> bool:
    try:
        with _NO_PROXY.open(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:  # not listening yet
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
