"""An HTTPS server on loopback that answers the read requests of the Kubernetes API for a
fixed set of objects: ``GET`` of one object, lists of a kind in a namespace filtered by an
equality ``labelSelector``, bearer-token authentication (401 otherwise) and 404 for what is
not there, each as the API server answers them (``Status`` objects). It lets the tests of
``rollout`` run its real HTTPS reads and ``kubectl get --raw`` without a control plane.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

Json = dict[str, Any]
# what a path names: its group and version, the namespace, the plural of the kind, a name
_PATH = re.compile(r"^/(?:api/v1|apis/apps/v1)/namespaces/([^/]+)/([a-z]+)(?:/([^/]+))?$")
_PLURALS = {"deployments": "Deployment", "replicasets": "ReplicaSet", "pods": "Pod"}


@dataclass
class ObjectServer:
    """The objects (each with ``kind`` and ``metadata``), the token it accepts, and what
    it was asked (``requests``: each path with its query)."""

    token: str
    objects: list[Json] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    url: str = ""

    def answer(self, target: str, authorization: str | None) -> tuple[int, Json]:
        self.requests.append(target)
        if authorization != f"Bearer {self.token}":
            return 401, _status(401, "Unauthorized", "Unauthorized")
        parts = urlsplit(target)
        match = _PATH.match(parts.path)
        kind = _PLURALS.get(match[2]) if match else None
        if match is None or kind is None:
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        selector = parse_qs(parts.query).get("labelSelector", [""])[0]
        wanted = dict(pair.split("=", 1) for pair in selector.split(",") if pair)
        found = [
            o
            for o in self.objects
            if o["kind"] == kind
            and o["metadata"]["namespace"] == match[1]
            and match[3] in (None, o["metadata"]["name"])
            and wanted.items() <= (o["metadata"].get("labels") or {}).items()
        ]
        if match[3] is None:
            return 200, {"kind": f"{kind}List", "apiVersion": "v1", "items": found}
        if found:
            return 200, found[0]
        return 404, _status(404, "NotFound", f'{match[2]} "{match[3]}" not found')


def _status(code: int, reason: str, message: str) -> Json:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "reason": reason, "code": code}  # fmt: skip


@contextmanager
def serve(server: ObjectServer, certificate: Path, key: Path) -> Iterator[ObjectServer]:
    """Serve ``server`` on https://127.0.0.1:<free port> (``server.url``) until the end."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code, body = server.answer(self.path, self.headers.get("Authorization"))
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the tests look at server.requests

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    server.url = f"https://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, name="object-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
