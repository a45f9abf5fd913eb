"""TCP relays between the host's loopback and the node's network namespace.

The node (kubelet, containerd, the CNI bridge, the pods) lives in a network namespace of its
own; the API server and PostgreSQL stay on the host's 127.0.0.1. A relay listens in one
namespace and connects in the other: the listening socket is created by a thread that has
entered the target namespace (``setns`` changes only the calling thread), so it stays bound
there, while the connections it forwards are opened from the test process's own namespace
(or the other way round).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def _in_netns(netns: Path | None) -> Iterator[None]:
    """Run the block in ``netns`` (a /proc/<pid>/ns/net path); None: stay where we are.
    Only for a thread of its own: the calling thread is switched back afterwards."""
    if netns is None:
        yield
        return
    home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def _in_thread(fn: Callable[[], socket.socket]) -> socket.socket:
    """Run ``fn`` in a fresh thread (whose namespace switch cannot leak) and return its result."""
    result: list[socket.socket] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@dataclass
class Relay:
    """Listen on ``listen`` inside ``listen_netns``, forward to ``target`` in ``target_netns``."""

    name: str
    listen: tuple[str, int]
    target: tuple[str, int]
    listen_netns: Path | None = None
    target_netns: Path | None = None
    _server: socket.socket | None = None
    _open: set[socket.socket] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Relay:
        def bind() -> socket.socket:
            with _in_netns(self.listen_netns):
                server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                server.bind(self.listen)
                server.listen(128)
                return server

        self._server = _in_thread(bind)
        threading.Thread(target=self._accept, name=f"relay-{self.name}", daemon=True).start()
        return self

    def _connect(self) -> socket.socket:
        def connect() -> socket.socket:
            with _in_netns(self.target_netns):
                return socket.create_connection(self.target, timeout=10)

        upstream = _in_thread(connect) if self.target_netns else connect()
        upstream.settimeout(None)
        return upstream

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed by stop()
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = self._connect()
        except OSError:
            client.close()
            return
        with self._lock:
            self._open.update((client, upstream))
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()
        with self._lock:
            self._open.difference_update((client, upstream))
        client.close()
        upstream.close()

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._open.clear()
