"""SIGTERM and SIGINT stop every verb within seconds, also as PID 1 of a container.

The kernel drops a signal sent to PID 1 unless the process handles it, so without a
handler Kubernetes (Job deletion, eviction, ``activeDeadlineSeconds``, Helm's
``before-hook-creation``) waits the whole grace period while the migration may commit.
The handler raises ``Stopped`` in the main thread: psycopg cancels the statement in
progress, the transaction rolls back, and closing the connection releases the lock.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from .errors import Stopped

HANDLED = (signal.SIGTERM, signal.SIGINT)


def _stop(signum: int, frame: FrameType | None) -> None:
    for handled in HANDLED:  # one stop is enough: let the clean-up run undisturbed
        signal.signal(handled, signal.SIG_IGN)
    raise Stopped(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise ``Stopped``; the previous handlers come
    back after it (the CLI also runs inside other programs, such as the tests)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can handle signals
        return
    previous = {handled: signal.getsignal(handled) for handled in HANDLED}
    for handled in HANDLED:
        signal.signal(handled, _stop)
    try:
        yield
    finally:
        for handled, handler in previous.items():
            signal.signal(handled, signal.SIG_DFL if handler is None else handler)
