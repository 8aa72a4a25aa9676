"""The row shape every backend returns.

A :class:`Row` is a ``dict`` of column name to value, so ``row["username"]``,
``dict(row)``, ``**row`` and JSON encoding work with no conversion. Building one costs
what psycopg's ``dict_row`` costs, provided large batches are built under
:class:`paused_gc` (see there).
Positional access ``row[0]`` and attribute access ``row.username`` are offered for
SQLAlchemy habits; they only run when a plain key lookup misses, so they cost the
common path nothing.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

from .errors import ProgrammingError

__all__ = ["GC_PAUSE_ROWS", "Row", "duplicate_columns", "paused_gc"]

#: Batches of more rows than this are built with the cyclic garbage collector paused.
GC_PAUSE_ROWS = 1000


class Row(dict[str, Any]):
    """A result row: a dict keyed by column name, in select-list order.

    Iteration yields column names, as for any dict, so ``a, b = row`` unpacks the names;
    unpack the values with ``a, b = row.values()``. Two result columns with the same name
    cannot both be keys: reading rows of such a result raises ``ProgrammingError`` naming
    the column (alias them: ``SELECT a.id AS a_id, b.id AS b_id``); ``result.scalar()``
    still reads the first column by position.
    """

    __slots__ = ()

    def __missing__(self, key: object) -> Any:
        if type(key) is int:
            values = list(self.values())
            try:
                return values[key]
            except IndexError:
                raise IndexError(f"row has {len(values)} columns; index {key} is out of range") from None
        raise KeyError(key)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"row has no column {name!r}; columns: {', '.join(map(str, self.keys())) or '(none)'}"
            ) from None

    def __repr__(self) -> str:
        return f"Row({dict.__repr__(self)})"


class paused_gc:
    """Pause the cyclic garbage collector while a batch of ``rows`` Rows is built.

    ``Row`` is a dict subclass, and CPython keeps every instance of one under the
    collector's watch (it stops tracking plain dicts of plain values), so 50,000 new
    Rows trigger collections that walk the whole live heap: measured 25-40 % slower
    than psycopg's ``dict_row`` in a process with a few hundred thousand live objects,
    on par with it when paused. Rows hold no reference cycles, so nothing is lost; the
    collector is re-enabled at once, and only by the call that disabled it (a process
    that disabled it itself is left alone). Small batches skip all of this.
    """

    __slots__ = ("_paused",)

    def __init__(self, rows: int) -> None:
        self._paused = rows > GC_PAUSE_ROWS and gc.isenabled()

    def __enter__(self) -> None:
        if self._paused:
            gc.disable()

    def __exit__(self, *exc_info: object) -> None:
        if self._paused:
            gc.enable()


def duplicate_columns(names: Sequence[str]) -> ProgrammingError | None:
    """The error for a result with two columns of one name (rows are dicts: one would be lost)."""
    if len(set(names)) == len(names):
        return None
    seen: set[str] = set()
    twice = sorted({name for name in names if name in seen or seen.add(name)})  # type: ignore[func-returns-value]
    shown = ", ".join(repr(name) for name in twice)
    return ProgrammingError(
        f"the result has more than one column named {shown}; rows are dicts by column name, so one value "
        f"would be lost: alias them (SELECT a.id AS a_id, b.id AS b_id), or read the first column by "
        f"position with result.scalar()"
    )
