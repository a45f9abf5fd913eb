"""The app image tags the end-to-end scenarios deploy, and which migrations each carries.

:func:`app_images` is data: tag -> {migration folder name: SQL text, or an example
migration folder}. Each tag is ``examples/app/Dockerfile`` built from a copy of
``examples/app`` whose ``prisma/migrations`` holds exactly that tag's migrations. Locally,
``testkit.kube.images.ensure_images(app_images())`` builds them (buildah, cached) for the
node. For a real cluster, build each tag that way yourself::

    docker build -t <your registry>/fast-note:<tag> <copy of examples/app>

push them, and point ``FAST_NOTE_E2E_APP_REPOSITORY`` at ``<your registry>/fast-note``.
"""

from __future__ import annotations

from pathlib import Path

from testkit.gate import GATE, GATED_MIGRATION
from testkit.kube.images import example_migrations

# A migration that fails half-way (the table does not exist), and its fixed version under
# the same name: after `resolve --rolled-back` the fixed image re-applies it.
BROKEN = "20990101000000_backfill_audit"
BROKEN_SQL = (
    'CREATE TABLE "AuditLog" (id SERIAL PRIMARY KEY, note TEXT NOT NULL);\n'
    'INSERT INTO "AuditLog" (note) SELECT title FROM "NoSuchTable";\n'
)
FIXED_SQL = 'CREATE TABLE "AuditLog" (id SERIAL PRIMARY KEY, note TEXT NOT NULL);\n'
# A transactional migration held at the gate (testkit/gate.py): nothing of it exists until
# it commits; it leaves one row in "Gated" and the gate's lock released.
GATED = "20990201000000_gated_backfill"
GATED_SQL = (
    'CREATE TABLE "Gated" (id SERIAL PRIMARY KEY, note TEXT NOT NULL);\n'
    f"SELECT pg_advisory_lock({GATE});\n"
    "INSERT INTO \"Gated\" (note) VALUES ('past the gate');\n"
    f"SELECT pg_advisory_unlock({GATE});\n"
)
# A statement-by-statement migration (CREATE INDEX CONCURRENTLY) held at the gate: each
# statement commits on its own.
STEPS = "20990301000000_index_concurrently"

OLD = "0.9.0"  # every example migration but the last
CURRENT = "1.0.0"  # every example migration (one more than OLD)
BROKEN_TAG = "1.1.0"  # CURRENT + a failing migration
FIXED_TAG = "1.1.1"  # CURRENT + the same migration, fixed
GATED_TAG = "1.2.0"  # CURRENT + GATED
STEPS_TAG = "1.3.0"  # CURRENT + STEPS
# app tags that also get a migrator image with their migrations inside (fast-note-migrations)
BUNDLED_TAGS = (CURRENT,)


def app_images() -> dict[str, dict[str, str | Path]]:
    """Tag -> that image's migrations (folder name -> SQL text or example folder)."""
    examples: dict[str, str | Path] = dict(example_migrations())
    assert len(examples) >= 2, "the example app needs at least two migrations"
    old = dict(list(examples.items())[:-1])
    return {
        OLD: old,
        CURRENT: examples,
        BROKEN_TAG: {**examples, BROKEN: BROKEN_SQL},
        FIXED_TAG: {**examples, BROKEN: FIXED_SQL},
        GATED_TAG: {**examples, GATED: GATED_SQL},
        STEPS_TAG: {**examples, STEPS: GATED_MIGRATION},
    }
