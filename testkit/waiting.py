"""Polling until a condition holds, for tests that watch another process or session."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    check: Callable[[], object], timeout: float = 20.0, what: str = "", interval: float = 0.05
) -> None:
    """Call ``check`` every ``interval`` seconds until it returns something true; fail with an
    AssertionError naming ``what`` if that takes longer than ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not reached in {timeout}s: {what}"
        time.sleep(interval)
