"""A PostgreSQL TLS front: TLS on the outside, a plain PostgresServer behind.

The embedded PostgreSQL is built without OpenSSL ("SSL is not supported by this build"),
so the TLS tests put this proxy in front of it. It answers PostgreSQL's ``SSLRequest`` with
``S`` and does the TLS handshake with its server certificate (optionally demanding a client
certificate signed by a CA, as ``clientcert=verify-ca`` in pg_hba.conf does), then relays
the decrypted bytes to the server. A ``GSSENCRequest`` is declined; a client that starts
without TLS is relayed as it is. One thread per connection, so an SSL object is never used
by two threads at once.
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from testkit.pgserver import free_port

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
Subject = tuple[tuple[tuple[str, str], ...], ...]  # a certificate's subject, as ssl gives it


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the client went away")
        data += chunk
    return data


@dataclass
class TlsProxy:
    """TLS on 127.0.0.1:``port`` for the server at 127.0.0.1:``backend_port``."""

    backend_port: int
    cert_file: Path
    key_file: Path
    client_ca: Path | None = None  # demand a client certificate signed by this CA
    port: int = field(default_factory=free_port)
    client_names: list[str] = field(default_factory=list)  # CNs of verified client certificates
    handshake_errors: list[str] = field(default_factory=list)
    _listener: socket.socket | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    def _context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca is not None:
            context.load_verify_locations(self.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def start(self) -> TlsProxy:
        context = self._context()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        threading.Thread(target=self._accept, args=(context,), daemon=True).start()
        return self

    def _accept(self, context: ssl.SSLContext) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client, context), daemon=True).start()

    def _serve(self, client: socket.socket, context: ssl.SSLContext) -> None:
        client.settimeout(None)
        front: socket.socket = client
        try:
            first = _recv_exactly(client, 8)
            length, code = struct.unpack("!ii", first)
            if length == 8 and code == GSSENC_REQUEST:
                client.sendall(b"N")
                first = _recv_exactly(client, 8)
                length, code = struct.unpack("!ii", first)
            if length == 8 and code == SSL_REQUEST:
                client.sendall(b"S")
                try:
                    front = context.wrap_socket(client, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    self.handshake_errors.append(str(exc))
                    return
                subject = cast(Subject, (front.getpeercert() or {}).get("subject", ()))
                self.client_names.extend(
                    value for rdn in subject for key, value in rdn if key == "commonName"
                )
                first = b""
            backend = socket.create_connection(("127.0.0.1", self.backend_port))
            with backend:
                if first:
                    backend.sendall(first)
                self._relay(front, backend)
        except (ConnectionError, OSError, ssl.SSLError):
            return
        finally:
            front.close()
            client.close()

    def _relay(self, front: socket.socket, backend: socket.socket) -> None:
        while not self._stopped.is_set():
            pending = isinstance(front, ssl.SSLSocket) and front.pending() > 0
            readable = [front] if pending else select.select([front, backend], [], [], 0.5)[0]
            for source in readable:
                data = source.recv(65536)
                if not data:
                    return
                (backend if source is front else front).sendall(data)

    def stop(self) -> None:
        self._stopped.set()
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> TlsProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
