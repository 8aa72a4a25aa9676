"""``db.query.summary`` and literal-free query text, as the OpenTelemetry conventions define them.

The summary is the low-cardinality name of a query: its operations and the tables they
act on, in the order written (``SELECT users``, ``INSERT orders SELECT carts``,
``CREATE TABLE users``). It is the span name and a metric attribute, so it must never
carry a value: literals, numbers and placeholders are skipped, and only identifiers in
a table position (after ``FROM``, ``JOIN``, ``INTO``, ``UPDATE``, ``TABLE``...) are kept,
as written (quoted identifiers keep their quotes). Transaction control statements keep
their keywords only (``SAVEPOINT``, ``ROLLBACK TO SAVEPOINT``): savepoint names are
generated and would only add cardinality.

This is a tokenizer, not a parser: on SQL it does not follow, the summary is shorter
(an operation without its table), never wrong in the direction of leaking data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, Final

__all__ = ["SUMMARY_LIMIT", "db_system_name", "has_placeholders", "sanitize", "summarize"]

#: URL dialect -> the ``db.system.name`` of the OpenTelemetry semantic conventions.
_SYSTEMS: Final = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "sqlite": "sqlite",
    "mysql": "mysql",
    "mariadb": "mariadb",
    "mssql": "microsoft.sql_server",
    "oracle": "oracle.db",
    "cockroachdb": "cockroachdb",
}


def db_system_name(dialect: str) -> str:
    """The conventions' ``db.system.name`` for a URL dialect: a well-known value, else the
    dialect itself, else ``other_sql``."""
    return _SYSTEMS.get(dialect, dialect or "other_sql")


#: The conventions' limit, cut between parts, never inside one.
SUMMARY_LIMIT: Final = 255

# One alternation for every dialect: the flavour only decides what a "..." token is
# (an identifier in standard SQL, a string in MySQL) and whether a backslash escapes.
_TOKEN: Final = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<hash>\#[^\n]*)
    | (?P<dollar>\$(?P<tag>[A-Za-z_]\w*)?\$.*?(?:\$(?(tag)(?P=tag))\$|\Z))
    | (?P<estring>[EeXxBbNn]'(?:[^'\\]|\\.|'')*(?:'|\Z))
    | (?P<string>'(?:[^'\\]|\\.|'')*(?:'|\Z))
    | (?P<dquote>"(?:[^"]|"")*(?:"|\Z))
    | (?P<btick>`[^`]*(?:`|\Z))
    | (?P<word>[A-Za-z_][\w$]*)
    | (?P<number>\d+(?:\.\d*)?(?:[Ee][+-]?\d+)?|\.\d+)
    | (?P<param>\$\d+|(?<![:\w]):[A-Za-z_]\w*|%\([^)]*\)s|%s|\?)
    | (?P<punct>.)
    """,
    re.S | re.X,
)
# In standard SQL a backslash is an ordinary character inside '...'.
_STANDARD_STRING: Final = re.compile(r"'(?:[^']|'')*(?:'|\Z)", re.S)

#: Operations that may start anywhere (a sub-query, ``INSERT ... SELECT``).
_DML: Final = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "REPLACE"})
#: Operations only at the start of a statement.
_LEADING: Final = frozenset(
    {
        "CREATE", "DROP", "ALTER", "TRUNCATE", "CALL", "EXEC", "EXECUTE", "COPY", "COMMIT", "ROLLBACK",
        "SAVEPOINT", "RELEASE", "BEGIN", "START", "END", "SET", "SHOW", "EXPLAIN", "ANALYZE", "VACUUM",
        "LOCK", "LISTEN", "NOTIFY", "UNLISTEN", "PREPARE", "DEALLOCATE", "DECLARE", "FETCH", "MOVE", "CLOSE",
        "REFRESH", "REINDEX", "CLUSTER", "COMMENT", "GRANT", "REVOKE", "DO", "PRAGMA", "ATTACH", "DETACH",
        "USE", "DESCRIBE", "VALUES", "TABLE", "RESET", "DISCARD", "CHECKPOINT", "LOAD", "IMPORT", "SAVE",
    }
)  # fmt: skip
#: Words before a DML keyword that make it a clause, not an operation (FOR [NO KEY] UPDATE,
#: ON DELETE CASCADE, ON CONFLICT DO UPDATE, WHEN MATCHED THEN DELETE, AFTER INSERT OR UPDATE).
_NOT_AN_OPERATION_AFTER: Final = frozenset(
    {"FOR", "KEY", "ON", "DO", "THEN", "BEFORE", "AFTER", "OF", "OR", "INSTEAD", ","}
)
#: Operations followed by the table they write (UPDATE t, INSERT t in MySQL, MERGE t).
_WRITES: Final = frozenset({"INSERT", "UPDATE", "MERGE", "UPSERT", "REPLACE"})
#: Modifiers between INSERT/UPDATE and the table (INSERT OR IGNORE INTO, UPDATE ONLY...).
_INSERT_NOISE: Final = frozenset(
    {"IGNORE", "LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "OR", "ROLLBACK", "ABORT", "FAIL", "REPLACE", "ONLY"}
)
#: Statements summarized by their keyword alone: the rest is settings, privileges or names.
_TERMINAL: Final = frozenset(
    {
        "SET", "SHOW", "GRANT", "REVOKE", "LISTEN", "NOTIFY", "UNLISTEN", "COMMENT", "PRAGMA", "USE",
        "RESET", "DISCARD", "CHECKPOINT", "DEALLOCATE", "FETCH", "MOVE", "CLOSE", "LOAD", "ATTACH",
        "DETACH", "DESCRIBE", "IMPORT", "SAVE", "DO",
    }
)  # fmt: skip
#: Statements whose first name is their target (TRUNCATE t, COPY t, CALL p...).
_TARGETED: Final = frozenset(
    {"TRUNCATE", "COPY", "CALL", "LOCK", "VACUUM", "ANALYZE", "REFRESH", "CLUSTER", "REINDEX", "TABLE"}
)
#: Object kinds of DDL statements (CREATE TABLE name, DROP INDEX name...).
_OBJECTS: Final = frozenset(
    {
        "TABLE", "INDEX", "VIEW", "SCHEMA", "SEQUENCE", "FUNCTION", "PROCEDURE", "TRIGGER", "TYPE",
        "EXTENSION", "DATABASE", "DOMAIN", "ROLE", "USER", "POLICY", "RULE", "COLLATION", "PUBLICATION",
        "SUBSCRIPTION", "SERVER", "TABLESPACE", "EVENT",
    }
)  # fmt: skip
#: Modifiers between the DDL verb, the object kind and the name.
_DDL_NOISE: Final = frozenset(
    {
        "OR", "REPLACE", "TEMP", "TEMPORARY", "UNLOGGED", "GLOBAL", "LOCAL", "UNIQUE", "MATERIALIZED",
        "IF", "NOT", "EXISTS", "CONCURRENTLY", "RECURSIVE", "FOREIGN", "ONLY", "VIRTUAL", "DEFINER",
    }
)  # fmt: skip
#: Words that are never a table name where one is expected.
_KEYWORDS: Final = frozenset(
    {
        "ONLY", "LATERAL", "AS", "WHERE", "SET", "VALUES", "DEFAULT", "SELECT", "ON", "USING", "JOIN",
        "LEFT", "RIGHT", "INNER", "OUTER", "FULL", "CROSS", "NATURAL", "GROUP", "ORDER", "LIMIT", "OFFSET",
        "HAVING", "WINDOW", "UNION", "INTERSECT", "EXCEPT", "FOR", "RETURNING", "WITH", "STDIN", "STDOUT",
        "IGNORE", "LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "QUICK", "OVERWRITE", "OUTFILE", "DUMPFILE",
        "INTO", "FROM", "TO", "WHEN", "TABLE",
    }
)  # fmt: skip
#: Clauses that end a ``FROM a, b`` list.
_LIST_END: Final = frozenset(
    {"WHERE", "GROUP", "ORDER", "LIMIT", "OFFSET", "HAVING", "WINDOW", "UNION", "INTERSECT", "EXCEPT",
     "FOR", "RETURNING", "ON", "USING", "SET", "VALUES", "WHEN", "FETCH"}
)  # fmt: skip
_CONTROL: Final = {
    "COMMIT": "COMMIT",
    "END": "COMMIT",
    "BEGIN": "BEGIN",
    "START": "BEGIN",
    "SAVEPOINT": "SAVEPOINT",
    "RELEASE": "RELEASE SAVEPOINT",
}


def _tokens(sql: str, mysql: bool) -> list[tuple[str, str]]:
    """(kind, text) of the meaningful tokens: words, identifiers, punctuation; a literal
    becomes ``("value", "")`` and a placeholder ``("param", "")``, so that they can
    separate but never be shown."""
    out: list[tuple[str, str]] = []
    pos, end = 0, len(sql)
    while pos < end:
        if not mysql and sql[pos] == "'":
            m = _STANDARD_STRING.match(sql, pos)
            if m is not None:
                out.append(("value", ""))
                pos = m.end()
                continue
        m = _TOKEN.match(sql, pos)
        if m is None:  # pragma: no cover - the last alternative matches any character
            break
        pos = m.end()
        kind = m.lastgroup or "punct"
        if kind in ("space", "comment") or (kind == "hash" and mysql):
            continue
        if kind == "hash":  # a PostgreSQL operator (#>, #-): keep scanning after the '#'
            pos = m.start() + 1
            out.append(("punct", "#"))
        elif kind == "dquote":
            out.append(("value", "") if mysql else ("name", m.group()))
        elif kind in ("btick", "word"):
            out.append(("name" if kind == "btick" else "word", m.group()))
        elif kind == "punct":
            out.append(("punct", m.group()))
        elif kind == "param":
            out.append(("param", ""))
        else:  # strings, dollar-quoted bodies, numbers
            out.append(("value", ""))
    return out


def _name_at(tokens: list[tuple[str, str]], i: int, *, reading: bool = False) -> tuple[str | None, int]:
    """The (qualified) table name starting at ``tokens[i]`` and the index after it; None
    when none is there (a sub-query, a keyword, a value). ``reading``: a FROM or JOIN
    position, where a name before ``(`` is a function (``FROM generate_series(...)``),
    not a table (as in ``INSERT INTO t (a, b)``)."""
    while i < len(tokens) and tokens[i][0] == "word" and tokens[i][1].upper() in ("ONLY", "LATERAL", "TABLE"):
        i += 1
    parts: list[str] = []
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "name" or (kind == "word" and text.upper() not in _KEYWORDS):
            parts.append(text)
            i += 1
            if i + 1 < len(tokens) and tokens[i] == ("punct", ".") and tokens[i + 1][0] in ("word", "name"):
                i += 1
                continue
        break
    if not parts or (reading and i < len(tokens) and tokens[i] == ("punct", "(")):
        return None, i
    return ".".join(parts), i


def _summary(tokens: list[tuple[str, str]]) -> list[str]:
    parts: list[str] = []
    depth = 0
    # The statements open at each parenthesis depth: [operation, depth, inside "FROM a, b"].
    ops: list[list[Any]] = []
    start = True  # at the start of a statement
    prev = ""
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        upper = text.upper() if kind == "word" else text
        current = ops[-1] if ops and ops[-1][1] == depth else None
        if kind == "punct":
            i += 1
            if text == "(":
                depth += 1
            elif text == ")":
                depth = max(0, depth - 1)
                while ops and ops[-1][1] > depth:
                    ops.pop()
            elif text == ";":
                depth, ops, start, text = 0, [], True, ""
            elif text == "," and current is not None and current[2]:
                name, i = _name_at(tokens, i, reading=True)
                if name:
                    parts.append(name)
            prev = text
            continue
        if kind != "word":
            start, prev = False, ""
            i += 1
            continue
        if start and upper == "WITH":  # a CTE: its names are definitions, the body says the rest
            start = False
            i = _skip_words(tokens, i + 1, ("RECURSIVE",))
            continue
        if start and upper in _LEADING and upper not in _DML:
            start = False
            i = _leading(tokens, i, upper, parts, ops=ops, depth=depth)
            prev = upper
            continue
        start = False
        if upper in _DML and _is_operation(upper, prev, tokens, i + 1):
            parts.append(upper)
            ops.append([upper, depth, False])
            i += 1
            if upper in _WRITES:  # the table, unless INTO (handled next) introduces it
                at = _skip_words(tokens, i, _INSERT_NOISE)
                if upper == "UPDATE" or _peek(tokens, at) != "INTO":
                    name, i = _name_at(tokens, at)
                    if name:
                        parts.append(name)
            prev = upper
            continue
        if current is not None and upper in ("FROM", "JOIN", "INTO") and current[0] != "COPY":
            name, i = _name_at(tokens, i + 1, reading=upper != "INTO")
            if name:
                parts.append(name)
            if upper == "FROM":
                current[2] = True
            prev = upper
            continue
        if upper in _LIST_END and current is not None:
            current[2] = False
        prev = upper
        i += 1
    return parts


def _is_operation(word: str, prev: str, tokens: list[tuple[str, str]], after: int) -> bool:
    """Whether a DML keyword is an operation here, not a clause (FOR UPDATE, ON DELETE
    CASCADE, ON CONFLICT DO UPDATE, THEN DELETE) or a function (REPLACE(a, b, c))."""
    if word == "SELECT":
        return True
    if after < len(tokens) and tokens[after] == ("punct", "("):
        return False
    return prev not in _NOT_AN_OPERATION_AFTER


def _peek(tokens: list[tuple[str, str]], i: int) -> str:
    return tokens[i][1].upper() if i < len(tokens) and tokens[i][0] == "word" else ""


def _skip_words(tokens: list[tuple[str, str]], i: int, words: Iterable[str]) -> int:
    while (word := _peek(tokens, i)) and word in words:
        i += 1
    return i


def _next_statement(tokens: list[tuple[str, str]], i: int) -> int:
    while i < len(tokens) and tokens[i] != ("punct", ";"):
        i += 1
    return i


def _leading(
    tokens: list[tuple[str, str]], i: int, op: str, parts: list[str], *, ops: list[list[Any]], depth: int
) -> int:
    """A statement-level operation at ``tokens[i]``: append its summary, return where to go on."""
    i += 1
    if op in _CONTROL:
        parts.append(_CONTROL[op])
        return _next_statement(tokens, i)  # the rest is a savepoint name or transaction modes
    if op == "ROLLBACK":
        after = _skip_words(tokens, i, ("WORK", "TRANSACTION"))
        parts.append("ROLLBACK TO SAVEPOINT" if _peek(tokens, after) == "TO" else "ROLLBACK")
        return _next_statement(tokens, i)
    if op in _TERMINAL:  # SET, SHOW, GRANT...: the rest is settings, privileges or names
        parts.append(op)
        return _next_statement(tokens, i)
    ops.append([op, depth, False])
    if op in ("CREATE", "DROP", "ALTER"):
        i = _skip_words(tokens, i, _DDL_NOISE)
        kind = _peek(tokens, i)
        if kind in _OBJECTS:
            name, i = _name_at(tokens, _skip_words(tokens, i + 1, _DDL_NOISE))
            parts.append(f"{op} {kind} {name}" if name else f"{op} {kind}")
        else:
            parts.append(op)
        return i
    parts.append(op)
    if op in _TARGETED:
        i = _skip_words(tokens, i, ("TABLE", "ONLY", "MATERIALIZED", "VIEW", "FULL", "VERBOSE", "INDEX"))
        name, after = _name_at(tokens, i)
        if name:
            parts.append(name)
            return after
    return i


@lru_cache(maxsize=4096)
def summarize(sql: str, mysql: bool = False) -> str:
    """The ``db.query.summary`` of ``sql`` (``""`` when nothing could be read)."""
    parts = _summary(_tokens(sql, mysql))
    out = ""
    for part in parts:
        candidate = f"{out} {part}" if out else part
        if len(candidate) > SUMMARY_LIMIT:
            break
        out = candidate
    return out


@lru_cache(maxsize=4096)
def has_placeholders(sql: str, mysql: bool = False) -> bool:
    """Whether ``sql`` has a placeholder (``:name``, ``%s``, ``$1``, ``?``...) outside literals."""
    return any(kind == "param" for kind, _ in _tokens(sql, mysql))


_STANDARD_LITERALS: Final = re.compile(
    r"""(?P<keep>--[^\n]*|/\*.*?(?:\*/|\Z)|"(?:[^"]|"")*(?:"|\Z)|`[^`]*(?:`|\Z)|[A-Za-z_][\w$]*(?!')|\$\d+)
      | \$(?P<tag>[A-Za-z_]\w*)?\$.*?(?:\$(?(tag)(?P=tag))\$|\Z)
      | [Ee]'(?:[^'\\]|\\.|'')*(?:'|\Z)
      | [XxBbNnUu]?&?'(?:[^']|'')*(?:'|\Z)
      | (?<![\w.$])(?:\d+(?:\.\d*)?|\.\d+)(?:[Ee][+-]?\d+)?""",
    re.S | re.X,
)
# MySQL: backslash escapes, and "..." is a string unless ANSI_QUOTES is set.
_MYSQL_LITERALS: Final = re.compile(
    r"""(?P<keep>--\s[^\n]*|\#[^\n]*|/\*.*?(?:\*/|\Z)|`[^`]*(?:`|\Z)|[A-Za-z_][\w$]*(?!'))
      | [XxBbNn]?'(?:[^'\\]|\\.|'')*(?:'|\Z)
      | "(?:[^"\\]|\\.|"")*(?:"|\Z)
      | (?<![\w.$])(?:\d+(?:\.\d*)?|\.\d+)(?:[Ee][+-]?\d+)?""",
    re.S | re.X,
)


def _replace(m: re.Match[str]) -> str:
    return m.group() if m.group("keep") is not None else "?"


@lru_cache(maxsize=1024)
def sanitize(sql: str, mysql: bool = False) -> str:
    """``sql`` with every literal (strings, numbers, dollar-quoted bodies) replaced by ``?``,
    for applications that write values into their SQL instead of binding them."""
    return (_MYSQL_LITERALS if mysql else _STANDARD_LITERALS).sub(_replace, sql)
