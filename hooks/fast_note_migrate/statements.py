"""A migration script as statements: splitting, and which ones cannot run in a transaction.

Splitting uses sqlparse (dollar quotes, strings and comments respected); the identifier
rule here is the one the runner and the lint share.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# An SQL identifier: quoted ("a ""b""") or plain.
IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'

# Statements that manage their own transaction or cannot run inside a transaction block.
_NON_TRANSACTIONAL = re.compile(
    r"^\s*(BEGIN|COMMIT|ROLLBACK|START\s+TRANSACTION|END|ABORT|SAVEPOINT|RELEASE|VACUUM|"
    r"ALTER\s+SYSTEM|(CREATE|DROP)\s+DATABASE|(CREATE|DROP)\s+TABLESPACE|"
    r"CREATE\s+(UNIQUE\s+)?INDEX\s+CONCURRENTLY|DROP\s+INDEX\s+CONCURRENTLY|"
    r"REINDEX\s+(\(.*?\)\s*)?\w+\s+CONCURRENTLY|DETACH\s+PARTITION.*\bCONCURRENTLY|"
    r"ALTER\s+TABLE\b.*\bDETACH\s+PARTITION\b.*\bCONCURRENTLY)\b",
    re.IGNORECASE | re.DOTALL,
)
# Cheap test before splitting: a script without any of these words runs as one query.
_MAYBE_NON_TRANSACTIONAL = re.compile(
    r"\b(BEGIN|COMMIT|ROLLBACK|START|END|ABORT|SAVEPOINT|RELEASE|VACUUM|SYSTEM|DATABASE|"
    r"TABLESPACE|CONCURRENTLY)\b",
    re.IGNORECASE,
)
# The file's own transaction control: a block from BEGIN to COMMIT runs (and is retried) as
# one unit. ROLLBACK TO SAVEPOINT and the two-phase PREPARED forms close nothing.
_OPENS = re.compile(r"^\s*(BEGIN|START\s+TRANSACTION)\b", re.IGNORECASE)
_CLOSES = re.compile(
    r"^\s*(COMMIT|END|ROLLBACK|ABORT)\b(?!\s+(PREPARED|TO)\b)"
    r"(?!\s+(WORK|TRANSACTION)\s+TO\b)",
    re.IGNORECASE,
)
_COMMITS = re.compile(r"^\s*(COMMIT|END)\b", re.IGNORECASE)
_CREATE_INDEX_CONCURRENTLY = re.compile(
    rf"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    rf"(?P<index>{IDENT})\s+ON\s+(?:ONLY\s+)?(?:(?P<schema>{IDENT})\s*\.\s*)?{IDENT}",
    re.IGNORECASE,
)


def unquote_identifier(identifier: str) -> str:
    """The name PostgreSQL stores: quoted as written, plain folded to lower case."""
    if identifier.startswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier.lower()


@dataclass(frozen=True)
class Statement:
    """One statement of a script: its text (comments included) and where it starts."""

    text: str
    offset: int  # character offset of ``text`` in the script
    code: str  # the statement without comments, for matching
    line: int  # 1-based line of the statement's first keyword

    @property
    def needs_no_transaction(self) -> bool:
        return bool(_NON_TRANSACTIONAL.match(self.code))

    @property
    def opens_transaction(self) -> bool:
        return bool(_OPENS.match(self.code))

    @property
    def closes_transaction(self) -> bool:
        return bool(_CLOSES.match(self.code))

    @property
    def commits(self) -> bool:
        """COMMIT or END: what ran since BEGIN becomes durable with it."""
        return self.closes_transaction and bool(_COMMITS.match(self.code))

    def concurrent_index(self) -> tuple[str | None, str] | None:
        """(schema or None, index) when this is a ``CREATE INDEX CONCURRENTLY``."""
        match = _CREATE_INDEX_CONCURRENTLY.match(self.code)
        if match is None:
            return None
        schema = match.group("schema")
        return (
            unquote_identifier(schema) if schema else None,
            unquote_identifier(match.group("index")),
        )


def split(script: str) -> list[Statement]:
    """Split a script into statements (dollar quotes, strings and comments respected)."""
    from sqlparse import tokens
    from sqlparse.engine import FilterStack

    result: list[Statement] = []
    cursor = 0
    stack = FilterStack()  # type: ignore[no-untyped-call]  # sqlparse ships no annotations
    for parsed in stack.run(script):  # type: ignore[no-untyped-call]  # (ditto)
        text = str(parsed)
        offset = script.find(text, cursor)
        if offset < 0:  # sqlparse keeps the text intact; this is a safety net
            offset = cursor
        cursor = offset + len(text)
        code_parts: list[str] = []
        first_at: int | None = None
        position = offset
        for token in parsed.flatten():
            is_comment = token.ttype in tokens.Comment
            if not is_comment and not token.is_whitespace and first_at is None:
                first_at = position
            if not is_comment:
                code_parts.append(token.value)
            position += len(token.value)
        code = "".join(code_parts).strip()
        if not code or code == ";":
            continue
        start = first_at if first_at is not None else offset
        result.append(Statement(text, offset, code, script.count("\n", 0, start) + 1))
    return result


def needs_split(script: str) -> bool:
    """Whether a script must run statement by statement outside one transaction."""
    if not _MAYBE_NON_TRANSACTIONAL.search(script):  # cheap test first: most scripts
        return False
    return any(s.needs_no_transaction for s in split(script))


def units(statements: list[Statement]) -> list[range]:
    """The statements grouped as they must run and be retried: one statement, or a
    transaction block of the file's own from BEGIN to its COMMIT/ROLLBACK (to the end of
    the file when it is never closed)."""
    found: list[range] = []
    index = 0
    while index < len(statements):
        end = index + 1
        if statements[index].opens_transaction:
            while end < len(statements) and not statements[end - 1].closes_transaction:
                end += 1
            if not statements[end - 1].closes_transaction:
                end = len(statements)
        found.append(range(index, end))
        index = end
    return found
