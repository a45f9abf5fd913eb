"""Reliability tests: the soak switch (the database, folder and CLI fixtures are in
tests/conftest.py).

The soak tests are marked ``slow``: they run with ``pytest -m slow`` (``make soak``) and
are skipped otherwise, so a plain ``pytest`` (``make test``) stays quick.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="soak test: run `make soak` (pytest -m slow)")
    for item in items:
        if HERE in item.path.parents and item.get_closest_marker("slow"):
            item.add_marker(skip)
