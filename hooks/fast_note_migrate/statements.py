"""A migration script as statements: splitting, and which ones cannot run in a transaction.

Splitting follows psql (``src/fe_utils/psqlscan.l``, whose rules are those of the server's
``scan.l``): a semicolon ends a statement unless it is inside a comment (``--``, or
``/* */`` which nests), a string (``'…'`` with ``''`` doubled and the backslash an ordinary
character, as ``standard_conforming_strings`` has it, PostgreSQL's default; ``E'…'``
with backslash escapes; ``B''``, ``X''``, ``N''``, ``U&''``), a quoted identifier
(``"…"``), a dollar quote (``$$…$$``, ``$tag$…$tag$``), parentheses, or the
``BEGIN ATOMIC … END`` body of a ``CREATE [OR REPLACE] FUNCTION|PROCEDURE`` (psql's rule:
in such a statement, outside parentheses, ``BEGIN`` opens a block, ``CASE`` inside one
too, ``END`` closes one). Keywords are looked at nowhere else, so a column named
``begin`` is just a name. One difference from psql, which reads a file line by line: an
``E''`` string continued after a newline (``E'a'`` newline ``'b\\'…'``) keeps its escapes,
as the server reads it. The scan is linear in the script's size.

The identifier rule here is the one the runner and the lint share.
"""

from __future__ import annotations

import functools
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
# (A statement's code is its text with each comment replaced by a space, so every word
# the pattern above matches in it stands as a whole word in the script too.)
_MAYBE_NON_TRANSACTIONAL = re.compile(
    r"\b(BEGIN|COMMIT|ROLLBACK|START|END|ABORT|SAVEPOINT|RELEASE|VACUUM|SYSTEM|DATABASE|"
    r"TABLESPACE|CONCURRENTLY)\b",
    re.IGNORECASE,
)
# The same test, several times faster, on the script in lower case: ASCII word boundaries
# are found wherever Unicode ones are, and lower() yields every letter that matches one of
# these words ignoring case, except from the four characters in _CASE_TWINS.
_MAYBE_NON_TRANSACTIONAL_LOWER = re.compile(_MAYBE_NON_TRANSACTIONAL.pattern.lower(), re.ASCII)
# capital I with dot, dotless i, long s, Kelvin sign: i, i, s and k when case is ignored
_CASE_TWINS = "\u0130\u0131\u017f\u212a"
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

# --- the lexer ------------------------------------------------------------------------
# The patterns below read a script one lexical unit after the other, as PostgreSQL does
# (an identifier, a number, a string… whole), so every unit starts where the previous one
# ended: an E'' string, a dollar quote or a comment is only recognised at such a start.
# PostgreSQL's character classes: every character beyond ASCII (every byte >= 0x80 of its
# UTF-8) may be part of an identifier; its whitespace is [ \t\n\r\f\v].
_SPACE = " \t\n\r\f\v"
_START = "A-Za-z_\x80-\U0010ffff"  # ident_start (also dolq_start)
_WORD = "A-Za-z0-9_\x80-\U0010ffff"  # ident_cont but "$" (also dolq_cont)
_IDENTIFIER = rf"[{_START}][{_WORD}$]*+"
# A number (1, 1.5, 1e-5, 0x1F, 1_000) with what PostgreSQL reads as its trailing junk (an
# error, but one token all the same): an incomplete exponent (1e-), or an identifier right
# after it (1abc$$, 1e-5x).
_NUMBER = rf"[0-9]++(?:\.[0-9]*+)?(?:[eE][-+](?![0-9])|(?:[eE][-+][0-9]++)?(?:{_IDENTIFIER})?)"
_DOLLAR_QUOTE = rf"\$(?:[{_START}][{_WORD}]*+)?\$"
# A string: '' doubles a quote, the backslash is an ordinary character (also in B'', X'',
# N'' and U&''); E'' strings have backslash escapes.
_STRING = r"'[^']*+(?:''[^']*+)*+"
_QUOTED = r'"[^"]*+(?:""[^"]*+)*+'  # a quoted identifier; also U&""
# Units that cannot end a statement, nor hide one's end: whitespace and operators,
# numbers, parameters ($1) and a lone $, closed strings and quoted identifiers.
_PLAIN = rf"""
  [^;()'"$\-/{_WORD}]++
| {_STRING}'
| {_QUOTED}"
| {_NUMBER}
| -(?!-) | /(?!\*)
| \$(?!{_DOLLAR_QUOTE[2:]})(?:[0-9]++(?:{_IDENTIFIER})?)?
"""
# The units that matter, each one a token. A string or quoted identifier without its
# closing quote runs to the end of the script, as psql reads it.
_TOKENS = rf"""
  (?P<semicolon>;)
| (?P<open>\()
| (?P<close>\))
| (?P<comment>--[^\n\r]*+)
| (?P<block>/\*)
| [eE]'(?:[^'\\]++|\\.|'')*+(?P<escaped>')?
| (?P<dollar>{_DOLLAR_QUOTE})
| {_STRING}'?
| {_QUOTED}"?
"""
# At the start of a statement psql reads its plain identifiers (not quoted ones, nor the
# B, X, N, E and U& of strings) to see whether it is CREATE [OR REPLACE] FUNCTION or
# PROCEDURE, and in such a statement BEGIN, CASE and END outside parentheses.
_READ_WORDS = rf"""(?:{_PLAIN})*+
(?:{_TOKENS}
| [bBxXnN](?=') | [uU](?=&)
| (?P<word>{_IDENTIFIER})
)?"""
# Elsewhere identifiers are skimmed too, and so are parentheses balanced within three
# levels that hold no token: they leave the depth as it was.
_SKIMMED = rf"(?![eE]'){_IDENTIFIER} | {_PLAIN}"
_BALANCED = r"(?!)"
for _ in range(3):
    _BALANCED = rf"\((?:{_SKIMMED}|{_BALANCED})*+\)"
_SKIM = rf"(?:{_SKIMMED}|{_BALANCED})*+(?:{_TOKENS})?"
_COMMENT_DELIMITER = re.compile(r"/\*|\*/")
# After an E'' string: a quote after whitespace with a newline continues it (SQL's
# string continuation), still with backslash escapes.
_CONTINUE = re.compile(
    r"(?:[ \t\f\v]++|--[^\n\r]*+)*+[\n\r](?:[ \t\n\r\f\v]++|--[^\n\r]*+[\n\r])*+'"
)
_ESCAPED_REST = re.compile(r"(?:[^'\\]++|\\.|'')*+(?P<escaped>')?", re.DOTALL)
_NOT_SPACE = re.compile(rf"[^{_SPACE}]")


@functools.cache
def _scanner(pattern: str) -> re.Pattern[str]:
    """``_READ_WORDS`` or ``_SKIM`` compiled on first use: their Unicode classes take
    about 0.1 s to compile, which a verb that splits nothing (status, wait) need not pay."""
    return re.compile(pattern, re.VERBOSE | re.DOTALL)


# psql records the first letter of these among a statement's first four identifiers.
_ROUTINE_WORDS = frozenset({"create", "or", "replace", "function", "procedure"})


def _routine(letters: list[str]) -> bool | None:
    """psql's test on a statement's first identifiers: whether it is CREATE [OR REPLACE]
    FUNCTION|PROCEDURE (``letters``: for each identifier so far, the first letter of one
    of _ROUTINE_WORDS, "" for any other). None while the next ones could still decide."""
    first, second, third, fourth = [*letters, "", "", ""][:4]
    if first != "c":
        return False
    if second in ("f", "p") or (second == "o" and third == "r" and fourth in ("f", "p")):
        return True
    n = len(letters)
    undecided = n == 1 or (second == "o" and (n == 2 or (third == "r" and n == 3)))
    return None if undecided else False


def _end_of_block_comment(script: str, position: int) -> int:
    """Where the ``/*`` comment whose body starts at ``position`` ends (comments nest)."""
    depth = 0
    while True:
        delimiter = _COMMENT_DELIMITER.search(script, position)
        if delimiter is None:
            return len(script)
        position = delimiter.end()
        if delimiter.group() == "/*":
            depth += 1
        elif depth == 0:
            return position
        else:
            depth -= 1


def _end_of_escaped_string(script: str, end: int) -> int:
    """Where an ``E''`` string closed at ``end`` ends: with the continuations (a quote
    after whitespace with a newline) it may have."""
    closed = True
    while closed and (more := _CONTINUE.match(script, end)) is not None:
        rest = _ESCAPED_REST.match(script, more.end())
        assert rest is not None  # it matches the empty string
        end, closed = rest.end(), rest.group("escaped") is not None
    return end


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
    code: str  # the statement without comments (each one a space), for matching
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


class _Splitter:
    """One pass over a script, statement after statement (see the module's docstring)."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.statements: list[Statement] = []
        self.line = 1  # the line of ``self.line_at``
        self.line_at = 0
        self._reset(0)

    def _reset(self, start: int) -> None:
        self.start = start  # where the statement's text starts
        self.first = -1  # its first character that is not whitespace or comment
        self.gap = start  # while there is none: where the unread whitespace starts
        self.comments: list[tuple[int, int]] = []  # after ``first``
        self.parens = 0
        self.blocks = 0  # BEGIN (and CASE) … END depth of a routine body
        self.letters: list[str] = []  # see _routine
        self.routine: bool | None = None

    def run(self) -> list[Statement]:
        script, position = self.script, 0
        while position < len(script):
            # no word matters any more once the statement is known not to be a routine
            pattern = _scanner(_SKIM if self.routine is False else _READ_WORDS)
            token = pattern.match(script, position)
            assert token is not None  # both match the empty string
            kind = token.lastgroup  # None: plain units only
            start, position = (token.start(kind) if kind else token.end()), token.end()
            if self.first < 0:
                self._find_first(start)
                if self.first < 0 and kind not in (None, "comment", "block"):
                    self.first = start
            if kind == "semicolon":
                if self.parens == 0 and self.blocks == 0:
                    self._finish(position)
                    continue
            elif kind == "open":
                self.parens += 1
            elif kind == "close":
                self.parens = max(0, self.parens - 1)
            elif kind == "word":
                self._word(token.group(kind))
            elif kind == "dollar":
                found = script.find(token.group(kind), position)
                position = len(script) if found < 0 else found + len(token.group(kind))
            elif kind == "escaped":  # a closed E'' string, which may continue
                position = _end_of_escaped_string(script, position)
            elif kind in ("comment", "block"):
                if kind == "block":
                    position = _end_of_block_comment(script, position)
                if self.first >= 0:
                    self.comments.append((start, position))
            if self.first < 0:
                self.gap = position
        self._finish(len(script))
        return self.statements

    def _find_first(self, until: int) -> None:
        """Note where the statement's code starts if it does in ``[gap, until)``."""
        found = _NOT_SPACE.search(self.script, self.gap, until)
        if found is not None:
            self.first = found.start()

    def _word(self, word: str) -> None:
        """psql's bookkeeping of a plain identifier (see _routine)."""
        lower = word.lower() if word.isascii() else ""
        if self.routine is None:
            if not self.letters and lower != "create":  # most statements: decided at once
                self.routine = False
                return
            self.letters.append(lower[0] if lower in _ROUTINE_WORDS else "")
            self.routine = _routine(self.letters)
        if self.routine and self.parens == 0:
            if lower == "begin" or (lower == "case" and self.blocks):
                self.blocks += 1
            elif lower == "end" and self.blocks:
                self.blocks -= 1

    def _finish(self, end: int) -> None:
        """End the statement at ``end``; keep it unless it is empty."""
        if self.first < 0:
            self._find_first(end)
        if self.first >= 0:
            script, position = self.script, self.first
            parts: list[str] = []
            for comment_start, comment_end in self.comments:
                parts += (script[position:comment_start], " ")
                position = comment_end
            code = script[position:end].rstrip(_SPACE)
            if parts:
                code = ("".join(parts) + code).rstrip(_SPACE)
            if code and code != ";":
                self.line += script.count("\n", self.line_at, self.first)
                self.line_at = self.first
                self.statements.append(
                    Statement(script[self.start : end], self.start, code, self.line)
                )
        self._reset(end)


def split(script: str) -> list[Statement]:
    """Split a script into statements where psql would (see the module's docstring).

    A statement's text runs from the end of the previous one through its semicolon (the
    comments before it included); statements with nothing but comments are dropped.
    """
    return list(_split(script))


@functools.lru_cache(maxsize=1)
def _split(script: str) -> tuple[Statement, ...]:
    """The last script's statements are kept: the lint, deploy and the runner each ask for
    them in turn."""
    return tuple(_Splitter(script).run())


def needs_split(script: str) -> bool:
    """Whether a script must run statement by statement outside one transaction."""
    if any(twin in script for twin in _CASE_TWINS):
        maybe = _MAYBE_NON_TRANSACTIONAL.search(script)
    else:
        maybe = _MAYBE_NON_TRANSACTIONAL_LOWER.search(script.lower())
    if maybe is None:  # cheap test first: most scripts
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


# Statements that only read or write rows: no lint rule about a live database's locks or
# destructive changes is about them.
_DATA_STATEMENT = re.compile(r"(?:INSERT|UPDATE|DELETE|SELECT|VALUES)\b", re.IGNORECASE)


class _WithoutData(_Splitter):
    """The splitter's pass, writing each statement's text as it ends (or only its line
    breaks for a data statement) instead of keeping Statement objects."""

    def __init__(self, script: str) -> None:
        super().__init__(script)
        self.parts: list[str] = []

    def _finish(self, end: int) -> None:
        if self.first < 0:
            self._find_first(end)
        text = self.script[self.start : end]
        if self.first >= 0 and _DATA_STATEMENT.match(self.script, self.first):
            text = "\n" * text.count("\n")
        self.parts.append(text)
        self._reset(end)


def without_data_statements(script: str) -> str:
    """``script`` with each INSERT, UPDATE, DELETE, SELECT and VALUES statement replaced by
    its line breaks: the same lines for everything else, for the lint of a large data
    migration (in time linear in its size, without a parse of every row)."""
    splitter = _WithoutData(script)
    splitter.run()
    return "".join(splitter.parts)
