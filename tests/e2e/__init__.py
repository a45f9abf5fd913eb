"""End-to-end tests: the chart and the migrator on a real Kubernetes API server (make e2e)."""
