"""What a database with replicas knows about its members, and the rules it routes reads by.

No I/O here: ``replicas_async.py`` probes the members and asks these functions what the
answers mean. WAL positions (LSNs) are compared as integers; PostgreSQL writes them as
``'16/B374D848'`` (two hex numbers, high and low 32 bits), and so does a consistency token.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Generic, Literal, TypeVar

from .._contract.errors import ParameterError
from .._contract.protocols import MemberInfo, PoolInfo

__all__ = [
    "CURRENT_LSN",
    "NO_WRITES",
    "PRIMARY_PROBE",
    "REPLAY_LSN",
    "REPLICA_PROBE",
    "WAITING_GRACE",
    "Consistency",
    "Member",
    "format_lsn",
    "in_rotation",
    "member_info",
    "member_state",
    "ordered",
    "parse_lsn",
    "replica_lag",
    "token_lsn",
]

D = TypeVar("D")

#: The primary's check: its role (a standby after a failover went wrong), WAL position and address.
PRIMARY_PROBE: Final = (
    "SELECT pg_is_in_recovery() AS standby, "
    "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS lsn, "
    "inet_server_addr()::text AS addr, inet_server_port() AS port"
)
#: A replica's check: what it received and replayed, and how old the last replayed commit is.
REPLICA_PROBE: Final = (
    "SELECT pg_is_in_recovery() AS standby, pg_last_wal_receive_lsn()::text AS received, "
    "pg_last_wal_replay_lsn()::text AS replayed, "
    "EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_age"
)
REPLAY_LSN: Final = "SELECT pg_last_wal_replay_lsn()::text"
#: After a commit, the WAL written so far covers it (a synchronous commit flushes its record).
CURRENT_LSN: Final = "SELECT pg_current_wal_lsn()::text"

_TOKEN: Final = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}\Z")


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def token_lsn(token: object) -> int:
    """The LSN of a consistency token an application handed back (a cookie: untrusted input)."""
    if isinstance(token, str) and _TOKEN.match(token.strip()):
        return parse_lsn(token.strip())
    shown = repr(token)[:40]
    raise ParameterError(f"not a consistency token: {shown}; expected a WAL position such as '0/3000060'")


@dataclass(frozen=True, slots=True)
class Consistency:
    """What the reads of one thread or task must see (a ContextVar holds one per database).

    ``token``: an LSN handed in (``read_after()``, ``after=``); ``own``: the LSN that covers
    this thread's or task's commits, once known; ``pending``: a commit whose LSN has not
    been asked for yet (asked lazily, by the next read, so a burst of writes costs one
    round trip); ``committed_at``: when the last commit ended (monotonic clock).
    """

    token: int = 0
    own: int = 0
    pending: bool = False
    committed_at: float = 0.0


NO_WRITES: Final = Consistency()


@dataclass(slots=True, eq=False)
class Member(Generic[D]):
    """One database of the set and what its last check said. Written by its watcher and by the
    calls that find it down; read by every routing decision (plain attribute reads)."""

    db: D
    name: str
    role: Literal["primary", "replica"]
    postgres: bool
    up: bool | None = None  # None: not checked yet (in rotation, optimistically)
    standby: bool | None = None
    error: str | None = None
    lag_s: float | None = None
    replay_lsn: int | None = None
    current_lsn: int | None = None  # the primary's pg_current_wal_lsn() ...
    lsn_since: float = 0.0  # ... read by a check that started at this time
    checked_at: float = 0.0
    probing_since: float | None = None
    latency_ms: float | None = None
    endpoint: str | None = None
    waiting_since: float | None = None  # a replica that has replayed all it received, not all there is

    def record_latency(self, ms: float) -> None:
        self.latency_ms = ms if self.latency_ms is None else round(0.7 * self.latency_ms + 0.3 * ms, 3)


#: A replica that replayed all it received but not all the primary wrote is waiting for WAL in
#: flight; only when that lasts this long (its receiver may be cut off) does it count as lag.
WAITING_GRACE: Final = 1.0


def replica_lag(
    received: int | None,
    replayed: int | None,
    replay_age: float | None,
    primary_lsn: int | None,
    waiting_s: float,
) -> tuple[float | None, bool]:
    """(seconds a replica is behind, whether it waits for WAL from the primary).

    Caught up (it replayed all it received, and at least what the primary had written when
    the check began): 0. Behind: the age of its last replayed commit, which over-states the
    lag right after a long idle period (docs/scale-out.md). None: unknown. ``waiting_s``: for
    how long it has been waiting for WAL so far (see :data:`WAITING_GRACE`).
    """
    if replayed is None:
        return None, False
    applying = received is not None and received > replayed
    waiting = not applying and primary_lsn is not None and replayed < primary_lsn
    if not applying and (not waiting or waiting_s < WAITING_GRACE):
        return 0.0, waiting
    return (None if replay_age is None else round(max(0.0, replay_age), 3)), waiting


def member_state(member: Member[D], *, max_lag: float | None, stuck_after: float, now: float) -> str:
    if member.up is False:
        return "down"
    if member.probing_since is not None and now - member.probing_since > stuck_after:
        return "unresponsive"
    if member.role == "replica" and member.standby is False:
        return "promoted"
    if max_lag is not None and member.lag_s is not None and member.lag_s > max_lag:
        return "lagging"
    return "unknown" if member.up is None else "up"


def in_rotation(member: Member[D], *, max_lag: float | None, stuck_after: float, now: float) -> bool:
    return member_state(member, max_lag=max_lag, stuck_after=stuck_after, now=now) in ("up", "unknown")


def ordered(members: Sequence[Member[D]], strategy: str, turn: int) -> list[Member[D]]:
    """The replicas to try, best first: round robin from ``turn``, or by measured latency."""
    if strategy == "latency":
        return sorted(members, key=lambda m: float("inf") if m.latency_ms is None else m.latency_ms)
    start = turn % len(members)
    return [*members[start:], *members[:start]]


def member_info(
    member: Member[D], url: str, pool: PoolInfo, *, max_lag: float | None, stuck_after: float, now: float
) -> MemberInfo:
    state = member_state(member, max_lag=max_lag, stuck_after=stuck_after, now=now)
    info: MemberInfo = {
        "name": member.name,
        "role": member.role,
        "url": url,
        "state": state,
        "in_rotation": state in ("up", "unknown"),
        "latency_ms": member.latency_ms,
        "error": member.error,
        "pool": pool,
    }
    if member.role == "replica":
        info["lag_s"] = member.lag_s
        info["replay_lsn"] = None if member.replay_lsn is None else format_lsn(member.replay_lsn)
    return info
