"""Logging to stderr: text for people, JSON lines for machines; passwords redacted."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from .redaction import redact


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        return redact(f"{stamp} {record.levelname:<7} {record.getMessage()}")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        document.update(getattr(record, "fields", {}))
        return json.dumps(document, default=str)


def setup(log_format: str, verbosity: int) -> None:
    """``verbosity``: -1 quiet (warnings), 0 normal (info), 1 verbose (debug)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _TextFormatter())
    root = logging.getLogger("fast_note_migrate")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel({-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG))
