"""Splitting a migration into statements the way psql does (PostgreSQL's lexer rules):
pure tests of ``statements.split``, then migrations that run statement by statement on the
real PostgreSQL."""

from __future__ import annotations

import random
import time

import pytest

from fast_note_migrate.statements import Statement, needs_split, split, units
from testkit.cli import Migrator
from testkit.database import Database
from testkit.migrations_folder import MigrationsFolder


def _codes(script: str) -> list[str]:
    return [s.code for s in split(script)]


# --- what ends a statement ----------------------------------------------------------------


def test_semicolons_end_statements_and_empty_ones_are_dropped() -> None:
    """Each semicolon ends a statement; statements with only whitespace, comments or a
    semicolon are dropped; the last one needs no semicolon."""
    assert _codes("SELECT 1; ;  ;\n-- only a comment\n;SELECT 2;\n\nSELECT 3\n-- end\n") == [
        "SELECT 1;",
        "SELECT 2;",
        "SELECT 3",
    ]
    assert split("") == [] and split("  -- nothing\n/* at all */\n;\n") == []


def test_texts_are_the_script_itself_with_comments_and_codes_without() -> None:
    """A statement's text is the script from the end of the previous statement through its
    semicolon (comments before it included), at its offset; its code has each comment
    replaced by a space, and is stripped."""
    script = (
        "-- CreateTable\nCREATE TABLE t (x int);\n"
        "/* note */ INSERT INTO t /* one */ VALUES (1); -- tail\n"
    )
    statements = split(script)
    assert [(s.text, s.offset) for s in statements] == [
        ("-- CreateTable\nCREATE TABLE t (x int);", 0),
        ("\n/* note */ INSERT INTO t /* one */ VALUES (1);", 38),
    ]
    assert all(script[s.offset : s.offset + len(s.text)] == s.text for s in statements)
    assert [s.code for s in statements] == [
        "CREATE TABLE t (x int);",
        "INSERT INTO t   VALUES (1);",
    ]


def test_line_is_that_of_the_first_token_after_leading_comments() -> None:
    """``line`` is the 1-based line of a statement's first token, not of the comments or
    blank lines before it."""
    script = (
        "SELECT 1;\n\n-- a comment;\n/* a block\n comment; */\n\n  SELECT\n2;\nSELECT 3; SELECT 4;"
    )
    assert [(s.code, s.line) for s in split(script)] == [
        ("SELECT 1;", 1),
        ("SELECT\n2;", 7),
        ("SELECT 3;", 9),
        ("SELECT 4;", 9),
    ]


def test_line_comments_hide_semicolons_and_quotes() -> None:
    """``--`` runs to the end of the line: a semicolon or quote in it is no code."""
    assert _codes("SELECT 1 -- it's; not the end\n+ 1;\nSELECT 2 --;\n;") == [
        "SELECT 1  \n+ 1;",
        "SELECT 2  \n;",
    ]


def test_block_comments_nest() -> None:
    """``/* /* */ */`` is one comment: PostgreSQL's block comments nest; an unclosed one
    runs to the end of the script."""
    assert _codes("/* a; /* b; */ c; 'd */ SELECT 1; SELECT 2 /* x */;") == [
        "SELECT 1;",
        "SELECT 2  ;",
    ]
    assert _codes("SELECT 1; SELECT 2 /* a; /* b; */ c;") == ["SELECT 1;", "SELECT 2"]


def test_standard_strings_take_the_backslash_literally() -> None:
    """With standard_conforming_strings (PostgreSQL's default), ``'C:\\'`` ends at its second
    quote: the backslash escapes nothing. ``''`` is a quote inside the string."""
    script = (
        "INSERT INTO p VALUES ('C:\\');\nINSERT INTO p VALUES ('it''s; fine', 'x\\');\nSELECT 3;"
    )
    assert _codes(script) == [
        "INSERT INTO p VALUES ('C:\\');",
        "INSERT INTO p VALUES ('it''s; fine', 'x\\');",
        "SELECT 3;",
    ]


def test_escape_strings_take_backslash_escapes() -> None:
    """``E''`` (or ``e''``) strings escape with a backslash: ``E'a\\'b;c'`` is one string, and
    ``E'\\\\'`` ends at its second quote. The E must start a word: after ``somE`` the quote
    opens a standard string."""
    assert _codes("SELECT E'a\\'b;c'; SELECT e'\\\\'; SELECT 3;") == [
        "SELECT E'a\\'b;c';",
        "SELECT e'\\\\';",
        "SELECT 3;",
    ]
    assert _codes("SELECT 'a'||E'\\';'; SELECT somE'x\\'; SELECT 3;") == [
        "SELECT 'a'||E'\\';';",
        "SELECT somE'x\\';",
        "SELECT 3;",
    ]


def test_escape_string_continues_after_a_newline() -> None:
    """SQL joins string constants separated by whitespace with a newline (comments
    included): the part after the newline still has an E'' string's escapes (as the
    server reads it; psql, reading line by line, does not)."""
    assert _codes("SELECT E'a'\n  -- note\n 'b\\';c';\nSELECT E'a' 'b\\';SELECT 3;") == [
        "SELECT E'a'\n  -- note\n 'b\\';c';",
        "SELECT E'a' 'b\\';",
        "SELECT 3;",
    ]


def test_prefixed_strings_and_quoted_identifiers() -> None:
    """``U&''``, ``B''``, ``X''`` and ``N''`` strings and ``"…"`` identifiers (``""`` a quote
    inside, also ``U&""``) hide semicolons."""
    script = (
        "SELECT U&'d;\\0061', B'1;', X'f;', N'n;';\n"
        'CREATE TABLE "a;b" ("q""x;" int, U&"u;" int);\n'
        "SELECT 3;"
    )
    assert len(split(script)) == 3


def test_dollar_quotes_with_and_without_tags() -> None:
    """``$$…$$`` and ``$tag$…$tag$`` hide everything up to the same delimiter (tags are
    case-sensitive, and other tags or ``$$`` inside are text); an unclosed one runs to the
    end of the script."""
    script = (
        "DO $$ BEGIN PERFORM 1; END $$;\n"
        "SELECT $body$ it's $$; $other$; $Body$ $body$;\n"
        "SELECT $_1$;$_1$$é$;$é$;\n"
        "SELECT 3;"
    )
    assert _codes(script)[1:] == [
        "SELECT $body$ it's $$; $other$; $Body$ $body$;",
        "SELECT $_1$;$_1$$é$;$é$;",
        "SELECT 3;",
    ]
    assert _codes("SELECT 1; SELECT $x$ ; ") == ["SELECT 1;", "SELECT $x$ ;"]


def test_a_dollar_is_no_quote_in_a_parameter_or_an_identifier() -> None:
    """``$1`` is a parameter and ``a$$b`` an identifier: neither opens a dollar quote."""
    assert _codes("PREPARE p AS SELECT $1; SELECT a$$b FROM t; SELECT x$; SELECT 4;") == [
        "PREPARE p AS SELECT $1;",
        "SELECT a$$b FROM t;",
        "SELECT x$;",
        "SELECT 4;",
    ]


def test_semicolons_inside_parentheses_end_nothing() -> None:
    """Inside parentheses a semicolon ends nothing (a rule's actions); a closing parenthesis
    too many does not make the depth negative."""
    script = (
        "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); "
        "INSERT INTO b VALUES ((((2)))));\n"
        "SELECT (1));\nSELECT 3;"
    )
    assert len(split(script)) == 3
    assert split(script)[0].code.endswith("((((2)))));")


# --- BEGIN ATOMIC bodies and keywords used as names ---------------------------------------


def test_begin_atomic_body_is_one_statement() -> None:
    """The semicolons inside ``CREATE [OR REPLACE] FUNCTION|PROCEDURE … BEGIN ATOMIC … END``
    (CASE … END inside included) do not end it; its END; does."""
    script = (
        "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql\n"
        "BEGIN ATOMIC\n  SELECT 1;\n  SELECT CASE WHEN a > 0 THEN 1 END;\nEND;\n"
        "create or replace procedure p() language sql begin atomic insert into t values (1); end;\n"
        "CREATE PROCEDURE q() BEGIN ATOMIC SELECT 1; BEGIN ATOMIC; END; END;\n"
        "SELECT 4;"
    )
    codes = _codes(script)
    assert len(codes) == 4
    assert codes[0].startswith("CREATE FUNCTION") and codes[0].endswith("END;\nEND;")
    assert codes[1].endswith("values (1); end;")
    assert codes[3] == "SELECT 4;"


def test_begin_and_end_as_names_are_no_blocks() -> None:
    """Outside a routine's body ``begin``, ``end`` and ``case`` are just names or keywords:
    a column named begin, a parameter named begin (inside parentheses), an SQL-standard
    function body in quotes."""
    script = (
        'CREATE TABLE slot (id int, begin timestamptz, "end" timestamptz);\n'
        "UPDATE slot SET begin = now() WHERE begin IS NULL;\n"
        "CREATE FUNCTION f(begin int) RETURNS int LANGUAGE sql AS $$ SELECT begin $$;\n"
        "CREATE FUNCTION g() RETURNS int LANGUAGE sql RETURN CASE WHEN true THEN 1 END;\n"
        "SELECT 5;"
    )
    assert len(split(script)) == 5


def test_keywords_in_names_strings_and_comments_are_no_transaction_control() -> None:
    """Only a statement's first word makes it transaction control: not a column named
    begin, a string or a comment."""
    script = (
        "CREATE TABLE t (begin int, commit text);\n"
        "SELECT 'BEGIN';\n"
        "-- BEGIN;\n"
        "/* COMMIT; */ INSERT INTO t (begin) VALUES (1);\n"
        '"end";\n'
    )
    statements = split(script)
    assert len(statements) == 4
    assert not any(s.opens_transaction or s.closes_transaction for s in statements)
    assert not any(s.needs_no_transaction for s in statements)
    assert not needs_split(script)


def test_transaction_control_after_comments_is_recognised() -> None:
    """``BEGIN`` after a comment opens the file's own transaction, ``END`` closes it, and
    the block is one unit."""
    script = "/* block */ BEGIN;\nUPDATE t SET begin = 1;\n-- done\nEND;\nSELECT 1;"
    statements = split(script)
    assert [(s.opens_transaction, s.closes_transaction, s.commits) for s in statements] == [
        (True, False, False),
        (False, False, False),
        (False, True, True),
        (False, False, False),
    ]
    assert units(statements) == [range(0, 3), range(3, 4)]
    assert [s.line for s in statements] == [1, 2, 4, 5]


# --- what cannot run in a transaction ------------------------------------------------------


def test_concurrent_index_is_found_through_comments() -> None:
    """A comment between the words of CREATE INDEX CONCURRENTLY is whitespace."""
    for script in (
        "CREATE INDEX/* why */CONCURRENTLY i ON t (x);",
        "CREATE INDEX -- why\nCONCURRENTLY i ON t (x);",
        'create unique index concurrently "I" on s.t (x);',
    ):
        (statement,) = split(script)
        assert statement.needs_no_transaction, script
        assert statement.concurrent_index() is not None
        assert needs_split(script), script


def test_needs_split_only_for_code_outside_quotes_and_comments() -> None:
    """needs_split is true exactly when a statement cannot run in a transaction block,
    whatever the case of its words; quoted or commented words do not count."""
    assert needs_split("SELECT 1;\ncReAtE InDeX cOnCuRrEnTlY i ON t (x);")
    assert needs_split("VACUUM t;")
    assert needs_split("SELECT 1; BEGIN; SELECT 2; COMMIT;")
    assert not needs_split("SELECT 'CREATE INDEX CONCURRENTLY i ON t (x)';")
    assert not needs_split("-- CREATE INDEX CONCURRENTLY i ON t (x);\nSELECT 1;")
    assert not needs_split("SELECT $$; VACUUM; $$;")
    assert not needs_split("CREATE TABLE t (x int);")


def test_needs_split_agrees_with_the_statements_on_unicode_case() -> None:
    """needs_split's quick test before splitting misses nothing the statements' own
    (Unicode, case-insensitive) test finds: the Kelvin sign and the long s match k and s."""
    for script in ("ROLLBAC\u212a;", "\u017fTART TRANSACTION;", "SELECT 1; VACUUM t;"):
        assert needs_split(script) == any(s.needs_no_transaction for s in split(script))
        assert needs_split(script)


# --- linear in the script's size -------------------------------------------------------------


class _Tally(str):
    """A script that adds up how many characters str.count and str.find walk over."""

    walked = 0

    def count(self, sub: str, start: object = None, end: object = None) -> int:  # type: ignore[override]
        first, last = _bounds(self, start, end)
        self.walked += max(0, last - first)
        return super().count(sub, first, last)

    def find(self, sub: str, start: object = None, end: object = None) -> int:  # type: ignore[override]
        first, last = _bounds(self, start, end)
        found = super().find(sub, first, last)
        self.walked += max(0, (found + len(sub) if found >= 0 else last) - first)
        return found


def _bounds(text: str, start: object, end: object) -> tuple[int, int]:
    return (
        start if isinstance(start, int) else 0,
        end if isinstance(end, int) else len(text),
    )


def _inserts(count: int) -> str:
    return "".join(
        f"-- row {i}\nINSERT INTO t VALUES ({i}, 'it''s {i};', $${i};$$)"
        + (";\n" if i % 3 else ";\n\n")
        for i in range(count)
    )


def test_line_numbers_are_right_throughout_a_large_script() -> None:
    """Every statement of a 100 000-statement script has its offset and line right (lines
    are counted on from the previous statement, never from the start again)."""
    script = _inserts(100_000)
    statements = split(script)
    assert len(statements) == 100_000
    for statement in statements[::997] + statements[-3:]:
        first = statement.offset + statement.text.index("INSERT")
        assert statement.line == script.count("\n", 0, first) + 1
        assert script[statement.offset : statement.offset + len(statement.text)] == statement.text


def test_line_counting_walks_the_script_once() -> None:
    """Counting lines and finding dollar quotes' ends walk each character at most twice
    in all, however many statements there are (not once per statement)."""
    for count in (1_000, 20_000):
        script = _Tally(f"-- walked over {count}\n" + _inserts(count))
        assert len(split(script)) == count
        assert 0 < script.walked <= 2 * len(script)


def test_a_50_mb_script_splits_in_seconds() -> None:
    """500 000 INSERTs (about 50 MB) split, and needs_split decides, within a minute of
    CPU time even on a slow or busy machine (a few seconds normally; a quadratic
    splitter takes hours)."""
    script = (
        "".join(
            f'INSERT INTO "Note" ("id", "title", "body") VALUES ({i}, \'title {i}\', '
            f"'body of note {i}; it''s -- a text with (parentheses)');\n"
            for i in range(500_000)
        )
        + 'CREATE INDEX CONCURRENTLY "Note_id_idx" ON "Note" ("id");\n'
    )
    assert len(script) > 50_000_000
    started = time.process_time()
    statements = split(script)
    assert needs_split(script)
    assert time.process_time() - started < 60
    assert len(statements) == 500_001
    assert statements[-1].line == 500_001 and statements[-1].needs_no_transaction


@pytest.mark.parametrize("seed", range(5))
def test_any_text_splits_into_pieces_of_itself(seed: int) -> None:
    """Whatever the input (unclosed quotes, stray parentheses, odd characters), splitting
    ends, and the statements are pieces of the script, in order, each with its code."""
    rng = random.Random(seed)
    alphabet = "abeEuU&$1_ ;;()'\"\\-/*\n\té\u212a.+"
    for _ in range(200):
        script = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        statements = split(script)
        end = 0
        for statement in statements:
            assert statement.offset >= end and statement.code
            assert script[statement.offset : statement.offset + len(statement.text)] == (
                statement.text
            )
            end = statement.offset + len(statement.text)
        assert isinstance(statements, list) and all(isinstance(s, Statement) for s in statements)


# --- end to end, on the real PostgreSQL ---------------------------------------------------


def _applies_statement_by_statement(migrate: Migrator, db: Database, name: str) -> None:
    result = migrate("deploy", "--lint-policy", "off")
    assert result.code == 0, result.err
    assert "statement by statement" in result.err
    rows = [(r.finished, r.logs) for r in db.history() if r.name.endswith(name)]
    assert rows == [(True, None)]


def test_column_named_begin_with_a_concurrent_index_applies(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """A column named ``begin`` (or ``end``) is no transaction control: the migration runs
    statement by statement and CREATE INDEX CONCURRENTLY runs outside a transaction."""
    migrations.add(
        "begin_column",
        'CREATE TABLE "Slot" (id int, begin timestamptz, "end" timestamptz);\n'
        "INSERT INTO \"Slot\" VALUES (1, now(), now() + interval '1 hour');\n"
        "UPDATE \"Slot\" SET begin = begin - interval '1 day';\n"
        'CREATE INDEX CONCURRENTLY "Slot_begin_idx" ON "Slot" (begin);\n',
    )
    _applies_statement_by_statement(migrate, db, "begin_column")
    assert db.columns("Slot") == ["id", "begin", "end"]
    assert db.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'Slot_begin_idx'") == 1


def test_backslash_at_the_end_of_a_string_with_a_concurrent_index_applies(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """``'C:\\'`` is a complete string (standard_conforming_strings): the backslash escapes
    nothing, so the statements after it are split as PostgreSQL reads them."""
    migrations.add(
        "windows_paths",
        "CREATE TABLE drive (path text);\n"
        "INSERT INTO drive VALUES ('C:\\');\n"
        'CREATE INDEX CONCURRENTLY "drive_path_idx" ON drive (path);\n'
        "INSERT INTO drive VALUES ('D:\\'), (E'E:\\\\');\n",
    )
    _applies_statement_by_statement(migrate, db, "windows_paths")
    assert db.query("SELECT path FROM drive ORDER BY 1") == [("C:\\",), ("D:\\",), ("E:\\",)]


def test_begin_atomic_function_with_a_concurrent_index_applies(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """A ``CREATE FUNCTION … BEGIN ATOMIC … END`` body is one statement, semicolons and
    CASE … END inside it included."""
    migrations.add(
        "atomic_function",
        "CREATE TABLE account (id int, balance int);\n"
        "CREATE FUNCTION deposit(a int, amount int) RETURNS int\n"
        "LANGUAGE sql\n"
        "BEGIN ATOMIC\n"
        "  UPDATE account SET balance = balance + amount WHERE id = a;\n"
        "  SELECT CASE WHEN amount > 0 THEN 1 ELSE 0 END;\n"
        "END;\n"
        "CREATE OR REPLACE PROCEDURE open_account(a int)\n"
        "LANGUAGE sql\n"
        "BEGIN ATOMIC\n"
        "  INSERT INTO account VALUES (a, 0);\n"
        "END;\n"
        "CALL open_account(7);\n"
        "SELECT deposit(7, 5);\n"
        "CREATE INDEX CONCURRENTLY account_id_idx ON account (id);\n",
    )
    _applies_statement_by_statement(migrate, db, "atomic_function")
    assert db.query("SELECT id, balance FROM account") == [(7, 5)]


def test_nested_comments_and_tagged_dollar_quotes_with_a_concurrent_index_apply(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """Semicolons inside nested ``/* /* */ */`` comments and ``$tag$`` quotes (holding
    ``$$`` and other tags) end nothing."""
    migrations.add(
        "comments_and_quotes",
        "/* outer; /* inner; */ still a comment; 'not a string */\n"
        "CREATE TABLE note (body text);\n"
        "INSERT INTO note VALUES ($body$it's $$ fine; $other$ too;$body$);\n"
        "DO $do$ BEGIN INSERT INTO note VALUES ('from do;'); END $do$;\n"
        "CREATE INDEX CONCURRENTLY note_body_idx ON note (body); -- done; really\n",
    )
    _applies_statement_by_statement(migrate, db, "comments_and_quotes")
    assert db.query("SELECT body FROM note ORDER BY 1") == [
        ("from do;",),
        ("it's $$ fine; $other$ too;",),
    ]


def test_failing_statement_is_reported_at_its_line(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """The statement that fails is named by its own line, counted through multi-line
    comments and quotes; the statements before it stay applied."""
    name = migrations.add(
        "fails_at_line_9",
        "CREATE TABLE t (x text);\n"
        "/* a; /* nested;\n */ still a comment; */\n"
        "INSERT INTO t VALUES ($tag$a;\nb$tag$);\n"
        "INSERT INTO t VALUES (E'c\\';d');\n"
        "CREATE INDEX CONCURRENTLY t_x ON t (x);\n"
        "-- the next statement fails\n"
        "SELECT 1 / 0;\n"
        "INSERT INTO t VALUES ('never');\n",
    )
    result = migrate("deploy", "--lint-policy", "off")
    assert result.code == 1
    (row,) = [r for r in db.history() if r.name == name]
    assert not row.finished
    assert "22012" in (row.logs or "") and "Statement at line 9 of migration.sql" in (
        row.logs or ""
    )
    assert "4 statement(s) before it had committed" in (row.logs or "")
    assert db.query("SELECT x FROM t ORDER BY 1") == [("a;\nb",), ("c';d",)]
