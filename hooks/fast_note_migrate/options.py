"""The options of a deploy that the CLI builds and the engine reads: the lint policy and
the timeouts and retries. Kept apart (no imports) so that parsing the command line and a
no-op deploy load neither the lint nor the runner."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Policy(StrEnum):
    BLOCK = "block"
    WARN = "warn"
    OFF = "off"


@dataclass(frozen=True)
class Settings:
    """How carefully migrations run: timeouts and retries (all seconds)."""

    lock_timeout: float = 5.0  # 0 = wait forever, as PostgreSQL does by default
    statement_timeout: float = 0.0  # 0 = off
    lock_retries: int = 3
    retry_delay: float = 1.0  # first backoff; doubles each retry, at most 60s

    def backoff(self, retry: int) -> float:
        return float(min(60.0, self.retry_delay * 2 ** (retry - 1)))

    def set_local(self) -> str:
        """``SET LOCAL`` lines for the start of a transaction (nothing outlives it)."""
        return "".join(
            f"SET LOCAL {name} = '{int(value * 1000)}ms';\n"
            for name, value in (
                ("lock_timeout", self.lock_timeout),
                ("statement_timeout", self.statement_timeout),
            )
        )
