"""Every row of bad_inputs.ROWS: the exit code, the message and what to do, the database
unchanged, no password in any output, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.cli import run_cli
from testkit.database import Database
from testkit.migrations_folder import MigrationsFolder
from testkit.pgserver import REPO, free_port

from .bad_inputs import PASSWORD, ROWS, BadInput, markdown


def expand(text: str, db: Database, folder: Path) -> str:
    server = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{db.port}"
    return text.format(
        server=server,
        url=f"{server}/{db.name}?schema=public",
        db=db.name,
        port=db.port,
        dir=folder,
        free_port=free_port(),
    )


PARAMS = [
    pytest.param(
        r,
        id=r.id,
        marks=[pytest.mark.xfail(reason=r.known_bug, strict=True)] if r.known_bug else [],
    )
    for r in ROWS
]


@pytest.mark.parametrize("row", PARAMS)
def test_bad_input(
    row: BadInput, db: Database, migrations: MigrationsFolder, tmp_path: Path
) -> None:
    row.folder(migrations)
    if row.sql:
        db.run(row.sql)
    before = db.snapshot()
    env = {"DATABASE_URL": "{url}", "MIGRATIONS_DIR": "{dir}", **row.env}
    env = {k: expand(v, db, migrations.path) for k, v in env.items()}
    argv = [expand(a, db, migrations.path) for a in row.argv]
    workdir = tmp_path / "cwd"  # no prisma/migrations here
    workdir.mkdir()
    result = run_cli(*argv, env=env, cwd=workdir, timeout=30)
    output = result.output
    assert result.code == row.code, output
    assert row.message in output, f"{row.message!r} not in:\n{output}"
    if row.hint:
        assert "what to do:" in output, output
        what_to_do = output[output.index("what to do:") :]
        assert row.hint in what_to_do, f"{row.hint!r} not in the hint:\n{output}"
    else:  # argparse answers: the usage line
        assert "usage: fast-note-migrate" in result.err, output
    assert PASSWORD not in output
    assert "Traceback" not in output
    assert db.snapshot() == before, "the database changed"


def test_the_table_has_at_least_twenty_rows_with_unique_ids() -> None:
    assert len(ROWS) >= 20
    assert len({r.id for r in ROWS}) == len(ROWS)
    assert {r.code for r in ROWS} >= {2, 4, 5, 6}


def test_docs_errors_md_is_generated_from_the_table() -> None:
    """docs/errors.md is the table's Markdown: regenerate it when a row changes."""
    doc = REPO / "docs" / "errors.md"
    assert doc.read_text() == markdown(), (
        "docs/errors.md is stale: python -m tests.reliability.bad_inputs --markdown "
        "> docs/errors.md"
    )
