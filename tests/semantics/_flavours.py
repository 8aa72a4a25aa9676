"""What the asyncio sources of tests/semantics and the sync modules generated from them share.

* the targets: (backend, dialect[+driver]) pairs, sync and asyncio;
* :class:`Opener`, which ``open_db`` / ``open_db_async`` / ``open_url`` / ``open_url_async``
  (tests/semantics/conftest.py) give a test;
* :class:`raises`, ``pytest.raises`` that an ``async with`` statement can hold too.

The asyncio sources write ``async with raises(E), db.transaction() as conn:``, which
the generated sync module reads as ``with raises(E), db.transaction() as conn:``: one
statement on both sides, where ``with pytest.raises(E):`` around an ``async with`` would
leave the sync module two nested ``with`` statements (which ruff's SIM117 refuses, and
``tools/sync_from_async.py`` does not merge).
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

import pytest

__all__ = ["ASYNC_TARGETS", "SYNC_TARGETS", "Opener", "raises"]

SYNC_TARGETS = [
    ("sqlalchemy", "sqlite"),
    ("sqlalchemy", "postgresql"),
    ("sqlalchemy", "mysql"),
    ("psycopg", "postgresql"),
]
ASYNC_TARGETS = [
    ("sqlalchemy", "sqlite+aiosqlite"),
    ("sqlalchemy", "postgresql+psycopg"),
    ("sqlalchemy", "postgresql+asyncpg"),
    ("sqlalchemy", "mysql+aiomysql"),
    ("psycopg", "postgresql"),
]


class Opener:
    """Opens databases of one flavour and remembers them, to shut them down afterwards.

    ``opener(**options)`` opens one at the fixture's URL (``opener.url``), ``opener(url,
    **options)`` at another; ``backend``, ``scheme`` and ``dialect`` name the flavour.
    """

    def __init__(self, target: tuple[str, str], opener: Callable[..., Any], url: str | None) -> None:
        self.backend, self.scheme = target
        self.dialect = self.scheme.partition("+")[0]
        self.url = url
        self.opened: list[Any] = []
        self._open = opener

    def __call__(self, url: str | None = None, **options: Any) -> Any:
        db = self._open(url or self.url, backend=self.backend, **options)
        self.opened.append(db)
        return db

    def url_at(self, port: int, *, user: str = "app", password: str = "", database: str = "nowhere") -> str:
        """A URL of this flavour for a server of the test's own on 127.0.0.1."""
        secret = f":{password}" if password else ""
        return f"{self.scheme}://{user}{secret}@127.0.0.1:{port}/{database}"


class raises:
    def __init__(self, expected: type[BaseException] | tuple[type[BaseException], ...], **kwargs: Any) -> None:
        self._context = pytest.raises(expected, **kwargs)

    def __enter__(self) -> pytest.ExceptionInfo[Any]:
        return self._context.__enter__()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        return self._context.__exit__(kind, exc, tb)

    async def __aenter__(self) -> pytest.ExceptionInfo[Any]:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return self.__exit__(kind, exc, tb)
