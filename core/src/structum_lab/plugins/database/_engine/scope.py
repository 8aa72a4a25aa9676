"""Which connection holds the open transaction of the calling thread or asyncio task.

``db.transaction()`` inside an open one becomes a savepoint of it; every backend keeps
that rule with one of these per database. The owner (thread id, or task for asyncio)
is stored too, because asyncio tasks inherit a copy of their creator's context: a task
started inside a transaction block must get its own transaction, not join the other.
"""

from __future__ import annotations

import asyncio
import threading
from contextvars import ContextVar, Token
from typing import Generic, Protocol, TypeVar

__all__ = ["TransactionScope", "current_task_id"]


class _Closable(Protocol):
    @property
    def closed(self) -> bool: ...


C = TypeVar("C", bound=_Closable)


def current_task_id() -> int:
    """The running asyncio task (or the thread, outside a loop)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    return id(task) if task is not None else threading.get_ident()


class TransactionScope(Generic[C]):
    """The per-database record of open transactions, by thread or task."""

    __slots__ = ("_owner", "_var")

    def __init__(self, name: str, *, is_async: bool) -> None:
        self._var: ContextVar[tuple[C, int] | None] = ContextVar(name, default=None)
        self._owner = current_task_id if is_async else threading.get_ident

    def current(self) -> C | None:
        """The caller's open transaction's connection, if any."""
        entry = self._var.get()
        if entry is not None and entry[1] == self._owner() and not entry[0].closed:
            return entry[0]
        return None

    def enter(self, conn: C) -> Token[tuple[C, int] | None]:
        return self._var.set((conn, self._owner()))

    def leave(self, token: Token[tuple[C, int] | None]) -> None:
        try:
            self._var.reset(token)
        except ValueError:
            # Left in another context than entered (a generator resumed elsewhere, as
            # FastAPI does with yield dependencies): forget it here; the caller still
            # commits or rolls back.
            self._var.set(None)
