"""`make demo`: ``.venv/bin/python -m tools.demo`` (after ``make venv tools``).

First the embedded demo (``tools/demo/embedded.py``: one migration Job and three app
replicas against an embedded PostgreSQL), then, when Kubernetes and the images are already built
(``make e2e-images`` or ``make e2e``), scenarios 1 and 2 of docs/e2e.md with
Helm on it (``tools/demo/kube.py``); ``FAST_NOTE_DEMO_KUBE=0`` skips that, ``=1`` requires it.

It exits 0 only if everything happened as expected, so it doubles as a smoke test.
"""

from __future__ import annotations

import os
import sys

from tools.demo.embedded import run_embedded_demo
from tools.demo.kube import ENABLE_HINT, run_kube_demo, unavailable_reason
from tools.demo.output import Out


def main() -> int:
    """The embedded demo, then the Kubernetes part (``tools/demo/kube.py``) when it can run.

    ``FAST_NOTE_DEMO_KUBE``: unset or ``auto`` runs the Kubernetes part only if the control
    plane is already built and cached (never starts the ~6 min build) and the kubernetes
    client is installed, else says so in one line; ``0`` skips it; ``1`` requires it.
    """
    mode = os.environ.get("FAST_NOTE_DEMO_KUBE", "auto").strip().lower() or "auto"
    out = Out()
    if mode not in ("0", "1", "auto"):
        out.fail(
            f"FAST_NOTE_DEMO_KUBE={mode}: use 0 (embedded only), 1 (require the "
            "Kubernetes part) or auto"
        )
        return 2
    reason: str | None = "FAST_NOTE_DEMO_KUBE=0"
    if mode != "0":
        reason = unavailable_reason()
        if reason is not None and mode == "1":
            out.fail(
                f"FAST_NOTE_DEMO_KUBE=1 but the Kubernetes part cannot run: {reason}; {ENABLE_HINT}"
            )
            return 2
    code = run_embedded_demo(out)
    if reason is None and code != 0:
        out.line()
        out.line("Kubernetes part not run: the embedded demo failed.")
    elif reason is None:
        code = max(code, run_kube_demo(out))
    elif mode == "auto":
        out.line()
        out.line(
            f"Kubernetes part skipped: {reason}; {ENABLE_HINT} "
            "(FAST_NOTE_DEMO_KUBE=0 skips it silently)."
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
