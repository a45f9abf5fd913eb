"""fast-note-migrate: a Prisma-compatible PostgreSQL migrator for Kubernetes."""

from .errors import ExitCode, MigrateError

__all__ = ["ExitCode", "MigrateError", "__version__"]
__version__ = "0.1.0"
