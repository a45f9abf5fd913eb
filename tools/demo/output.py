"""The demo's terminal output, shared by the embedded and the Kubernetes part."""

from __future__ import annotations

import os
import sys
from typing import TextIO


class Out:
    """Plain text, with a little colour only when stdout is a terminal (and NO_COLOR unset)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        # bound once: the Kubernetes part silences the e2e harness's own prints
        self.stream = stream or sys.stdout
        self.colour = self.stream.isatty() and not os.environ.get("NO_COLOR")

    def style(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text

    def line(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def heading(self, text: str) -> None:
        self.line()
        self.line(self.style(text, "1"))

    def ok(self, text: str) -> None:
        self.line(f"      {self.style('ok', '32')}    {text}")

    def fail(self, text: str) -> None:
        self.line(f"      {self.style('FAIL', '31;1')}  {text}")

    def note(self, text: str) -> None:
        self.line(f"      {text}")

    def check(self, ok: bool, text: str, problems: list[str]) -> bool:
        """Print an ok/FAIL line; a failure is also added to ``problems``."""
        if ok:
            self.ok(text)
        else:
            self.fail(text)
            problems.append(text)
        return ok

    def verdict(self, problems: list[str], what: str, ok_text: str) -> int:
        """The closing line of a demo: its exit code, 1 if anything unexpected happened."""
        if problems:
            self.line(self.style(f"{what} FAILED: something unexpected happened:", "31;1"))
            for problem in problems:
                self.line(f"  - {problem}")
            return 1
        self.line(self.style(f"{what} OK: {ok_text}", "32;1"))
        return 0

    def block(self, text: str, prefix: str = "      | ") -> None:
        for row in text.rstrip("\n").splitlines():
            self.line(f"{prefix}{row}")
