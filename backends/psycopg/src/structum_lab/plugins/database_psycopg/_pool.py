"""The pieces between psycopg_pool and the driver that need no ``await``.

* :func:`stamp` marks every new connection with what the checkout's liveness test
  needs: when it was created and last used, and core's zero-round-trip "is the socket
  readable?" probe (an idle PostgreSQL connection receives nothing unless the server
  closed it or sent a notification).
"""

from __future__ import annotations

import logging
from time import monotonic
from typing import Any, Final

from structum_lab.plugins.database.kit import (
    POSTGRESQL,
    PSYCOPG_POSITIONAL,
    Translator,
    readable_probe,
)

__all__ = [
    "CLOSE_WAIT",
    "COLD_RETRY",
    "COLD_SLICE",
    "COLD_VERIFY",
    "TRANSLATOR",
    "first_line",
    "quiet_pool_log",
    "stamp",
]

#: One translator for every psycopg database: the cache is per SQL string, not per pool.
TRANSLATOR: Final = Translator(POSTGRESQL, PSYCOPG_POSITIONAL)

#: How long a checkout waits on the pool at a time while the pool cannot connect, so
#: that a connection error reaches the caller instead of a full pool_timeout wait.
COLD_SLICE: Final = 0.05
#: How long a checkout waits for the outcome of the pool's own connection attempts before
#: trying one itself (at most half of its pool_timeout): attempts the pool started while the
#: server was unreachable (a stalled network) take connect_timeout to fail, then back off.
COLD_VERIFY: Final = 1.0
#: At most one such attempt per database in this many seconds, so waiting callers never
#: flood a server that is down (an attempt into a silent network lives connect_timeout).
COLD_RETRY: Final = 0.5
#: How long shutdown() waits for each pool worker to stop. Workers stop at once unless one is
#: stuck connecting to a silent server; psycopg_pool joins them one by one.
CLOSE_WAIT: Final = 0.25


def stamp(conn: Any) -> None:
    """Mark a new connection with its age, last use and readable-socket probe."""
    conn._sdb_created = conn._sdb_used = monotonic()
    conn._sdb_readable = readable_probe(conn.pgconn.socket)
    conn._sdb_pool = None


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (libpq adds hints on further lines)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class _PoolNoise(logging.Filter):
    """Drops psycopg_pool's warning for each failed connection attempt of our pools (one per
    attempt, every few seconds, printed to stderr when logging is not configured); the
    driver reports an outage once instead, through our logger, masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.WARNING and record.getMessage().startswith("error connecting in 'structum-")
        )


def quiet_pool_log() -> None:
    logger = logging.getLogger("psycopg.pool")
    if not any(isinstance(f, _PoolNoise) for f in logger.filters):
        logger.addFilter(_PoolNoise())
