"""psycopg's ``prepare_threshold``, read the same way by every backend that drives psycopg.

PgBouncer in transaction mode hands consecutive transactions of one client to different
server connections, so server-side prepared statements break there; psycopg's
``prepare_threshold=None`` turns them off. Both first-party backends accept the option
(the SQLAlchemy one passes it to psycopg), so one config file works with either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from .._contract.errors import ConfigurationError

__all__ = [
    "PSYCOPG_PREPARE_THRESHOLD",
    "normalize_prepare_threshold",
    "prepare_threshold_args",
    "prepare_threshold_for",
]

#: psycopg's own default: prepare a statement after this many executions.
PSYCOPG_PREPARE_THRESHOLD: Final = 5

_OFF: Final = frozenset({"none", "null", "off", "false", "no", "disable", "disabled", ""})


def normalize_prepare_threshold(value: object) -> int | None:
    """``None``/``false``/``"none"``/``"off"`` disable prepared statements; else a count >= 0.

    TOML has no null, so ``prepare_threshold = false`` is how a config file asks for
    PgBouncer's transaction mode.
    """
    if value is None or value is False:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _OFF:
            return None
        if text.isdigit():
            return int(text)
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    elif isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    raise ConfigurationError(
        f"prepare_threshold must be a whole number >= 0, or none/false to disable prepared statements "
        f"(PgBouncer in transaction mode), got {value!r}"
    )


def prepare_threshold_for(value: object, *, pgbouncer: bool) -> int | None:
    """``prepare_threshold`` as psycopg gets it: off with ``pgbouncer = true``, which a count
    other than psycopg's default contradicts."""
    threshold = normalize_prepare_threshold(value)
    if not pgbouncer:
        return threshold
    if threshold not in (None, PSYCOPG_PREPARE_THRESHOLD):
        raise ConfigurationError(
            f"prepare_threshold={threshold} contradicts pgbouncer = true: PgBouncer in transaction mode "
            "breaks prepared statements; remove prepare_threshold"
        )
    return None


def prepare_threshold_args(
    driver: str, connect_args: Mapping[str, Any], prepare_threshold: object, *, pgbouncer: bool = False
) -> dict[str, Any]:
    """``connect_args`` for a backend whose URL picks the DB-API ``driver``, with psycopg's
    ``prepare_threshold`` as the option asks: none/false turns server-side prepared statements
    off (PgBouncer in transaction mode), and so does ``pgbouncer = true``. A value in
    ``connect_args`` wins, and is read the same way, so ``connect_args = { prepare_threshold =
    false }`` in TOML works too. Another driver refuses both options, unless left at their
    defaults."""
    args = dict(connect_args)
    if driver == "psycopg":
        value = prepare_threshold_for(args.get("prepare_threshold", prepare_threshold), pgbouncer=pgbouncer)
        if value != PSYCOPG_PREPARE_THRESHOLD or "prepare_threshold" in args:
            args["prepare_threshold"] = value
    elif pgbouncer:
        # asyncpg prepares every statement under names of its own; what it needs behind PgBouncer
        # (unique names, no statement cache) is not set up here.
        raise ConfigurationError(
            f"pgbouncer = true configures the psycopg driver, and this URL uses {driver}; "
            "use a postgresql+psycopg:// URL"
        )
    elif prepare_threshold != PSYCOPG_PREPARE_THRESHOLD:
        raise ConfigurationError(
            f"prepare_threshold is a setting of the psycopg driver, and this URL uses {driver}; "
            "use a postgresql+psycopg:// URL, or remove the option"
        )
    return args
