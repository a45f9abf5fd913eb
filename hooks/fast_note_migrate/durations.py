"""Durations written like ``500ms``, ``30s``, ``5m``, ``1h`` (a bare number is seconds)."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_duration(text: str) -> float:
    """Return the duration in seconds, or raise ValueError with what is accepted."""
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(f"invalid duration {text!r}: write it like 500ms, 30s, 5m or 1h")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def format_duration(seconds: float) -> str:
    """Render seconds for humans: ``850ms``, ``12.3s``, ``4m05s``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"
