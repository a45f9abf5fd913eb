"""`make demo` doubles as a smoke test: run it as the Makefile does and read its summary."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_demo_runs_green() -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MIGRATE_") and k not in ("DATABASE_URL", "MIGRATIONS_DIR")}
    result = subprocess.run([sys.executable, "-m", "tools.demo"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "\033[" not in result.stdout, "no colours when stdout is not a terminal"
    assert re.search(r"Migrations applied: 6 of 6 exactly once", output), output
    assert re.search(r"Replicas ready:\s+3 of 3 saw the schema ready", output), output
    assert "Demo OK" in output
    assert "PostgreSQL stopped" in output
