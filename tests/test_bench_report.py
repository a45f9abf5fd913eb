"""The benchmark report across PostgreSQL majors (tools/bench.py): `--only` replaces the
blocks and summary rows of the sections and majors it measured and keeps the rest, and a
server can run Debian's PostgreSQL 15 beside the embedded major."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from testkit.pgserver import PostgresServer, debian_install
from tools.bench import Target, merge, merge_targets, parse_summary, render_summary

EARLIER = """# Benchmarks

- date: earlier

## Summary: the performance targets

| target | PostgreSQL | measured | result | section |
|---|---:|---:|---|---|
| apply 1000 tiny migrations | 15 | 1.40x | not met | apply |
| apply 1000 tiny migrations | 18 | 1.30x | not met | apply |
| no-op `deploy` peak RSS ≤ 60 MB | 18 | 38.0 MB | **met** | noop |

## Apply 1000 tiny migrations — PostgreSQL 15

apply on 15, earlier

## Apply 1000 tiny migrations — PostgreSQL 18

apply on 18, earlier

## No-op on an up-to-date database of 1000 migrations — PostgreSQL 18

noop on 18, earlier

## Import time of the CLI

imports, earlier
"""


def test_only_replaces_the_blocks_of_the_majors_it_measured():
    """`--only apply --postgres 15` rewrites 15's apply block in place; 18's stays."""
    merged = merge(
        EARLIER, {("apply", 15): "## Apply 1000 tiny migrations — PostgreSQL 15\n\nnew\n"}, 18
    )
    assert "apply on 15, earlier" not in merged
    assert merged.index("\nnew\n") < merged.index("apply on 18, earlier")
    assert "noop on 18, earlier" in merged and "imports, earlier" in merged


def test_a_new_major_goes_after_its_section_on_the_other_majors():
    """A report from before the majors (no major in its headings) was measured on the
    embedded one: 18's block replaces it, 15's goes right after it."""
    legacy = (
        "# Benchmarks\n\n## Apply 200 tiny migrations to an empty database\n\nold 18\n\n"
        "## Import time of the CLI\n\nimports\n"
    )
    merged = merge(
        legacy,
        {
            ("apply", 18): "## Apply 200 tiny migrations — PostgreSQL 18\n\nnew 18\n",
            ("apply", 15): "## Apply 200 tiny migrations — PostgreSQL 15\n\nnew 15\n",
        },
        18,
    )
    assert "old 18" not in merged
    assert merged.index("new 18") < merged.index("new 15") < merged.index("imports")


def test_the_summary_keeps_the_rows_of_sections_not_measured_again():
    """New apply rows on 18 replace the earlier ones; 15's apply and 18's no-op rows stay,
    in section order, and the summary goes first in a report that had none."""
    earlier = parse_summary(EARLIER)
    assert [(r.section, r.major, r.result) for r in earlier] == [
        ("apply", 15, "not met"),
        ("apply", 18, "not met"),
        ("noop", 18, "met"),
    ]
    new = [Target.judged("apply", "apply 1000 tiny migrations", 18, "0.95x", True)]
    rows = merge_targets(earlier, new, {("apply", 18)})
    assert [(r.major, r.measured) for r in rows] == [(15, "1.40x"), (18, "0.95x"), (18, "38.0 MB")]
    summary = render_summary(rows, None)
    assert parse_summary(summary) == rows
    merged = merge(
        "# Benchmarks\n\n## Import time of the CLI\n\nx\n", {("summary", None): summary}, 18
    )
    assert merged.index("## Summary") < merged.index("## Import time")


def test_a_server_runs_debian_postgresql_15_with_its_own_psql():
    """`PostgresServer.for_major(15)` is Debian's PostgreSQL 15 and its psql is 15's."""
    if debian_install(15) is None:
        pytest.skip("Debian's postgresql-15 is not installed (apt-get install postgresql-15)")
    with PostgresServer.for_major(15) as server, psycopg.connect(server.url()) as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
        assert row is not None and str(row[0]).startswith("15")
        psql = subprocess.run(
            [str(server.binary("psql")), "--version"], capture_output=True, text=True, check=True
        )
        assert " 15." in psql.stdout


def test_a_missing_major_says_what_to_do():
    """A major neither embedded nor installed names the package to install."""
    with pytest.raises(RuntimeError, match=r"what to do: apt-get install postgresql-9\b"):
        PostgresServer.for_major(9)
