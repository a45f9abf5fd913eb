"""fast-note-migrate: a Prisma-compatible PostgreSQL migrator for Kubernetes."""

from .errors import ExitCode, MigrateError

__all__ = ["ExitCode", "MigrateError", "__version__"]
# The project version: pyproject.toml reads it, and the chart's version and appVersion must equal
# it (tests/test_version.py).
__version__ = "0.1.0"
