"""Logging to stderr: text for people, JSON lines for machines; passwords redacted.

A JSON line carries fields, not only a message: ``verb`` and ``pod`` on every line, and
where they apply ``migration``, ``duration_s``, ``sqlstate``, ``prisma_code`` and
``exit_code`` (passed as ``extra=fields(...)``); with ``-v`` a failure's ``traceback``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from .redaction import redact


def pod_name() -> str:
    """The pod (its hostname) this process runs in."""
    return os.environ.get("HOSTNAME") or os.uname().nodename


def fields(**values: Any) -> dict[str, dict[str, Any]]:
    """``extra=`` for a log call: structured fields of a JSON line (None values dropped)."""
    return {"fields": {k: v for k, v in values.items() if v is not None}}


@contextmanager
def migration_step(
    log: logging.Logger, doing: str, done: str, name: str, index: int, total: int
) -> Iterator[None]:
    """Log "DOING NAME (i/n)" before the block and, if it succeeds, "DONE NAME in T"
    with the migration and its duration as fields."""
    from .durations import format_duration

    log.info("%s %s (%d/%d)", doing, name, index, total, extra=fields(migration=name))
    started = time.monotonic()
    yield
    took = time.monotonic() - started
    log.info(
        "%s %s in %s",
        done,
        name,
        format_duration(took),
        extra=fields(migration=name, duration_s=round(took, 3)),
    )


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        text = f"{stamp} {record.levelname:<7} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return redact(text)


class _JsonFormatter(logging.Formatter):
    def __init__(self, verb: str) -> None:
        super().__init__()
        self.context = {"verb": verb, "pod": pod_name()}

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
            **self.context,
        }
        document.update(getattr(record, "fields", {}))
        if record.exc_info:
            document["traceback"] = redact(self.formatException(record.exc_info))
        import json  # only for --log-format json

        return json.dumps(document, default=str)


def setup(log_format: str, verbosity: int, verb: str = "") -> None:
    """``verbosity``: -1 quiet (warnings), 0 normal (info), 1 verbose (debug)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter(verb) if log_format == "json" else _TextFormatter())
    root = logging.getLogger("fast_note_migrate")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel({-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG))
