"""Chart test fixtures: the Helm majors, and a clear failure when the Helm binaries are absent."""

from __future__ import annotations

import pytest

from .render import HELM_BIN, HELMS


@pytest.fixture(scope="session", autouse=True)
def _helm_binaries() -> None:
    missing = [name for name, path in HELM_BIN.items() if not path.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing in .tools/bin: run `make tools`", pytrace=False)


@pytest.fixture(params=HELMS)
def helm(request: pytest.FixtureRequest) -> str:
    """Each chart test that takes `helm` runs once with Helm 3 and once with Helm 4."""
    return str(request.param)
