"""`make demo`: the migrator and the chart at work, as a smoke test (``python -m tools.demo``).

- ``__main__``: the entry point; the embedded demo, then the Kubernetes part when it can run.
- ``embedded``: one migration Job and three app replicas against an embedded PostgreSQL.
- ``kube``: scenarios 1 and 2 of docs/e2e.md on the local control plane.
- ``output``: the terminal output both parts share (ok/FAIL lines, the closing verdict).

Imports go one way: ``__main__`` uses ``embedded`` and ``kube``, which use ``output``.
"""
