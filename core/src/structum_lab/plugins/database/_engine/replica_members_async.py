"""The members of a database with replicas: what their checks say, and the failover.

:class:`AsyncMembers` holds the primary and the replicas (ordinary databases of any backend)
with a :class:`~.replica_state.Member` record each. A watcher per member (a task, or a
thread in the sync twin) checks it every ``replica_check_interval`` seconds, and calls that
find a member down say so at once. The primary is replaced (a new pool, through its URL)
when it turns out to be read-only: that is the failover; writes are never retried here.
The routing itself is ``replicas_async.py``.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from time import monotonic

from .._contract.errors import ConfigurationError, ConnectionFailedError, DatabaseError
from .._contract.health import HealthStatus
from .._contract.protocols import AsyncDatabaseInterface, MemberInfo
from .._contract.rows import Row
from .._contract.url import DatabaseURL
from .background import AsyncBackground
from .flavour import ASYNC
from .fork import FORK
from .logs import log
from .replica_blocks_async import CONNECTION_ERRORS
from .replica_build import RouterSettings
from .replica_state import PRIMARY_PROBE, REPLICA_PROBE, Member, member_info, member_state, parse_lsn, replica_lag

__all__ = ["CONNECTION_ERRORS", "AsyncMembers", "lsn_of"]

_DB = AsyncDatabaseInterface


def _reason(exc: BaseException) -> str:
    # Members' errors are already masked by their own databases.
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def lsn_of(value: object) -> int | None:
    return None if value is None else parse_lsn(str(value))


class AsyncMembers:
    """The primary and the replicas, their state, their watchers and the failover."""

    def __init__(self, primary: Callable[[], _DB], replicas: Sequence[_DB], settings: RouterSettings) -> None:
        """``primary`` opens the primary (again, after a failover); ``replicas`` are open databases."""
        self._open_primary = primary
        self._settings = settings
        self._primary = self._member(primary(), "primary")
        self._replicas = [self._member(db, "replica") for db in replicas]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watch_epoch = -1
        self._watchers = AsyncBackground()
        self._chores = AsyncBackground()
        self._retired: list[_DB] = []
        self._failovers = 0
        self._last_failover: str | None = None
        self._closed = False

    @staticmethod
    def _member(db: _DB, role: str) -> Member[_DB]:
        try:
            dialect = DatabaseURL.parse(db.url).dialect
        except ConfigurationError:
            dialect = ""
        return Member(db, db.name, "primary" if role == "primary" else "replica", dialect in ("postgresql", "postgres"))

    @property
    def name(self) -> str:
        return self._primary.db.name

    def _describe(self, member: Member[_DB], now: float) -> str:
        s = self._settings
        state = member_state(member, max_lag=s.max_lag, stuck_after=s.stuck_after, now=now)
        if state == "lagging":
            return f"lagging {member.lag_s:g} s > replica_max_lag {s.max_lag:g} s"
        if state == "down" and member.error:
            return f"down ({member.error})"
        return state

    def _info(self, member: Member[_DB], now: float) -> MemberInfo:
        s = self._settings
        pool = member.db.get_pool_info()
        return member_info(member, member.db.url, pool, max_lag=s.max_lag, stuck_after=s.stuck_after, now=now)

    def _lost(self, member: Member[_DB], exc: BaseException) -> None:
        was = self._state(member)
        member.up, member.error = False, _reason(exc)
        self._report(member, was)

    def _state(self, member: Member[_DB]) -> str:
        s = self._settings
        return member_state(member, max_lag=s.max_lag, stuck_after=s.stuck_after, now=monotonic())

    def _report(self, member: Member[_DB], was: str) -> None:
        now = self._state(member)
        if now == was or self._closed or {was, now} <= {"up", "unknown"}:
            return
        if now in ("up", "unknown"):
            log.warning("database %r: %s %r is back (%s)", self.name, member.role, member.name, was)
        else:
            log.warning(
                "database %r: %s %r is %s", self.name, member.role, member.name, self._describe(member, monotonic())
            )

    def _primary_failed(self, exc: BaseException, db: _DB) -> None:
        """A call on the primary failed: read-only (it moved) or unreachable (its watcher will tell)."""
        if not isinstance(exc, DatabaseError):
            return
        if exc.sqlstate in ("25006", "55000"):  # read-only transaction; recovery is in progress
            self._primary_moved(db, f"it refused a write with SQLSTATE {exc.sqlstate}: it is read-only")
        elif isinstance(exc, CONNECTION_ERRORS) and self._primary.db is db:
            self._lost(self._primary, exc)

    def _primary_moved(self, db: _DB, reason: str) -> None:
        """Replace the primary's pool: new connections go through its URL to the server that accepts
        writes (libpq's target_session_attrs=read-write). Once per move, however many calls saw it."""
        with self._lock:
            if self._primary.db is not db or self._closed:
                return
            self._primary = self._member(self._open_primary(), "primary")
            self._retired.append(db)
            self._count_failover(reason)
        log.warning(
            "database %r: the primary moved (%s); its connections are closed and the next transaction reaches "
            "the server that accepts writes",
            self.name,
            reason,
        )
        self._chores.spawn(self._retire, db, name="structum-db-retire")

    async def _retire(self, db: _DB) -> None:
        try:
            await db.shutdown()
        except Exception:
            log.debug("closing the old primary's pool failed", exc_info=True)

    def _count_failover(self, reason: str) -> None:
        self._failovers += 1
        self._last_failover = f"{datetime.now(UTC).isoformat(timespec='seconds')}: {reason}"

    # -- watchers --------------------------------------------------------------------------

    def _ensure_watching(self) -> None:
        if self._watch_epoch == FORK.epoch or self._closed:
            return
        self._watch_epoch = FORK.epoch  # a forked child starts watchers of its own
        ref = weakref.ref(self)
        for slot in range(-1, len(self._replicas)):
            self._watchers.spawn(_watch, ref, slot, self._stop, name=f"structum-db-watch-{self.name}")

    async def _check(self, slot: int) -> None:
        """One check of a member (slot -1: the primary, whichever it is now)."""
        member = self._primary if slot < 0 else self._replicas[slot]
        primary = self._primary
        fresh = primary.up and monotonic() - primary.checked_at < 2 * self._settings.interval + 1
        primary_lsn = primary.current_lsn if fresh else None  # taken before the replica answers
        was = self._state(member)
        started = member.probing_since = monotonic()
        try:
            if not member.postgres:
                health = await member.db.health_check()
                if health.status is HealthStatus.UNHEALTHY:
                    raise ConnectionFailedError(health.message)
            elif member.role == "primary":
                result = await member.db.execute(PRIMARY_PROBE)
                self._primary_checked(member, await result.fetchone(), started)
            else:
                result = await member.db.execute(REPLICA_PROBE)
                self._replica_checked(member, await result.fetchone(), primary_lsn)
        except Exception as exc:
            member.up, member.error = False, _reason(exc)
        else:
            member.up, member.error = True, None
            member.record_latency((monotonic() - started) * 1000.0)
        finally:
            member.probing_since = None
            member.checked_at = monotonic()
        self._report(member, was)

    def _primary_checked(self, member: Member[_DB], row: Row | None, started: float) -> None:
        if row is None:
            return
        member.standby = bool(row["standby"])
        if member.standby:
            self._primary_moved(member.db, "it reports that it is in recovery")
            return
        member.current_lsn, member.lsn_since = lsn_of(row["lsn"]), started
        endpoint = f"{row['addr'] or 'local socket'}:{row['port']}"
        if member.endpoint is not None and endpoint != member.endpoint:
            with self._lock:
                self._count_failover(f"the primary is now the server at {endpoint}, was {member.endpoint}")
            log.warning(
                "database %r: the primary is now the server at %s (was %s)", self.name, endpoint, member.endpoint
            )
        member.endpoint = endpoint

    def _replica_checked(self, member: Member[_DB], row: Row | None, primary_lsn: int | None) -> None:
        if row is None:
            return
        member.standby = bool(row["standby"])
        replayed = lsn_of(row["replayed"])
        if replayed is not None:
            member.replay_lsn = max(member.replay_lsn or 0, replayed)
        age = None if row["replay_age"] is None else float(row["replay_age"])
        now = monotonic()
        waited = 0.0 if member.waiting_since is None else now - member.waiting_since
        member.lag_s, waiting = replica_lag(lsn_of(row["received"]), replayed, age, primary_lsn, waited)
        if not waiting:
            member.waiting_since = None
        elif member.waiting_since is None:
            member.waiting_since = now


async def _watch(ref: weakref.ref[AsyncMembers], slot: int, stop: threading.Event) -> None:
    """Check one member every replica_check_interval until shutdown (or the database is dropped)."""
    while not stop.is_set():
        router = ref()
        if router is None:
            return
        interval = router._settings.interval
        try:
            await router._check(slot)
        except Exception:
            log.debug("a replica check failed", exc_info=True)
        del router
        if ASYNC:  # ASYNC
            await asyncio.sleep(interval)
        else:
            stop.wait(interval)
