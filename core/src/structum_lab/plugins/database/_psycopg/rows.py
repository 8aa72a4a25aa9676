"""Rows and client-side binding on psycopg connections, shared by the backends on psycopg.

* :func:`row_factory` builds core :class:`Row` dicts exactly as psycopg's ``dict_row``
  builds dicts (and refuses duplicated column names, as every backend does).
* :func:`parenthesized` prepares a statement for psycopg's client-side binding
  (``ClientCursor``), used where statements share one simple-protocol message: BEGIN with
  the first statement, and ``transaction(pipeline=True)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, Final

from psycopg.rows import no_result

from .._contract.rows import Row, duplicate_columns

__all__ = ["parenthesized", "row_factory"]

_column_names: Callable[[Any], list[str] | None]
try:  # psycopg's own name reader, as used by dict_row (the fastest way to the column names)
    from psycopg.rows import _get_names as _column_names
except ImportError:  # pragma: no cover - a later psycopg without the private helper

    def _column_names(cursor: Any) -> list[str] | None:
        description = cursor.description
        return None if description is None else [column.name for column in description]


def row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    """psycopg row factory producing core ``Row`` dicts (``dict_row`` with another class)."""
    names = _column_names(cursor)
    if names is None:
        return no_result
    duplicated = duplicate_columns(names)
    if duplicated is not None:

        def refuse(values: Sequence[Any]) -> Row:
            raise duplicated

        return refuse

    def make_row(values: Sequence[Any]) -> Row:
        return Row(zip(names, values))  # noqa: B905 - one value per column, by construction

    return make_row


_MARK: Final = re.compile(r"%%|%s|%\([^()]+\)s")


@lru_cache(maxsize=1024)
def parenthesized(sql: str) -> str:
    """``sql`` (psycopg's ``%s`` or ``%(name)s`` style, literal ``%`` doubled) with each
    placeholder in parentheses.

    psycopg's client-side binding writes values as SQL literals; in parentheses a literal
    parses as the value a server-side parameter would be (``(-2147483648)::int``, not
    ``-(2147483648::int)``).
    """
    return _MARK.sub(lambda m: m.group() if m.group() == "%%" else f"({m.group()})", sql)
