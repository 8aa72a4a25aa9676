"""The sqlite3 driver: the engine's verbs on the standard library's ``sqlite3`` module.

Connections are opened with ``isolation_level=None``: the module then starts no
transaction of its own, and this driver writes every BEGIN, COMMIT and SAVEPOINT itself.
Outside BEGIN a connection is in autocommit, so ``db.execute()`` costs one statement. The
pool is a list of idle connections under a condition variable: a local file needs no
network liveness checks, only a bound on how many connections are open.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

from structum_lab.plugins.database import ConfigurationError, DatabaseURL, IsolationLevel, PoolInfo, Row
from structum_lab.plugins.database.kit import (
    ALL_ISOLATION_LEVELS,
    SQLITE,
    SQLITE3,
    Bound,
    DriverBase,
    Features,
    NoRows,
    PoolExhausted,
    PoolLimits,
    Translator,
    duplicate_columns,
    paused_gc,
)

__all__ = ["FEATURES", "Sqlite3Driver", "Sqlite3Rows"]

Raw = sqlite3.Connection
Values = tuple[object, ...]

FEATURES: Final = Features(
    returning=sqlite3.sqlite_version_info >= (3, 35),
    server_side_cursors=True,  # a cursor steps through the rows as they are fetched
    isolation_levels=ALL_ISOLATION_LEVELS,  # each runs as SERIALIZABLE, SQLite's only level
    readonly=True,  # PRAGMA query_only
    transactional_ddl=True,
    autocommit=True,  # outside BEGIN each statement commits on its own
    detached_results=True,  # execute() reads every row before it returns
)
#: ``:name`` goes to sqlite3 as it is (its "named" style); ``%s`` and ``$1`` become ``?``.
TRANSLATOR: Final = Translator(SQLITE, SQLITE3)


class Sqlite3Rows:
    """The rows of one statement: all read at once (``execute``) or as they are fetched (``stream``)."""

    __slots__ = ("_cursor", "_duplicated", "_keys", "_position", "_values", "returns_rows", "rowcount")

    def __init__(self, cursor: sqlite3.Cursor, *, stream: bool = False) -> None:
        description = cursor.description
        self.returns_rows = description is not None
        self._keys: list[str] = [column[0] for column in description or ()]
        self._duplicated = duplicate_columns(self._keys)
        self._cursor: sqlite3.Cursor | None = cursor if stream and description else None
        self._values: list[Values] = cursor.fetchall() if description and not stream else []
        self._position = 0
        # sqlite3 counts no rows of a SELECT (-1); read here, they can be counted.
        self.rowcount: int = len(self._values) if description and not stream else cursor.rowcount

    def keys(self) -> list[str]:
        return list(self._keys)

    def _take(self, size: int | None) -> list[Values]:
        """Up to ``size`` rows of values (``None``: all that are left), read by position."""
        if not self.returns_rows:
            raise NoRows
        cursor = self._cursor
        if cursor is not None:
            batch = cursor.fetchall() if size is None else cursor.fetchmany(size)
            if size is None or len(batch) < size:
                self.close()  # read to the end: the statement (and its read lock) goes now
            return batch
        start = self._position
        self._position = end = len(self._values) if size is None else min(len(self._values), start + size)
        return self._values[start:end]

    def _rows(self, size: int | None) -> list[Row]:
        if self._duplicated is not None:
            raise self._duplicated  # two columns of one name cannot both be keys of a dict
        batch = self._take(size)
        keys = self._keys
        with paused_gc(len(batch)):
            return [Row(zip(keys, values, strict=True)) for values in batch]

    def fetchone(self) -> Row | None:
        rows = self._rows(1)
        return rows[0] if rows else None

    def fetchmany(self, size: int) -> list[Row]:
        return self._rows(size) if size > 0 else []

    def fetchall(self) -> list[Row]:
        return self._rows(None)

    def scalar(self) -> object:
        batch = self._take(1)
        self.close()
        return batch[0][0] if batch else None

    def close(self) -> None:
        self._position = len(self._values)
        cursor, self._cursor = self._cursor, None
        if cursor is not None:
            cursor.close()


class Sqlite3Driver(DriverBase[Raw]):
    """A pool of ``sqlite3`` connections to one database file."""

    features = FEATURES
    translator = TRANSLATOR
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(self, url: DatabaseURL, options: Mapping[str, Any]) -> None:
        if not url.database or url.database == ":memory:":
            raise ConfigurationError(
                f"the sqlite3 backend needs a database file: sqlite3:///relative.db or sqlite3:////absolute.db, got "
                f"{url}; an in-memory database would be a different one on each pooled connection",
                backend="sqlite3",
            )
        size, overflow = int(options.get("pool_size", 5)), int(options.get("max_overflow", 10))
        self.limits = PoolLimits(
            size=size,
            max_size=size + overflow,
            timeout=float(options.get("pool_timeout", 30.0)),
            pool_size=size,
            max_overflow=overflow,
        )
        self._path = url.database
        self._pre_ping = bool(options.get("pool_pre_ping", True))
        self._connect_args: dict[str, Any] = {"timeout": options.get("busy_timeout", 5.0)}
        self._connect_args.update(options.get("connect_args") or {})
        self._idle: list[Raw] = []
        self._open = 0  # connections open: idle, lent, or being opened
        self._closed = False
        self._free = threading.Condition()

    # -- the pool ----------------------------------------------------------------------

    def acquire(self, *, ping: bool) -> Raw:
        deadline = time.monotonic() + self.limits.timeout
        raw: Raw | None = None
        with self._free:
            while not self._idle and self._open >= self.limits.max_size:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PoolExhausted
                self._free.wait(left)
            if self._idle:
                raw = self._idle.pop()
            else:
                self._open += 1  # the slot is taken before connecting, outside the lock
        reused = raw is not None
        try:
            if raw is None:
                raw = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, **self._connect_args)
            if ping or (self._pre_ping and reused):
                raw.execute("SELECT 1").fetchone()
        except BaseException:
            self._discard(raw)
            raise
        return raw

    def release(self, raw: Raw) -> None:
        try:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
        except sqlite3.Error:
            self._discard(raw)  # a connection that cannot roll back is not lent again
            return
        with self._free:
            keep = not self._closed and len(self._idle) < self.limits.size  # overflow ones are closed
            if keep:
                self._idle.append(raw)
                self._free.notify()
        if not keep:
            self._discard(raw)

    def _discard(self, raw: Raw | None) -> None:
        if raw is not None:
            with contextlib.suppress(sqlite3.Error):
                raw.close()
        with self._free:
            self._open -= 1
            self._free.notify()

    def pool_figures(self, checked_out: int) -> PoolInfo:
        with self._free:
            available, total = len(self._idle), self._open
        size = self.limits.size
        return {
            "checked_out": checked_out,
            "available": available,
            "total": total,
            "overflow": max(0, total - size),
            "size": size,
            "max_size": self.limits.max_size,
        }

    def close(self) -> None:
        with self._free:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for raw in idle:
            with contextlib.suppress(sqlite3.Error):
                raw.close()

    def after_fork(self) -> object:
        """A pool of its own in a forked child; the parent's connections are left alone."""
        inherited, self._idle, self._open = self._idle, [], 0
        self._free = threading.Condition()  # another thread may have held it at fork time
        return inherited

    def describe(self, raw: Raw) -> str:
        return f"sqlite3 connection to {self._path}"

    # -- transactions and statements ---------------------------------------------------

    def begin(self, raw: Raw, isolation: IsolationLevel | None, readonly: bool) -> None:
        # Every level runs as SERIALIZABLE: stronger than asked, as the SQL standard allows.
        raw.execute("BEGIN")
        if readonly:
            raw.execute("PRAGMA query_only = 1")

    def reset(self, raw: Raw) -> None:
        raw.execute("PRAGMA query_only = 0")

    def commit(self, raw: Raw) -> None:
        raw.execute("COMMIT")  # SQLITE_BUSY leaves the transaction open: the engine rolls back

    def rollback(self, raw: Raw) -> None:
        if raw.in_transaction:
            raw.execute("ROLLBACK")

    def autocommit(self, raw: Raw, enabled: bool) -> None:
        return None  # outside BEGIN the connection always is in autocommit

    def command(self, raw: Raw, sql: str) -> None:
        raw.execute(sql)

    def execute(self, raw: Raw, sql: str, params: Bound) -> Sqlite3Rows:
        return Sqlite3Rows(raw.execute(sql) if params is None else raw.execute(sql, cast("Any", params)))

    def stream(self, raw: Raw, sql: str, params: Bound, batch_size: int) -> Sqlite3Rows:
        cursor = raw.execute(sql) if params is None else raw.execute(sql, cast("Any", params))
        return Sqlite3Rows(cursor, stream=True)

    def executemany(self, raw: Raw, sql: str, param_sets: Sequence[Bound]) -> int:
        # SQL without placeholders binds to None; sqlite3 wants an empty sequence.
        return raw.executemany(sql, [() if p is None else cast("Any", p) for p in param_sets]).rowcount
