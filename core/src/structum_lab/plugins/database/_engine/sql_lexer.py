"""Finding the placeholders in SQL text, outside literals, quoted identifiers and comments.

A :class:`SQLDialect` says which lexical forms the SQL text can contain (dollar quotes,
backslash escapes, backtick identifiers, ``#`` comments, nested ``/* */``); :func:`scan`
splits a statement into the text between placeholders and the placeholders themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from .._contract.errors import ParameterError

__all__ = ["GENERIC", "MYSQL", "POSTGRESQL", "SQLITE", "SQLDialect", "count_statements", "scan"]


@dataclass(frozen=True, slots=True)
class SQLDialect:
    """Lexical rules of the SQL text; ``'...'``, ``"..."``, ``--`` and ``/* */`` exist everywhere."""

    name: str
    backslash_escapes: bool = False
    dollar_quotes: bool = False
    backtick_identifiers: bool = False
    hash_comments: bool = False
    nested_comments: bool = False
    escape_strings: bool = False
    # MySQL only starts a ``--`` comment when whitespace follows: ``1--1`` is ``1 - -1``.
    dash_comment_needs_space: bool = False


POSTGRESQL = SQLDialect("postgresql", dollar_quotes=True, nested_comments=True, escape_strings=True)
MYSQL = SQLDialect(
    "mysql", backslash_escapes=True, backtick_identifiers=True, hash_comments=True, dash_comment_needs_space=True
)
# SQLite accepts MySQL-style backtick identifiers for compatibility.
SQLITE = SQLDialect("sqlite", backtick_identifiers=True)
GENERIC = SQLDialect("generic")


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Closers run from just after the opening quote. A doubled quote ('' or "") closes one
# literal and opens the next, which classifies every character the same way as one literal.
_CLOSE = {
    "'": re.compile(r"[^']*'"),
    '"': re.compile(r'[^"]*"'),
    "`": re.compile(r"[^`]*`"),
    "'\\": re.compile(r"[^'\\]*(?:\\.[^'\\]*)*'", re.S),
    '"\\': re.compile(r'[^"\\]*(?:\\.[^"\\]*)*"', re.S),
}
_EOL = re.compile(r"[\n\r]")
_NESTING = re.compile(r"/\*|\*/")


@cache
def _scanner(d: SQLDialect, semicolons: bool = False) -> re.Pattern[str]:
    parts = []
    if d.escape_strings:
        parts.append(r"(?P<estr>(?<![\w$])[Ee]')")
    parts.append(r"(?P<quote>['\"" + ("`" if d.backtick_identifiers else "") + "])")
    parts.append(r"(?P<line>--(?=\s|\Z))" if d.dash_comment_needs_space else r"(?P<line>--)")
    if d.hash_comments:
        parts.append(r"(?P<hash>\#)")
    parts.append(r"(?P<block>/\*)")
    if d.dollar_quotes:
        parts.append(r"(?P<dollar>(?<![\w$])\$(?:[^\W\d]\w*)?\$)")
    parts.append(r"(?P<numeric_dollar>(?<![\w$])\$(?P<num>\d+))")
    parts.append(r"(?P<named>(?<![\w$:]):(?P<name>[A-Za-z_][A-Za-z0-9_]*))")
    parts.append(r"(?P<percent>%(?:%|s|\((?P<pname>[^)]*)\)s)?)")
    if semicolons:
        parts.append(r"(?P<semi>;)")
    return re.compile("|".join(parts))


def scan(sql: str, dialect: SQLDialect) -> tuple[list[str], list[tuple[str, str]]]:
    """Split ``sql`` into the text between placeholders and the placeholders (kind, name)."""
    search = _scanner(dialect).search
    end_of_sql = len(sql)
    texts: list[str] = []
    holders: list[tuple[str, str]] = []
    pos = start = 0
    while (m := search(sql, pos)) is not None:
        kind, pos = m.lastgroup, m.end()
        if kind == "quote":
            quote = m.group()
            closer = _CLOSE[quote + "\\" if dialect.backslash_escapes and quote != "`" else quote]
            c = closer.match(sql, pos)
            pos = c.end() if c else end_of_sql
        elif kind == "estr":
            c = _CLOSE["'\\"].match(sql, pos)
            pos = c.end() if c else end_of_sql
        elif kind in ("line", "hash"):
            eol = _EOL.search(sql, pos)
            pos = eol.start() if eol else end_of_sql
        elif kind == "block":
            pos = _skip_block(sql, pos, dialect.nested_comments)
        elif kind == "dollar":
            found = sql.find(m.group(), pos)
            pos = end_of_sql if found < 0 else found + len(m.group())
        elif kind == "percent":
            if m.group() == "%s":
                holders.append(("format", ""))
            elif (pname := m.group("pname")) is not None:
                if not _NAME.match(pname):
                    raise ParameterError(
                        f"invalid parameter name {pname!r} in %({pname})s; names must match [A-Za-z_][A-Za-z0-9_]*"
                    )
                holders.append(("pyformat", pname))
            else:
                continue  # %% or a lone %: text, handled when rendering
            texts.append(sql[start : m.start()])
            start = pos
        else:
            holders.append(("named", m.group("name")) if kind == "named" else ("numeric_dollar", m.group("num")))
            texts.append(sql[start : m.start()])
            start = pos
    texts.append(sql[start:])
    return texts, holders


def _skip(sql: str, m: re.Match[str], dialect: SQLDialect) -> int:
    """Where a literal, quoted identifier or comment that ``m`` opens ends."""
    kind, pos = m.lastgroup, m.end()
    if kind == "quote":
        quote = m.group()
        c = _CLOSE[quote + "\\" if dialect.backslash_escapes and quote != "`" else quote].match(sql, pos)
        return c.end() if c else len(sql)
    if kind == "estr":
        c = _CLOSE["'\\"].match(sql, pos)
        return c.end() if c else len(sql)
    if kind in ("line", "hash"):
        eol = _EOL.search(sql, pos)
        return eol.start() if eol else len(sql)
    if kind == "block":
        return _skip_block(sql, pos, dialect.nested_comments)
    if kind == "dollar":
        found = sql.find(m.group(), pos)
        return len(sql) if found < 0 else found + len(m.group())
    return pos


@cache
def count_statements(sql: str, dialect: SQLDialect) -> int:
    """How many statements ``sql`` holds: text separated by ``;`` outside literals, quoted
    identifiers and comments (a piece that is only blanks and comments is no statement)."""
    search = _scanner(dialect, True).search
    count = pos = 0
    content = False
    while (m := search(sql, pos)) is not None:
        if not content and sql[pos : m.start()].strip():
            content = True
        kind = m.lastgroup
        if kind == "semi":
            count += content
            content = False
        elif kind not in ("line", "hash", "block"):
            content = True  # a literal, quoted name or placeholder
        pos = _skip(sql, m, dialect)
    if not content and sql[pos:].strip():
        content = True
    return count + content


def _skip_block(sql: str, pos: int, nested: bool) -> int:
    if not nested:
        found = sql.find("*/", pos)
        return len(sql) if found < 0 else found + 2
    depth = 1
    while (m := _NESTING.search(sql, pos)) is not None:
        pos = m.end()
        depth += 1 if m.group() == "/*" else -1
        if depth == 0:
            return pos
    return len(sql)
