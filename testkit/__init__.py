"""Test infrastructure: throw-away PostgreSQL, local control plane and node, e2e harness.

Imported by tests/, the demo and the benchmarks; imports nothing from tests/."""
