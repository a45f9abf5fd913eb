"""`make demo` doubles as a smoke test: run it as the Makefile does and read its summary.

By default the demo adds the Kubernetes part (scenarios 1 and 2 on the local control plane,
~30 s) when the control plane is already built and cached (`make e2e`); otherwise it says
in one line that it skipped it. The default test checks whichever applies here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_demo(**env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MIGRATE_", "FAST_NOTE_DEMO_"))
        and k not in ("DATABASE_URL", "MIGRATIONS_DIR")
    }
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "tools.demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def assert_embedded_demo_green(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "\033[" not in result.stdout, "no colours when stdout is not a terminal"
    assert re.search(r"Migrations applied: 6 of 6 exactly once", output), output
    assert re.search(r"Replicas ready:\s+3 of 3 saw the schema ready", output), output
    assert "Demo OK" in output
    assert "PostgreSQL stopped" in output
    return output


def test_demo_runs_green() -> None:
    """The default path: the Kubernetes part if the control plane is cached, else the note."""
    from tools.demo.kube import unavailable_reason

    reason = unavailable_reason()
    output = assert_embedded_demo_green(run_demo())
    if reason is not None:
        assert f"Kubernetes part skipped: {reason}" in output, output
        assert "make e2e-images" in output
        return
    assert "Kubernetes part skipped" not in output
    assert "Kubernetes demo OK" in output, output
    for tag, count in (("0.9.0", 5), ("1.0.0", 1)):
        assert f"helm upgrade --install ({tag}) succeeded" in output
        assert f"applied {count} migration(s)" in output
    assert re.search(r"job/fast-note-migrate\s+complete", output), output
    assert re.search(r"container migrate exited 0", output), output
    assert len(re.findall(r"ok +helm test passed", output)) == 2, output
    assert "6 of 6 migrations recorded exactly once" in output
    assert "Control plane, node and pods stopped." in output


def test_demo_falls_back_to_embedded_without_a_built_control_plane(tmp_path: Path) -> None:
    output = assert_embedded_demo_green(run_demo(FAST_NOTE_E2E_CACHE=str(tmp_path)))
    skipped = [row for row in output.splitlines() if row.startswith("Kubernetes part skipped")]
    assert len(skipped) == 1, output
    assert "Kubernetes is not built" in skipped[0]
    assert "make e2e-images" in skipped[0] and "make e2e" in skipped[0]
    assert "part 2" not in output


def test_demo_kube_0_runs_the_embedded_demo_only() -> None:
    output = assert_embedded_demo_green(run_demo(FAST_NOTE_DEMO_KUBE="0"))
    assert "Kubernetes" not in output, output


def test_demo_kube_1_fails_when_the_kubernetes_part_cannot_run(tmp_path: Path) -> None:
    result = run_demo(FAST_NOTE_DEMO_KUBE="1", FAST_NOTE_E2E_CACHE=str(tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Kubernetes is not built" in result.stdout
    assert "Demo OK" not in result.stdout, "fails before running anything"
