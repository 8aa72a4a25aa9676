"""A database with replicas: writes on the primary, reads where they are safe (docs/scale-out.md).

:class:`AsyncReplicatedDatabase` is made of ordinary databases of any backend, one primary and
its replicas, and has the public face of one (``AsyncDatabaseInterface``):

* ``transaction()``, ``get_connection()`` and ``db.execute()`` go to the primary;
  ``transaction(readonly=True)`` and ``get_connection(readonly=True)`` to a replica in
  rotation (round robin, or the lowest measured latency), else the primary or an error
  (``replica_fallback``). A replica that cannot be reached when a read starts is taken out
  and the read goes on elsewhere: the caller sees no error.
* Each member has a watcher (a task, or a thread in the sync twin) that checks it every
  ``replica_check_interval`` seconds: health, role, WAL positions, lag. A replica that is
  down, lags beyond ``replica_max_lag`` or was promoted leaves the rotation, and comes back
  when a check says it recovered.
* Read-your-writes: after a commit on the primary, a read of the same thread or task goes
  to a replica only once it has replayed that commit (its LSN), else to the primary, or
  waits up to ``read_your_writes_wait``; or, by option, the primary serves reads for a time
  window. ``consistency_token()`` / ``read_after()`` carry the guarantee across requests.
* Failover: a write refused with SQLSTATE 25006, or a primary that reports being in
  recovery, means the primary moved: its pool is replaced, so new connections go through
  the (multi-host) URL to the server that accepts writes. Writes are never retried.

A database without replicas never gets here: none of this costs it anything.
"""

# sync-renames: connect_async=connect

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar, Token
from time import monotonic
from typing import Any, ClassVar, Protocol, Self, TypeVar, runtime_checkable

from .._config.connect import connect_async
from .._contract.errors import (
    ConnectionFailedError,
    DatabaseError,
    NotSupportedError,
)
from .._contract.health import HealthCheckResult, HealthStatus
from .._contract.protocols import (
    AsyncConnection,
    AsyncDatabaseInterface,
    AsyncResult,
    IsolationLevel,
    Params,
    PoolInfo,
)
from .flavour import ASYNC
from .isolation import normalize_isolation
from .logs import log
from .replica_blocks_async import AsyncRoutedTransaction, AsyncTrackedConnection, Block, Entry
from .replica_build import RouterSettings, plan_router
from .replica_members_async import CONNECTION_ERRORS, AsyncMembers, lsn_of
from .replica_state import (
    CURRENT_LSN,
    NO_WRITES,
    REPLAY_LSN,
    Consistency,
    Member,
    format_lsn,
    in_rotation,
    ordered,
    parse_lsn,
    token_lsn,
)
from .scope import current_task_id

# sync-only: import time

__all__ = ["AsyncReplicatedDatabase"]

_DB = AsyncDatabaseInterface
_POLL = 0.02  # while a read waits for a replica to replay a commit
T = TypeVar("T")


@runtime_checkable
class _Opens(Protocol):
    async def open(self) -> None: ...


def _in_threads(calls: Sequence[Callable[[], T]]) -> list[T]:
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="structum-db-health") as pool:
        return list(pool.map(lambda call: call(), calls))


class AsyncReplicatedDatabase(AsyncMembers):
    """A primary database and its replicas, used as one database (see the module docstring)."""

    is_async: ClassVar[bool] = True  # sync: is_async: ClassVar[bool] = False

    def __init__(self, primary: Callable[[], _DB], replicas: Sequence[_DB], settings: RouterSettings) -> None:
        """``primary`` opens the primary (again, after a failover); ``replicas`` are open databases."""
        super().__init__(primary, replicas, settings)
        key = f"structum_replicas_{id(self)}"
        self._active: ContextVar[Entry | None] = ContextVar(key, default=None)
        self._seen: ContextVar[Consistency] = ContextVar(f"{key}_seen", default=NO_WRITES)
        self._owner: Callable[[], int]
        if ASYNC:  # ASYNC
            self._owner = current_task_id
        else:
            self._owner = threading.get_ident
        self._turn = itertools.count()

    @classmethod
    def of_class(cls, factory: Callable[..., _DB], args: Sequence[object], kwargs: Mapping[str, Any]) -> Self:
        """``<DatabaseClass>(url, replicas=[...], ...)``: the primary of ``factory``, replicas by URL or namespace."""
        plan = plan_router(getattr(factory, "__name__", "database"), getattr(factory, "backend_name", ""), args, kwargs)
        replicas: list[_DB] = []
        try:
            for replica in plan.replicas:
                replicas.append(connect_async(replica.url, backend=replica.backend, **replica.options))
            return cls(lambda: factory(plan.url, **plan.options), replicas, plan.settings)
        except BaseException:
            if ASYNC:  # ASYNC
                pass  # asyncio pools open on first use: nothing is connected yet
            else:
                for db in replicas:
                    db.shutdown()  # type: ignore[unused-coroutine]
            raise

    # -- identity ------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        return self._primary.db.backend

    @property
    def url(self) -> str:
        """The primary's URL, secrets masked."""
        return self._primary.db.url

    @property
    def primary(self) -> _DB:
        """The primary database (a new object after a failover replaced its pool)."""
        return self._primary.db

    @property
    def replicas(self) -> list[_DB]:
        return [m.db for m in self._replicas]

    def __getattr__(self, name: str) -> object:
        # What only the primary's class has (features, listen(), pool, settings, get_session(), ...).
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._primary.db, name)

    def __repr__(self) -> str:
        names = [m.name for m in self._replicas]
        return f"<{type(self).__name__} name={self.name!r} primary={self._primary.db!r} replicas={names!r}>"

    # -- the public face -------------------------------------------------------------------

    def transaction(
        self,
        *,
        isolation: IsolationLevel | None = None,
        readonly: bool = False,
        pipeline: bool = False,
        after: str | None = None,
    ) -> AsyncRoutedTransaction:
        """On the primary; ``readonly=True``: on a replica in rotation that has replayed what this
        thread or task must see (its own commits, ``after``, ``read_after()``), else the primary."""
        level = normalize_isolation(isolation) if isolation else None
        return AsyncRoutedTransaction(self, level, readonly, pipeline, after)

    def in_transaction(self) -> bool:
        return self._current() is not None

    async def get_connection(self, *, readonly: bool = False, after: str | None = None) -> AsyncConnection:
        self._ensure_watching()
        if not readonly:
            db = self._primary.db
            try:
                conn = await db.get_connection()
            except BaseException as exc:
                self._primary_failed(exc, db)
                raise
            return AsyncTrackedConnection(self, db, conn)
        candidates = await self._readers(None, after)
        for member in candidates or ():
            try:
                return await member.db.get_connection(readonly=True)
            except CONNECTION_ERRORS as exc:
                self._lost(member, exc)
        return await self._reads_on_primary(candidates).db.get_connection(readonly=True)

    async def execute(self, sql: str, params: Params = None) -> AsyncResult:
        """On the primary (inside a routed transaction: in it). Counts as a write for read-your-writes,
        as any statement may write."""
        active = self._current()
        if active is not None:
            return await active.db.execute(sql, params)
        self._ensure_watching()
        db = self._primary.db
        try:
            result = await db.execute(sql, params)
        except BaseException as exc:
            self._primary_failed(exc, db)
            raise
        self._committed()
        return result

    async def consistency_token(self) -> str | None:
        """The WAL position that covers this thread's or task's commits (and any token it was
        given), for ``read_after()`` in a later request (a cookie, a header); None before any."""
        seen = self._seen.get()
        if seen.pending:
            if not self._primary.postgres:
                raise NotSupportedError("consistency tokens are PostgreSQL WAL positions")
            seen = await self._resolve(seen)
        lsn = max(seen.own, seen.token)
        return format_lsn(lsn) if lsn else None

    def read_after(self, token: str | None) -> None:
        """Reads of this thread or task from now on see at least what ``token`` covers."""
        if token is None:
            return
        lsn = token_lsn(token)
        seen = self._seen.get()
        self._seen.set(Consistency(max(seen.token, lsn), seen.own, seen.pending, seen.committed_at))

    async def health_check(self) -> HealthCheckResult:
        """Every member's own health check, at once; DEGRADED when a replica is out of rotation."""
        self._ensure_watching()
        members = [self._primary, *self._replicas]
        if ASYNC:  # ASYNC
            results = list(await asyncio.gather(*(m.db.health_check() for m in members)))
        else:
            results = _in_threads([m.db.health_check for m in members])  # type: ignore[misc]
        for member, result in zip(members, results, strict=True):
            if result.status is HealthStatus.UNHEALTHY:  # its watcher brings it back
                was = self._state(member)
                member.up, member.error = False, result.message
                self._report(member, was)
        first = results[0]
        now = monotonic()
        s = self._settings
        out = [m for m in self._replicas if not in_rotation(m, max_lag=s.max_lag, stuck_after=s.stuck_after, now=now)]
        status, message = first.status, first.message
        if out:
            if status is HealthStatus.HEALTHY:
                status = HealthStatus.DEGRADED
            states = ", ".join(f"{m.name} {self._describe(m, now)}" for m in out)
            message = f"{message}; {len(out)} of {len(self._replicas)} replicas out of rotation: {states}"
        details: dict[str, object] = {**first.details, "failovers": self._failovers}
        details["members"] = [
            {**self._info(m, now), "status": r.status.value, "message": r.message, "health_latency_ms": r.latency_ms}
            for m, r in zip(members, results, strict=True)
        ]
        if self._last_failover:
            details["last_failover"] = self._last_failover
        return HealthCheckResult(status, message, first.latency_ms, details)

    def get_pool_info(self) -> PoolInfo:
        """The primary's figures, plus every member (role, state, lag, its own pool) and failovers."""
        now = monotonic()
        info = self._primary.db.get_pool_info().copy()
        info["members"] = [self._info(m, now) for m in (self._primary, *self._replicas)]
        info["failovers"] = self._failovers
        if self._last_failover:
            info["last_failover"] = self._last_failover
        return info

    async def open(self) -> None:
        """Start every member's pool and the watchers (done on first use otherwise)."""
        for member in (self._primary, *self._replicas):
            if isinstance(member.db, _Opens):
                await member.db.open()
        self._ensure_watching()

    async def shutdown(self) -> None:
        """Stop the watchers and shut every member down. Idempotent."""
        self._closed = True
        self._stop.set()
        self._watchers.cancel()
        for db in (self._primary.db, *(m.db for m in self._replicas), *self._retired):
            try:
                await db.shutdown()
            except Exception:
                log.debug("shutting down %r failed", db, exc_info=True)
        await self._watchers.wait()
        await self._chores.wait()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    # -- routing ---------------------------------------------------------------------------

    def _current(self) -> Member[_DB] | None:
        entry = self._active.get()
        if entry is not None and entry[1] == self._owner():
            return entry[0]
        return None

    def _enter(self, member: Member[_DB]) -> Token[Entry | None]:
        return self._active.set((member, self._owner()))

    def _leave(self, token: Token[Entry | None]) -> None:
        try:
            self._active.reset(token)
        except ValueError:  # left in another context than entered (see scope.py)
            self._active.set(None)

    def _writer(self) -> Member[_DB]:
        return self._primary

    async def _enter_read(
        self, isolation: IsolationLevel | None, pipeline: bool, after: str | None
    ) -> tuple[Member[_DB], Block, AsyncConnection]:
        candidates = await self._readers(isolation, after)
        for member in candidates or ():
            block = member.db.transaction(isolation=isolation, readonly=True, pipeline=pipeline)
            try:
                return member, block, await block.__aenter__()
            except CONNECTION_ERRORS as exc:
                self._lost(member, exc)  # before the caller's code ran: the read goes on elsewhere
        member = self._reads_on_primary(candidates)
        block = member.db.transaction(isolation=isolation, readonly=True, pipeline=pipeline)
        db = member.db
        try:
            return member, block, await block.__aenter__()
        except BaseException as exc:
            self._primary_failed(exc, db)
            raise

    async def _readers(self, isolation: IsolationLevel | None, after: str | None) -> list[Member[_DB]] | None:
        """The replicas to try, best first; ``[]``: none in rotation; None: the primary must serve."""
        seen = self._seen.get()
        need = seen.token if after is None else max(seen.token, token_lsn(after))
        if isolation == "serializable":
            return None  # a hot standby refuses SERIALIZABLE
        s = self._settings
        if s.read_your_writes == "window" and seen.committed_at and monotonic() - seen.committed_at < s.window:
            return None
        now = monotonic()
        healthy = [m for m in self._replicas if in_rotation(m, max_lag=s.max_lag, stuck_after=s.stuck_after, now=now)]
        if not healthy:
            return []
        if s.read_your_writes == "lsn":
            if seen.pending:
                seen = await self._resolve(seen)
            need = max(need, seen.own)
        candidates = ordered(healthy, s.strategy, next(self._turn))
        return candidates if not need else await self._caught_up(candidates, need)

    def _reads_on_primary(self, candidates: list[Member[_DB]] | None) -> Member[_DB]:
        if candidates is not None and self._settings.fallback == "error":
            now = monotonic()
            states = "; ".join(f"{m.name} {self._describe(m, now)}" for m in self._replicas)
            raise ConnectionFailedError(
                f"database {self.name!r}: no replica can serve reads and replica_fallback = 'error': {states}",
                backend=self.backend,
            )
        return self._primary

    async def _resolve(self, seen: Consistency) -> Consistency:
        """The LSN that covers this thread's or task's commits: from the primary's last check when
        it began after them, else asked for (one round trip)."""
        primary = self._primary
        if primary.current_lsn is not None and primary.lsn_since > seen.committed_at:
            lsn = primary.current_lsn
        else:
            db = primary.db
            try:
                result = await db.execute(CURRENT_LSN)
                lsn = parse_lsn(str(await result.scalar()))
            except DatabaseError as exc:
                # The primary cannot tell (down, or moved): the best position known, not a guarantee.
                self._primary_failed(exc, db)
                lsn = primary.current_lsn or 0
        resolved = Consistency(seen.token, max(seen.own, lsn), False, seen.committed_at)
        self._seen.set(resolved)
        return resolved

    async def _caught_up(self, candidates: list[Member[_DB]], need: int) -> list[Member[_DB]] | None:
        """The candidates that have replayed ``need``, waiting up to read_your_writes_wait; None: none."""
        deadline = monotonic() + self._settings.wait
        while True:
            pending = [m for m in candidates if m.postgres and m.up is not False]
            ready = [m for m in pending if m.replay_lsn is not None and m.replay_lsn >= need]
            if ready:
                return ready
            for member in pending:
                try:
                    result = await member.db.execute(REPLAY_LSN)
                    replayed = lsn_of(await result.scalar())
                except CONNECTION_ERRORS as exc:
                    self._lost(member, exc)
                    continue
                except DatabaseError:
                    continue
                if replayed is not None:
                    member.replay_lsn = max(member.replay_lsn or 0, replayed)
                    if replayed >= need:
                        return [member]
            if not pending or monotonic() >= deadline:
                return None
            await asyncio.sleep(_POLL)  # sync: time.sleep(_POLL)

    def _committed(self) -> None:
        seen = self._seen.get()
        self._seen.set(Consistency(seen.token, seen.own, True, monotonic()))
