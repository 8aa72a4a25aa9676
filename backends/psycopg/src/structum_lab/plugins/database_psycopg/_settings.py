"""Turning the product's options into psycopg_pool and psycopg arguments.

Every common option keeps its meaning (``pool_size``, ``max_overflow``,
``pool_timeout``, ``pool_recycle`` ...) so one config file works on either backend;
psycopg_pool's own names (``min_size``, ``max_size``, ``timeout``, ``max_lifetime``)
are accepted too and win when given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from structum_lab.plugins.database import ConfigurationError, DatabaseURL, IsolationLevel
from structum_lab.plugins.database.kit import (
    normalize_isolation,
    normalize_prepare_threshold,
    ping_budget,
    prepare_threshold_for,
    resolve_statement_deadline,
)

__all__ = ["PoolSettings", "normalize_prepare_threshold", "resolve_settings"]

#: pool_size when the user left it out (COMMON_OPTIONS' default).
_DEFAULT_POOL_SIZE: Final = 5

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


def _statement_options(existing: str | None, statement_timeout: float | None) -> str | None:
    if not statement_timeout:
        return existing
    setting = f"-c statement_timeout={max(1, round(statement_timeout * 1000))}"
    return f"{existing} {setting}" if existing else setting


def resolve_settings(url: DatabaseURL, options: Mapping[str, Any], *, row_factory: Any) -> PoolSettings:
    """Combine the checked options (core validated names, types and bounds); what does not
    fit together is a ConfigurationError that says what to change."""
    if url.dialect not in ("postgresql", "postgres") or url.driver is not None:
        raise ConfigurationError(
            f"the psycopg backend serves postgresql:// and postgres:// URLs (or libpq key=value strings), "
            f"not {url.scheme}://; use backend='sqlalchemy' for {url.scheme}:// URLs"
        )
    o = options
    pool_size, max_overflow = o["pool_size"], o["max_overflow"]
    low, high = _sizes(pool_size, max_overflow, o["min_size"], o["max_size"])
    wait = o["pool_timeout"] if o["timeout"] is None else o["timeout"]
    if wait <= 0:
        raise ConfigurationError(
            f"{'timeout' if o['timeout'] is not None else 'pool_timeout'}={wait:g} would fail every checkout that "
            "waits even a moment (psycopg_pool opens connections in the background); give it a few seconds, "
            "or a fraction such as 0.1 to fail fast"
        )
    if o["max_lifetime"] is not None:
        lifetime = o["max_lifetime"]
    elif o["pool_recycle"] is not None:
        # SQLAlchemy's pool_recycle=-1 (or 0) means "never recycle".
        lifetime = o["pool_recycle"] if o["pool_recycle"] > 0 else math.inf
    else:
        lifetime = 3600.0

    connect_args = dict(o["connect_args"] or {})
    reserved = sorted(_RESERVED & set(connect_args))
    if reserved:
        raise ConfigurationError(
            f"connect_args may not set {', '.join(reserved)}: the psycopg backend manages transactions and rows itself"
        )
    conninfo = url.render(hide_password=False)
    kwargs: dict[str, Any] = {
        # The engine writes BEGIN itself, to send it with the first statement (one round
        # trip fewer per transaction); psycopg would send its own, on a round trip of its own.
        "autocommit": True,
        "row_factory": row_factory,
        "prepare_threshold": prepare_threshold_for(
            connect_args.pop("prepare_threshold", o["prepare_threshold"]), pgbouncer=bool(o.get("pgbouncer"))
        ),
    }
    connect_s: int | None = None
    if o["connect_timeout"]:
        # libpq takes whole seconds and treats anything below 2 as 2.
        connect_s = max(2, math.ceil(o["connect_timeout"]))
        kwargs["connect_timeout"] = connect_s
    if o["application_name"]:
        kwargs["application_name"] = o["application_name"]
    statement_s = o["statement_timeout"]
    if statement_s:
        # Appended to the URL's own options (e.g. -csearch_path=...), which a kwarg would replace.
        existing = connect_args.pop("options", None)
        if existing is None:
            existing = _conninfo_options(conninfo)
        kwargs["options"] = _statement_options(existing, statement_s)
    if "connect_timeout" in connect_args:
        connect_s = max(2, math.ceil(float(connect_args["connect_timeout"])))
    kwargs.update(connect_args)
    deadline = resolve_statement_deadline(statement_s, o["statement_deadline"])
    # psycopg_pool refuses at once when asked to wait 0 s, even with idle connections.
    checkout_wait = max(wait, 0.001)
    return PoolSettings(
        conninfo=conninfo,
        kwargs=kwargs,
        min_size=low,
        max_size=high,
        timeout=checkout_wait,
        max_lifetime=lifetime or 3600.0,
        max_idle=o["max_idle"] or 600.0,
        reconnect_timeout=o["reconnect_timeout"] or 300.0,
        pool_size=pool_size,
        max_overflow=max_overflow,
        explicit_sizes=o["min_size"] is not None or o["max_size"] is not None,
        pre_ping=o["pool_pre_ping"],
        pre_ping_window=o["pre_ping_window"] or 0.0,
        connect_timeout=connect_s,
        isolation=normalize_isolation(o["isolation_level"]),
        statement_deadline=deadline,
        ping_budget=ping_budget(checkout_wait, connect_s, deadline),
    )


def _sizes(pool_size: int, max_overflow: int, min_size: int | None, max_size: int | None) -> tuple[int, int]:
    """(min_size, max_size): psycopg_pool's own names win; a cap given alone lowers a minimum
    left at its default (pool_size=5); what the user set and does not fit is an error naming it."""
    if max_size is None:
        low = pool_size if min_size is None else min_size
        return low, max(low, pool_size + max_overflow)
    if min_size is not None:
        if min_size > max_size:
            raise ConfigurationError(
                f"pool sizes do not fit: min_size={min_size} is above max_size={max_size}; "
                "lower min_size or raise max_size"
            )
        return min_size, max_size
    if pool_size > max_size and pool_size != _DEFAULT_POOL_SIZE:
        raise ConfigurationError(
            f"pool sizes do not fit: pool_size={pool_size} is above max_size={max_size}; lower pool_size "
            "(or set min_size) or raise max_size"
        )
    return min(pool_size, max_size), max_size


def _conninfo_options(conninfo: str) -> str | None:
    from psycopg import conninfo as pg_conninfo
    from psycopg import errors as pg_errors

    try:
        value = pg_conninfo.conninfo_to_dict(conninfo).get("options")
    except pg_errors.Error:
        raise ConfigurationError("psycopg cannot parse the database URL; check its syntax") from None
    return None if value is None else str(value)
