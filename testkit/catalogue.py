"""The app image tags the scenarios deploy, and which migrations each carries.

Locally the node agent serves these from a folder (``testkit/kube/images.py``). For a real
cluster, ``python -m testkit.catalogue OUT`` writes one Docker build context per tag
(the stand-in app plus that tag's migrations): build them as ``<your registry>/fast-note:<tag>``
and point ``FAST_NOTE_E2E_APP_REPOSITORY`` at ``<your registry>/fast-note``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from testkit.harness import EXAMPLES, Images, example_migrations
from testkit.kube import images as image_table

# A migration that fails half-way (the table does not exist), and its fixed version under
# the same name: after `resolve --rolled-back` the fixed image re-applies it.
BROKEN = "20990101000000_backfill_audit"
BROKEN_SQL = (
    'CREATE TABLE "AuditLog" (id SERIAL PRIMARY KEY, note TEXT NOT NULL);\n'
    'INSERT INTO "AuditLog" (note) SELECT title FROM "NoSuchTable";\n'
)
FIXED_SQL = 'CREATE TABLE "AuditLog" (id SERIAL PRIMARY KEY, note TEXT NOT NULL);\n'

OLD = "0.9.0"  # every example migration but the last
CURRENT = "1.0.0"  # every example migration (one more than OLD)
BROKEN_TAG = "1.1.0"  # CURRENT + a failing migration
FIXED_TAG = "1.1.1"  # CURRENT + the same migration, fixed


def define_all(images: Images) -> None:
    examples = example_migrations()
    assert len(examples) >= 2, f"{EXAMPLES} needs at least two example migrations"
    images.examples(OLD, len(examples) - 1)
    images.examples(CURRENT)
    images.examples(BROKEN_TAG, extra={BROKEN: BROKEN_SQL})
    images.examples(FIXED_TAG, extra={BROKEN: FIXED_SQL})


DOCKERFILE = """\
# fast-note e2e stand-in app, image tag {tag}: the stand-in server and this tag's migrations.
FROM python:3.11-slim
RUN pip install --no-cache-dir "psycopg[binary]==3.3.9"
COPY standin_app.py /app/standin_app.py
COPY app/prisma/migrations /app/prisma/migrations
USER 10001
EXPOSE 3000
ENTRYPOINT ["python", "/app/standin_app.py"]
"""


def write_build_contexts(out: Path) -> list[Path]:
    tmp = out / ".images"
    images = Images(tmp)
    define_all(images)
    contexts = []
    for tag, migrations in images.defined.items():
        ctx = out / tag
        shutil.rmtree(ctx, ignore_errors=True)
        shutil.copytree(migrations, ctx / "app" / "prisma" / "migrations")
        shutil.copy(image_table.STANDIN_APP, ctx / "standin_app.py")
        (ctx / "Dockerfile").write_text(DOCKERFILE.format(tag=tag))
        contexts.append(ctx)
    shutil.rmtree(tmp)
    return contexts


if __name__ == "__main__":
    for ctx in write_build_contexts(Path(sys.argv[1] if len(sys.argv) > 1 else "e2e-images")):
        print(ctx)
