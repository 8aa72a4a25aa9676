"""Turning the product's options into psycopg_pool and psycopg arguments.

Every common option keeps its meaning (``pool_size``, ``max_overflow``,
``pool_timeout``, ``pool_recycle`` ...) so one config file works on either backend;
psycopg_pool's own names (``min_size``, ``max_size``, ``timeout``, ``max_lifetime``)
are accepted too and win when given.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from structum_lab.plugins.database import ConfigurationError, DatabaseURL, IsolationLevel
from structum_lab.plugins.database.kit import (
    normalize_isolation,
    normalize_prepare_threshold,
    ping_budget,
    resolve_statement_deadline,
)

__all__ = ["PoolSettings", "normalize_prepare_threshold", "resolve_settings"]

log = logging.getLogger("structum_lab.plugins.database")

#: Arguments the backend owns: it manages transactions and the row shape itself.
_RESERVED: Final = frozenset({"autocommit", "row_factory", "cursor_factory", "context"})


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """Everything the pool, the checkout and the messages need, resolved once."""

    # The connectable URL and the connect arguments may hold the password: not in repr().
    conninfo: str = field(repr=False)
    kwargs: dict[str, Any] = field(repr=False)
    min_size: int
    max_size: int
    timeout: float
    max_lifetime: float
    max_idle: float
    reconnect_timeout: float
    pool_size: int
    max_overflow: int
    explicit_sizes: bool
    pre_ping: bool
    pre_ping_window: float
    connect_timeout: int | None
    isolation: IsolationLevel | None
    #: Client-side limit on one round trip (None: none); see core's ``_deadline.py``.
    statement_deadline: float | None
    #: Limit on the liveness ping at checkout: a connection that does not answer is dead.
    ping_budget: float


def _seconds(name: str, value: float | None, *, minimum: float = 0.0) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a number of seconds, got {type(value).__name__}") from None
    if math.isnan(number) or number < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum:g} seconds, got {value!r}")
    return number


def _statement_options(existing: str | None, statement_timeout: float | None) -> str | None:
    if not statement_timeout:
        return existing
    setting = f"-c statement_timeout={max(1, round(statement_timeout * 1000))}"
    return f"{existing} {setting}" if existing else setting


def resolve_settings(
    url: DatabaseURL,
    *,
    pool_size: int,
    min_size: int | None,
    max_size: int | None,
    timeout: float | None,
    max_overflow: int,
    pool_timeout: float,
    pool_recycle: float | None,
    max_lifetime: float | None,
    max_idle: float,
    reconnect_timeout: float,
    pool_pre_ping: bool,
    pre_ping_window: float,
    prepare_threshold: object,
    connect_args: Mapping[str, Any] | None,
    connect_timeout: float | None,
    statement_timeout: float | None,
    statement_deadline: float | None,
    application_name: str | None,
    isolation_level: str | None,
    row_factory: Any,
) -> PoolSettings:
    """Check and combine the options; every problem is a ConfigurationError that says what to change."""
    if url.dialect not in ("postgresql", "postgres") or url.driver is not None:
        raise ConfigurationError(
            f"the psycopg backend serves postgresql:// and postgres:// URLs (or libpq key=value strings), "
            f"not {url.scheme}://; use backend='sqlalchemy' for {url.scheme}:// URLs"
        )
    if pool_size < 1 or max_overflow < 0:
        raise ConfigurationError(f"pool_size must be >= 1 and max_overflow >= 0, got {pool_size} and {max_overflow}")
    low = pool_size if min_size is None else min_size
    high = max(low, pool_size + max_overflow) if max_size is None else max_size
    if low < 0 or high < 1 or high < low:
        raise ConfigurationError(
            f"pool sizes do not fit: min_size={low}, max_size={high}; need 0 <= min_size <= max_size and max_size >= 1"
        )
    wait = _seconds(
        "timeout" if timeout is not None else "pool_timeout", timeout if timeout is not None else pool_timeout
    )
    if max_lifetime is not None:
        lifetime = _seconds("max_lifetime", max_lifetime, minimum=1e-3)
    elif pool_recycle is not None:
        # SQLAlchemy's pool_recycle=-1 (or 0) means "never recycle".
        lifetime = float(pool_recycle) if pool_recycle > 0 else math.inf
    else:
        lifetime = 3600.0

    connect_args = dict(connect_args or {})
    reserved = sorted(_RESERVED & set(connect_args))
    if reserved:
        raise ConfigurationError(
            f"connect_args may not set {', '.join(reserved)}: the psycopg backend manages transactions and rows itself"
        )
    conninfo = url.render(hide_password=False)
    kwargs: dict[str, Any] = {
        "autocommit": False,
        "row_factory": row_factory,
        "prepare_threshold": normalize_prepare_threshold(connect_args.pop("prepare_threshold", prepare_threshold)),
    }
    connect_s: int | None = None
    if connect_timeout:
        # libpq takes whole seconds and treats anything below 2 as 2.
        connect_s = max(2, math.ceil(connect_timeout))
        kwargs["connect_timeout"] = connect_s
    if application_name:
        kwargs["application_name"] = application_name
    statement_s = _seconds("statement_timeout", statement_timeout)
    if statement_s:
        # Appended to the URL's own options (e.g. -csearch_path=...), which a kwarg would replace.
        existing = connect_args.pop("options", None)
        if existing is None:
            existing = _conninfo_options(conninfo)
        kwargs["options"] = _statement_options(existing, statement_s)
    if "connect_timeout" in connect_args:
        connect_s = max(2, math.ceil(float(connect_args["connect_timeout"])))
    kwargs.update(connect_args)
    deadline = resolve_statement_deadline(statement_s, _seconds("statement_deadline", statement_deadline))
    # psycopg_pool refuses at once when asked to wait 0 s, even with idle connections.
    checkout_wait = max(wait or 0.0, 0.001)
    return PoolSettings(
        conninfo=conninfo,
        kwargs=kwargs,
        min_size=low,
        max_size=high,
        timeout=checkout_wait,
        max_lifetime=lifetime or 3600.0,
        max_idle=_seconds("max_idle", max_idle) or 600.0,
        reconnect_timeout=_seconds("reconnect_timeout", reconnect_timeout) or 300.0,
        pool_size=pool_size,
        max_overflow=max_overflow,
        explicit_sizes=min_size is not None or max_size is not None,
        pre_ping=bool(pool_pre_ping),
        pre_ping_window=_seconds("pre_ping_window", pre_ping_window) or 0.0,
        connect_timeout=connect_s,
        isolation=normalize_isolation(isolation_level),
        statement_deadline=deadline,
        ping_budget=ping_budget(checkout_wait, connect_s, deadline),
    )


def _conninfo_options(conninfo: str) -> str | None:
    from psycopg import conninfo as pg_conninfo
    from psycopg import errors as pg_errors

    try:
        value = pg_conninfo.conninfo_to_dict(conninfo).get("options")
    except pg_errors.Error:
        raise ConfigurationError("psycopg cannot parse the database URL; check its syntax") from None
    return None if value is None else str(value)
