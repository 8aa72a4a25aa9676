"""Retrying transactions that lost a serialization conflict or a deadlock.

Only a whole transaction can be retried: after SQLSTATE 40001 the server has
aborted it, so the work must run again from BEGIN. These helpers therefore own the
transaction they retry and refuse to run inside another one.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, overload

from .._contract.errors import TransactionError, TransientError
from .._contract.protocols import AsyncConnection, AsyncDatabaseInterface, Connection, DatabaseInterface, IsolationLevel

__all__ = ["retry_on_conflict", "run_transaction", "run_transaction_async"]

T = TypeVar("T")
P = ParamSpec("P")
log = logging.getLogger("structum_lab.plugins.database")


def _delay(attempt: int, base: float, cap: float) -> float:
    # Full jitter: concurrent losers of the same conflict should not collide again.
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))  # noqa: S311 - not cryptographic


def _check_outside(db: object) -> None:
    in_tx = getattr(db, "in_transaction", None)
    if callable(in_tx) and in_tx():
        raise TransactionError(
            "a retried transaction must be the outermost one: a serialization failure aborts the enclosing "
            "transaction too; call run_transaction() outside any db.transaction() block"
        )


def run_transaction(
    db: DatabaseInterface,
    work: Callable[[Connection], T],
    *,
    attempts: int = 5,
    isolation: IsolationLevel | None = None,
    readonly: bool = False,
    backoff: float = 0.02,
    max_backoff: float = 1.0,
) -> T:
    """Run ``work(conn)`` in a transaction, retrying it on :class:`TransientError`.

    >>> run_transaction(db, lambda c: c.execute("SELECT 1").scalar(), isolation="serializable")  # doctest: +SKIP
    """
    _check_outside(db)
    for attempt in range(1, attempts + 1):
        try:
            with db.transaction(isolation=isolation, readonly=readonly) as conn:
                return work(conn)
        except TransientError as exc:
            if attempt == attempts:
                raise
            log.info("transaction conflict (%s), retry %d of %d", type(exc).__name__, attempt, attempts - 1)
            time.sleep(_delay(attempt, backoff, max_backoff))
    raise AssertionError("unreachable")  # pragma: no cover


async def run_transaction_async(
    db: AsyncDatabaseInterface,
    work: Callable[[AsyncConnection], Awaitable[T]],
    *,
    attempts: int = 5,
    isolation: IsolationLevel | None = None,
    readonly: bool = False,
    backoff: float = 0.02,
    max_backoff: float = 1.0,
) -> T:
    """The asyncio counterpart of :func:`run_transaction`."""
    _check_outside(db)
    for attempt in range(1, attempts + 1):
        try:
            async with db.transaction(isolation=isolation, readonly=readonly) as conn:
                return await work(conn)
        except TransientError as exc:
            if attempt == attempts:
                raise
            log.info("transaction conflict (%s), retry %d of %d", type(exc).__name__, attempt, attempts - 1)
            await asyncio.sleep(_delay(attempt, backoff, max_backoff))
    raise AssertionError("unreachable")  # pragma: no cover


@overload
def retry_on_conflict(func: Callable[P, T], /) -> Callable[P, T]: ...
@overload
def retry_on_conflict(
    *, attempts: int = 5, backoff: float = 0.02, max_backoff: float = 1.0
) -> Callable[[Callable[P, T]], Callable[P, T]]: ...


def retry_on_conflict(
    func: Callable[P, T] | None = None, /, *, attempts: int = 5, backoff: float = 0.02, max_backoff: float = 1.0
) -> Any:
    """Decorate a function that opens its own transaction to re-run it on conflicts.

    Works on plain and ``async`` functions::

        @retry_on_conflict(attempts=5)
        def transfer(db, a, b, amount):
            with db.transaction(isolation="serializable") as conn:
                ...
    """

    def decorate(fn: Callable[P, Any]) -> Callable[P, Any]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                for attempt in range(1, attempts + 1):
                    try:
                        return await fn(*args, **kwargs)
                    except TransientError:
                        if attempt == attempts:
                            raise
                        await asyncio.sleep(_delay(attempt, backoff, max_backoff))
                raise AssertionError("unreachable")  # pragma: no cover

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            for attempt in range(1, attempts + 1):
                try:
                    return fn(*args, **kwargs)
                except TransientError:
                    if attempt == attempts:
                        raise
                    time.sleep(_delay(attempt, backoff, max_backoff))
            raise AssertionError("unreachable")  # pragma: no cover

        return wrapper

    return decorate(func) if func is not None else decorate
