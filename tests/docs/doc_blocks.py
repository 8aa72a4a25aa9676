"""The Python blocks of docs/: found in the Markdown, with the doc-test marks before them.

A fenced block whose language is ``python`` (or ``py``, ``python3``, ``pycon``) is a doc
example. The line before its fence (blank lines between are allowed) may be a mark, an
HTML comment that the rendered site does not show:

``<!-- doc-test: fragment: <reason> -->``
    The block only shows a piece of something (a signature, a method of a class shown
    elsewhere, code that needs your own servers): it is skipped, with the reason.
``<!-- doc-test: db=<kind> setup=<name>[,<name>...] check=<name> expect=<Error> -->``
    How to run it. ``db``: the database the block finds as ``db`` (see ``DB_KINDS``;
    default ``sqlite``); ``setup``: what the block assumes beyond that (tables, config
    files, names such as ``conn``: see ``doc_setups.SETUPS``); ``check``: a function
    that asserts afterwards what the page says happened (``doc_setups.CHECKS``);
    ``expect``: the block must raise this exception (a name from
    ``structum_lab.plugins.database`` or a builtin).
``<!-- doc-test: continue ... -->``
    The block goes on from the previous runnable block of the same page: it runs after
    that block (and whatever that one continued), in the same namespace, with that
    block's ``db`` and setups. ``check`` and ``expect`` may be added.

A block without a mark runs with the defaults. A block that starts with ``>>>`` is a
doctest: its output must match.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

PYTHON_LANGUAGES = frozenset({"python", "py", "python3", "pycon"})
MARK = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<body>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")
KEYS = frozenset({"db", "setup", "check", "expect", "continue"})

#: What ``db=`` accepts: the database a block finds under the name ``db``.
DB_KINDS = frozenset(
    {
        "none",  # no ``db``
        "sqlite",  # SQLAlchemyDatabase on a fresh SQLite file (the default)
        "psycopg",  # PostgresDatabase on a fresh PostgreSQL schema
        "sqlalchemy-pg",  # SQLAlchemyDatabase, postgresql+psycopg://, fresh schema
        "mysql",  # SQLAlchemyDatabase on a fresh MariaDB database
        "async-sqlite",  # AsyncSQLAlchemyDatabase on a fresh SQLite file (aiosqlite)
        "async-psycopg",  # AsyncPostgresDatabase, fresh schema
        "async-sqlalchemy-pg",  # AsyncSQLAlchemyDatabase, postgresql+psycopg://, fresh schema
    }
)


@dataclass(frozen=True)
class Block:
    """One Python block of a page."""

    path: Path  # relative to the repository
    line: int  # 1-based line of the opening fence
    language: str
    source: str  # dedented to the fence's indentation
    mark: str | None  # the mark's text, as written
    fragment: str | None = None  # the reason, for a fragment
    db: str = "sqlite"
    setups: tuple[str, ...] = ()
    check: str | None = None
    expect: str | None = None
    continues: bool = False
    errors: tuple[str, ...] = field(default=())  # what is wrong with the mark

    @property
    def id(self) -> str:
        return f"{self.path.as_posix()}:{self.line}"

    @property
    def is_doctest(self) -> bool:
        return self.language == "pycon" or self.source.lstrip().startswith(">>>")


@dataclass(frozen=True)
class StrayMark:
    """A mark that is not followed by a Python block."""

    path: Path
    line: int
    text: str


def _parse_mark(body: str) -> tuple[dict[str, object], list[str]]:
    errors: list[str] = []
    if body == "fragment" or body.startswith(("fragment:", "fragment ")):
        reason = body[len("fragment") :].lstrip(" :").strip()
        if not reason:
            errors.append("a fragment mark needs a reason: <!-- doc-test: fragment: why it cannot run -->")
        return {"fragment": reason or "(no reason given)"}, errors
    values: dict[str, object] = {}
    try:
        tokens = shlex.split(body)
    except ValueError as exc:
        return {}, [f"cannot read the mark: {exc}"]
    for token in tokens:
        key, sep, value = token.partition("=")
        if key not in KEYS:
            errors.append(f"unknown key {key!r} in the mark (known: {', '.join(sorted(KEYS))})")
            continue
        if key == "continue":
            if sep:
                errors.append("'continue' takes no value")
            values["continues"] = True
            continue
        if not value:
            errors.append(f"{key!r} needs a value ({key}=...)")
            continue
        if key == "db":
            if value not in DB_KINDS:
                errors.append(f"unknown db kind {value!r} (known: {', '.join(sorted(DB_KINDS))})")
            values["db"] = value
        elif key == "setup":
            values["setups"] = tuple(v for v in value.split(",") if v)
        else:
            values[key] = value
    return values, errors


def scan(path: Path) -> Iterator[Block | StrayMark]:
    lines = path.read_text(encoding="utf-8").splitlines()
    relative = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    pending: tuple[int, str, dict[str, object], list[str]] | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        mark = MARK.match(line)
        if mark:
            if pending is not None:
                yield StrayMark(relative, pending[0], pending[1])
            values, errors = _parse_mark(mark["body"])
            pending = (index + 1, line.strip(), values, errors)
            index += 1
            continue
        fence = FENCE.match(line)
        if fence is None:
            if line.strip() and pending is not None:
                yield StrayMark(relative, pending[0], pending[1])
                pending = None
            index += 1
            continue
        indent, chars = fence["indent"], fence["fence"]
        language = fence["info"].split()[0].lower() if fence["info"] else ""
        end = index + 1
        while end < len(lines):
            closing = lines[end].strip()
            if closing.startswith(chars[0] * len(chars)) and not closing.strip(chars[0]):
                break
            end += 1
        body = [text[len(indent) :] if text.startswith(indent) else text.lstrip() for text in lines[index + 1 : end]]
        if language in PYTHON_LANGUAGES:
            values, errors = ({}, []) if pending is None else (pending[2], pending[3])
            yield Block(
                path=relative,
                line=index + 1,
                language=language,
                source="\n".join(body) + "\n",
                mark=None if pending is None else pending[1],
                errors=tuple(errors),
                **values,  # type: ignore[arg-type]
            )
        elif pending is not None:
            yield StrayMark(relative, pending[0], pending[1])
        pending = None
        index = end + 1
    if pending is not None:
        yield StrayMark(relative, pending[0], pending[1])


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def blocks() -> list[Block]:
    return [item for page in pages() for item in scan(page) if isinstance(item, Block)]


def stray_marks() -> list[StrayMark]:
    return [item for page in pages() for item in scan(page) if isinstance(item, StrayMark)]


def chain(block: Block, every: list[Block]) -> list[Block]:
    """The blocks to run for ``block``: the runnable blocks it continues, then itself."""
    if not block.continues:
        return [block]
    same_page = [b for b in every if b.path == block.path and b.line < block.line and b.fragment is None]
    if not same_page:
        raise LookupError(f"{block.id}: 'continue', but no runnable block comes before it on the page")
    return [*chain(same_page[-1], every), block]
