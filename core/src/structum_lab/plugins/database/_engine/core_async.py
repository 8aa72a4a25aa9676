"""The engine behind one database: checkout accounting, transaction verbs, health, errors.

One :class:`AsyncEngine` per database object. The database (its public face), its
connections, transaction blocks and results all work through it, and it works through
the driver (``_contract/driver_async.py``). Everything here is the same for every
backend: the checkout statistics and the exhaustion message, the refusal to report an
aborted transaction as committed, the clean-up after a failed COMMIT, fork adoption,
leak reclaim, the health probe, observer events and error translation with secrets
masked.
"""

from __future__ import annotations

import time
from asyncio import AbstractEventLoop, shield
from collections.abc import Sequence
from typing import TYPE_CHECKING, Generic, Literal, TypeVar, cast

from .._config.manager import get_plugin_manager
from .._contract.driver_async import AsyncDriver, RawT
from .._contract.errors import (
    ConfigurationError,
    ConnectionLostError,
    DatabaseError,
    PoolTimeoutError,
    TransactionError,
)
from .._contract.events import ConnectionEvent, TransactionEvent
from .._contract.features import NoRows, PoolExhausted
from .._contract.health import HealthCheckResult
from .._contract.protocols import AsyncDatabaseInterface, IsolationLevel, PoolInfo
from . import leaks
from .deadline import round_trip_cap
from .errors import translate_error
from .flavour import ASYNC
from .fork import FORK, adopt
from .gate import AsyncFairGate
from .health import run_health_check_async
from .logs import enable_echo, log
from .messages import ABORTED_TRANSACTION
from .observe import Observers
from .pool_stats import PoolStats, pool_exhausted_message
from .scope import TransactionScope
from .secrets import Secrets, protect_logs

if TYPE_CHECKING:
    from .connection_async import AsyncEngineConnection

__all__ = ["AsyncEngine"]

E = TypeVar("E", bound=DatabaseError)


class AsyncEngine(Generic[RawT]):
    """The shared state and the verbs-with-rules of one database."""

    __slots__ = (
        "_fork_epoch",
        "_lent_at",
        "backend",
        "closed",
        "database",
        "driver",
        "echo",
        "errors",
        "features",
        "gate",
        "health_check_timeout",
        "health_degraded_ms",
        "isolation",
        "name",
        "observers",
        "opened",
        "read_errors",
        "scope",
        "secrets",
        "stats",
        "translator",
    )

    def __init__(
        self,
        database: AsyncDatabaseInterface,
        driver: AsyncDriver[RawT],
        *,
        name: str,
        backend: str,
        secrets: Secrets,
        echo: bool,
        health_check_timeout: float,
        health_degraded_ms: float,
        strict_params: bool = False,
        isolation: IsolationLevel | None = None,
        observers: Sequence[object] = (),
    ) -> None:
        self.database = database
        self.driver = driver
        self.name = name
        self.backend = backend
        self.secrets = secrets
        self.features = driver.features
        self.translator = driver.translator.strict_twin() if strict_params else driver.translator
        #: The default isolation level (the ``isolation_level`` option), for BEGINs the engine writes.
        self.isolation: IsolationLevel | None = isolation
        self.errors = driver.errors
        self.read_errors: tuple[type[BaseException], ...] = (NoRows, *driver.errors)
        self.echo = echo and not driver.features.logs_sql
        self.health_check_timeout = health_check_timeout
        self.health_degraded_ms = health_degraded_ms
        self.stats = PoolStats()
        #: First come, first served checkout where the driver's pool does not queue fairly.
        self.gate = None if driver.features.fair_checkout else AsyncFairGate(driver.limits.max_size)
        self.scope: TransactionScope[AsyncEngineConnection[RawT]] = TransactionScope(
            f"structum_{backend}_{id(self)}",
            is_async=True,  # sync: is_async=False,
        )
        self.closed = False
        self.opened = False
        #: The observer calls per event (the plugins for every database and ``observers``).
        self.observers = Observers(get_plugin_manager(), database, observers, secrets.scrub if secrets else None)
        self._lent_at: dict[int, float] = {}  # checkout time per connection, for connection_returned
        if hasattr(driver, "on_connection"):  # the driver reports the connections its pool opens and closes
            driver.on_connection = self.connection_event
        self._fork_epoch = FORK.epoch  # the pool about to be built belongs to this process
        protect_logs(secrets, driver.loggers)
        if self.echo:
            enable_echo()

    # -- the pool ----------------------------------------------------------------------

    async def open(self) -> None:
        if self.closed:
            raise self._shut_down()
        if not self.opened:
            await self.driver.open()
            self.opened = True

    async def checkout(self, *, ping: bool = False) -> RawT:
        """A live connection from the driver's pool, counted in the statistics."""
        if self.closed:
            raise self._shut_down()
        if self._fork_epoch != FORK.epoch:
            adopt(self, self._after_fork)
        if not self.opened:
            await self.open()
        stats = self.stats
        started = stats.checkout_started()
        gate = self.gate
        if gate is not None:
            try:
                entered = await gate.acquire(self.driver.limits.timeout)
            except BaseException:  # cancelled while waiting: no longer a waiter
                stats.checkout_failed(started, timed_out=False)
                raise
            if not entered:
                raise self._exhausted(started)
        try:
            raw = await self.driver.acquire(ping=ping)
        except PoolExhausted as exc:
            if gate is not None:
                gate.release()
            raise self._exhausted(started) from (exc.__cause__ or exc)
        except BaseException as exc:
            if gate is not None:
                gate.release()
            stats.checkout_failed(started, timed_out=False)
            if isinstance(exc, TypeError | ValueError) and not isinstance(exc, DatabaseError):
                # The driver's connect() refused an argument (URL query or connect_args): a
                # configuration mistake, not a connection failure.
                raise ConfigurationError(
                    "the driver refused the connection arguments (URL query parameters or connect_args): "
                    f"{type(exc).__name__}: {self.secrets.scrub(str(exc))}",
                    backend=self.backend,
                ) from None
            if isinstance(exc, self.errors) and not isinstance(exc, DatabaseError):
                raise self.translate(exc, connecting=True) from exc
            raise
        stats.checkout_done(started)
        observers = self.observers
        if observers.checkout:
            observers.emit_checkout(time.perf_counter() - started)
        if observers.returned:
            self._lent_at[id(raw)] = time.perf_counter()
        return raw

    async def release(self, raw: RawT) -> None:
        self.stats.released()
        if self.observers.returned:
            lent = self._lent_at.pop(id(raw), None)
            if lent is not None:
                self.observers.emit_returned(time.perf_counter() - lent)
        try:
            await self.driver.release(raw)
        finally:
            if self.gate is not None:
                self.gate.release()

    def pool_info(self) -> PoolInfo:
        counters = self.stats.counters()
        figures = dict(self.driver.pool_figures(self.stats.checked_out))
        counters["connections_lost"] += figures.pop("connections_lost", 0)
        return cast("PoolInfo", {**figures, **counters})

    async def shutdown(self) -> None:
        if self._fork_epoch != FORK.epoch:
            adopt(self, self._after_fork)  # a forked child closes its own pool, never the parent's
        self.closed = True
        await self.driver.close()

    def _shut_down(self) -> TransactionError:
        return TransactionError(f"database {self.name!r} has been shut down; create a new one", backend=self.backend)

    def _exhausted(self, started: float) -> PoolTimeoutError:
        waited = self.stats.checkout_failed(started, timed_out=True)
        info = self.pool_info()
        if self.observers.exhausted:
            self.observers.emit_exhausted(info, waited)
        limits = self.driver.limits
        message = pool_exhausted_message(
            name=self.name,
            waited=waited,
            pool_timeout=limits.timeout,
            pool_size=limits.pool_size,
            max_overflow=limits.max_overflow,
            info=info,
        )
        return self.error_class(PoolTimeoutError)(message + limits.hint, backend=self.backend)

    def _after_fork(self) -> object:
        """In a forked child: a pool of its own (opened at the next checkout); the parent's
        checked-out connections are not the child's."""
        inherited = self.driver.after_fork()
        self.stats = PoolStats()
        if self.gate is not None:  # the parent's holders are not the child's
            self.gate = AsyncFairGate(self.driver.limits.max_size)
        self.opened = False
        return inherited

    def reclaim(self, raw: RawT, loop: AbstractEventLoop | None) -> None:
        """Return a connection whose wrapper was garbage-collected open (on the reaper thread)."""
        detail = self.driver.describe(raw)
        if ASYNC:  # ASYNC
            if not leaks.run_on_loop(loop, self.release(raw)):
                # Its event loop is gone: the connection cannot be returned through it.
                self.stats.released()
                self.driver.abandon(raw)
                if self.gate is not None:
                    self.gate.release()
        else:
            self.release(raw)  # type: ignore[unused-coroutine]
        leaks.warn_leak(self.name, detail)

    # -- transactions ------------------------------------------------------------------

    async def begin(self, raw: RawT, isolation: IsolationLevel | None, readonly: bool) -> None:
        """Start the transaction of a fresh checkout; on failure the connection goes back."""
        try:
            await self.driver.begin(raw, isolation, readonly)
        except BaseException as exc:
            await shield(self.release(raw))
            if isinstance(exc, self.errors) and not isinstance(exc, DatabaseError):
                context = f"cannot start a transaction with isolation={isolation!r}, readonly={readonly}"
                raise self.translate(exc, raw, context=context) from exc
            raise

    async def restart(self, raw: RawT) -> None:
        """The next transaction of a ``get_connection()`` connection, after commit or rollback."""
        try:
            await self.driver.begin(raw, None, False)
        except self.errors as exc:
            raise self.translate(exc, raw) from exc

    async def commit(self, raw: RawT) -> None:
        """COMMIT, refusing to report success for a transaction the server has aborted; a
        failed COMMIT is rolled back, so nothing stays half-applied."""
        driver = self.driver
        if driver.transaction_failed(raw):
            await self.rollback_quietly(raw, "rollback of an aborted transaction failed")
            raise TransactionError(ABORTED_TRANSACTION, sqlstate="25P02", backend=self.backend)
        timed = self.observers.statement
        started = time.perf_counter() if timed else 0.0
        try:
            await driver.commit(raw)
        except self.errors as exc:
            error = self.translate(exc, raw)
            if timed:
                self.statement_done("COMMIT", started, error)
            await self.rollback_quietly(raw, "rollback after a failed commit failed")
            raise error from exc
        if timed:
            self.statement_done("COMMIT", started)

    async def rollback(self, raw: RawT) -> None:
        timed = self.observers.statement
        started = time.perf_counter() if timed else 0.0
        try:
            await self.driver.rollback(raw)
        except self.errors as exc:
            error = self.translate(exc, raw)
            if timed:
                self.statement_done("ROLLBACK", started, error)
            raise error from exc
        if timed:
            self.statement_done("ROLLBACK", started)

    async def rollback_quietly(self, raw: RawT, why: str) -> None:
        # The caller's exception (or refusal) is the one that explains what happened.
        timed = self.observers.statement
        started = time.perf_counter() if timed else 0.0
        try:
            await self.driver.rollback(raw)
        except Exception as exc:
            log.debug(why, exc_info=True)
            if timed:
                self.statement_done("ROLLBACK", started, exc)
            return
        if timed:
            self.statement_done("ROLLBACK", started)

    async def finish(self, raw: RawT, *, rollback: bool, reset: bool) -> None:
        """End of a transaction block: roll back (after an error), restore the options, return."""
        if rollback:
            await self.rollback_quietly(raw, "rollback failed")
        if reset:
            try:
                await self.driver.reset(raw)
            except Exception:
                log.debug("could not reset the transaction options", exc_info=True)
        await self.release(raw)

    def observed(self) -> bool:
        """Whether anyone listens to transactions (then blocks time themselves)."""
        observers = self.observers
        return bool(observers.finished or observers.transaction or observers.statement)

    def transaction_begun(self, *, savepoint: bool = False) -> None:
        if self.observers.transaction:
            self.observers.emit_transaction(TransactionEvent("begin", savepoint))

    def transaction_finished(
        self,
        outcome: Literal["commit", "rollback"],
        started: float,
        error: BaseException | None,
        *,
        savepoint: bool = False,
    ) -> None:
        observers = self.observers
        duration = time.perf_counter() - started
        if observers.transaction:
            observers.emit_transaction(TransactionEvent(outcome, savepoint, duration, error))
        if observers.finished and not savepoint:
            observers.emit_finished(outcome, duration, error)

    def statement_done(self, sql: str, started: float, error: BaseException | None = None) -> None:
        """A transaction control statement (COMMIT, SAVEPOINT...) ran: for the observers."""
        self.observers.emit_statement(sql, time.perf_counter() - started, error=error, kind="control")

    def connection_event(self, kind: Literal["created", "closed", "lost"], duration_s: float = 0.0) -> None:
        """Called by the driver when its pool opens or closes a connection (any thread)."""
        if self.observers.connection:
            self.observers.emit_connection(ConnectionEvent(kind, duration_s))

    # -- errors ------------------------------------------------------------------------

    def error_class(self, core: type[E]) -> type[E]:
        """The class to raise for one of the engine's own errors (a driver may subclass it)."""
        return cast("type[E]", self.driver.error_classes.get(core, core))

    def translate(
        self,
        exc: BaseException,
        raw: RawT | None = None,
        *,
        connecting: bool = False,
        context: str = "",
        sql: str | None = None,
        params: object = None,
    ) -> DatabaseError:
        """The core error for a driver exception, secrets masked; a lost connection is counted.
        ``sql``/``params``: the statement as the user wrote it, for the message."""
        original, lost = self.driver.unwrap_error(exc, raw)
        error = translate_error(
            original,
            backend=self.backend,
            secrets=self.secrets,
            connecting=connecting,
            lost=lost,
            context=context,
            sql=sql,
            params=params,
        )
        if isinstance(error, ConnectionLostError):
            self.stats.lost()
            self.driver.connection_lost()
            self.connection_event("lost")
        return error

    # -- health ------------------------------------------------------------------------

    async def health_check(self) -> HealthCheckResult:
        result = await run_health_check_async(
            self._probe,
            timeout_s=self.health_check_timeout,
            degraded_ms=self.health_degraded_ms,
            secrets=self.secrets,
            details=self._health_details,
        )
        if self.observers.health:
            self.observers.emit_health(result)
        return result

    async def _probe(self, budget: float) -> None:
        """One round trip: on a pooled connection, or (the pool not connected) a direct one."""
        await self.open()
        limit = self.driver.limits.max_size
        if self.stats.checked_out >= limit:
            # The health check reports a full pool instead of queueing behind it.
            raise PoolTimeoutError(f"all {limit} connections are in use; the health check does not wait")
        driver = self.driver
        if not driver.pool_ready:
            try:
                await driver.verify_server(budget)
            except self.errors as exc:
                raise self.translate(exc, connecting=True) from exc
            return
        with round_trip_cap(budget):  # the probe's round trips end with the health deadline
            raw = await self.checkout(ping=True)
        await shield(self.release(raw))

    def _health_details(self) -> dict[str, object]:
        return {"backend": self.backend, "database": self.name, "pool": dict(self.pool_info())}
