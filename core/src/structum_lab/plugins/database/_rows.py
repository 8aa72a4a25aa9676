"""The row shape every backend returns.

A :class:`Row` is a ``dict`` of column name to value, so ``row["username"]``,
``dict(row)``, ``**row`` and JSON encoding work with no conversion, and building it
costs what psycopg's ``dict_row`` costs (measured: the same 50k-row fetch time).
Positional access ``row[0]`` and attribute access ``row.username`` are offered for
SQLAlchemy habits; they only run when a plain key lookup misses, so they cost the
common path nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Row"]


class Row(dict[str, Any]):
    """A result row: a dict keyed by column name, in select-list order.

    Iteration yields column names, as for any dict; use ``row.values()`` or
    ``tuple(row.values())`` for the values. Two result columns with the same name
    keep the last one: alias them (``SELECT a.id AS a_id, b.id AS b_id``).
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
