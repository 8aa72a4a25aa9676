"""Database options: the declarative table of what each backend accepts.

Config files and environment variables deliver untyped or TOML-typed values; this
module is the single place that checks names (with a "did you mean" for typos) and
casts values to the declared type, so every backend reports bad input the same way.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypedDict

from .errors import ConfigurationError
from .url import DatabaseURL

__all__ = ["COMMON_OPTIONS", "REPLICA_OPTIONS", "Option", "ReplicaOptions", "validate_options"]

_TRUE: Final = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE: Final = frozenset({"0", "false", "no", "off", "n", "f"})


@dataclass(frozen=True, slots=True)
class Option:
    """One accepted option: its type, default and meaning.

    ``kind`` is one of ``"str"``, ``"int"``, ``"float"``, ``"bool"``, ``"dict"``,
    ``"list"``, ``"any"``. ``minimum`` bounds numbers; ``nullable`` accepts ``None``
    (``pool_recycle = -1`` style sentinels are the backend's business).
    """

    name: str
    kind: str
    default: Any = None
    doc: str = ""
    minimum: float | None = None
    choices: tuple[str, ...] | None = None
    nullable: bool = True


def _opt(name: str, kind: str, default: Any, doc: str, **kw: Any) -> tuple[str, Option]:
    return name, Option(name, kind, default, doc, **kw)


#: Options every backend accepts, with the same meaning everywhere, so that one
#: config file works whichever backend it selects.
COMMON_OPTIONS: Final[Mapping[str, Option]] = dict(
    [
        _opt("url", "str", None, "Database URL, e.g. postgresql://user:password@host:5432/db", nullable=False),
        _opt("backend", "str", None, "Backend name (sqlalchemy, psycopg, ...); overrides the URL scheme"),
        _opt("name", "str", None, "Name shown in logs, health output and get_database(name)"),
        _opt(
            "echo", "bool", False, "Log every SQL statement (logger structum_lab.plugins.database.sql)", nullable=False
        ),
        _opt("pool_size", "int", 5, "Connections kept open in the pool", minimum=1, nullable=False),
        _opt(
            "max_overflow", "int", 10, "Extra connections opened under load above pool_size", minimum=0, nullable=False
        ),
        _opt(
            "pool_timeout",
            "float",
            30.0,
            "Seconds to wait for a free connection before PoolTimeoutError",
            minimum=0,
            nullable=False,
        ),
        _opt("pool_recycle", "float", None, "Replace connections older than this many seconds"),
        _opt("pool_pre_ping", "bool", True, "Check a connection before handing it out", nullable=False),
        _opt("connect_timeout", "float", 10.0, "Seconds allowed to open a connection", minimum=0),
        _opt("statement_timeout", "float", None, "Server-side limit for one statement, in seconds", minimum=0),
        _opt(
            "statement_deadline",
            "float",
            None,
            "Client-side limit on waiting for the server in one round trip, in seconds "
            "(default: statement_timeout + 2, else 300; 0 disables)",
            minimum=0,
        ),
        _opt("health_check_timeout", "float", 5.0, "Deadline of health_check(), in seconds", minimum=0, nullable=False),
        _opt(
            "health_degraded_ms", "float", 1000.0, "Latency above which health is DEGRADED", minimum=0, nullable=False
        ),
        _opt("connect_args", "dict", None, "Extra keyword arguments for the driver's connect()"),
        _opt(
            "strict_params",
            "bool",
            False,
            "Refuse parameter mappings with names the SQL does not use (by default they are ignored)",
            nullable=False,
        ),
        _opt(
            "observers",
            "list",
            None,
            "Observers of this database: logging, prometheus, opentelemetry, or any installed "
            "structum_database.plugins entry point (docs/observability.md)",
        ),
        _opt("observer_options", "dict", None, "Settings per observer, e.g. { logging = { slow_ms = 200 } }"),
        # -- scale-out (docs/scale-out.md) --
        _opt("replicas", "list", None, "Read replicas: URLs, config namespaces or tables of options"),
        _opt(
            "replica_strategy",
            "str",
            "round_robin",
            "How readonly transactions pick a replica: round_robin or latency",
            choices=("round_robin", "latency"),
            nullable=False,
        ),
        _opt(
            "replica_max_lag",
            "float",
            30.0,
            "A replica further behind than this many seconds leaves the rotation (none: no limit)",
            minimum=0,
        ),
        _opt(
            "replica_fallback",
            "str",
            "primary",
            "With no replica in rotation, reads go to the primary or raise ConnectionFailedError",
            choices=("primary", "error"),
            nullable=False,
        ),
        _opt(
            "replica_check_interval",
            "float",
            1.0,
            "Seconds between checks of each member's health, lag and role",
            minimum=0.05,
            nullable=False,
        ),
        _opt(
            "read_your_writes",
            "str",
            "lsn",
            "After a commit, reads of the same thread or task see it: off, lsn (replayed on the replica), "
            "or window (the primary serves reads for read_your_writes_window seconds)",
            choices=("off", "lsn", "window"),
            nullable=False,
        ),
        _opt(
            "read_your_writes_window",
            "float",
            2.0,
            "read_your_writes = window: seconds after a commit during which reads go to the primary",
            minimum=0,
            nullable=False,
        ),
        _opt(
            "read_your_writes_wait",
            "float",
            0.0,
            "Seconds a read may wait for a replica to replay the commit it must see before the primary serves it",
            minimum=0,
            nullable=False,
        ),
        _opt(
            "pgbouncer",
            "bool",
            False,
            "Connections go through PgBouncer in transaction mode: no prepared statements, session state refused",
            nullable=False,
        ),
    ]
)

#: The options the replica router consumes; a database without replicas ignores them.
REPLICA_OPTIONS: Final = frozenset(
    {
        "replicas",
        "replica_strategy",
        "replica_max_lag",
        "replica_fallback",
        "replica_check_interval",
        "read_your_writes",
        "read_your_writes_window",
        "read_your_writes_wait",
    }
)


class ReplicaOptions(TypedDict, total=False):
    """The scale-out keywords every database class accepts (``**replication`` in its signature)."""

    replicas: Sequence[str | DatabaseURL | Mapping[str, Any]] | None
    replica_strategy: Literal["round_robin", "latency"]
    replica_max_lag: float | None
    replica_fallback: Literal["primary", "error"]
    replica_check_interval: float
    read_your_writes: Literal["off", "lsn", "window"]
    read_your_writes_window: float
    read_your_writes_wait: float


def _cast(option: Option, value: Any, raw: str | None) -> Any:
    kind = option.kind
    if value is None:
        if option.nullable:
            return None
        raise ValueError("must not be empty")
    if kind == "any":
        return value
    if kind == "str":
        if raw is not None:
            value = raw
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if option.choices is None:
            return value
        chosen = value.strip().lower()
        if chosen in option.choices:
            return chosen
        raise ValueError(f"must be one of {', '.join(repr(c) for c in option.choices)}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(raw if raw is not None else value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError("must be true or false")
    if kind == "int":
        if isinstance(value, bool):
            raise ValueError("must be an integer")
        if isinstance(value, int):
            result: float = value
        elif isinstance(value, float) and value.is_integer():
            result = int(value)
        elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            result = int(value.strip())
        else:
            raise ValueError("must be an integer")
    elif kind == "float":
        if isinstance(value, bool):
            raise ValueError("must be a number")
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise ValueError("must be a number (seconds)") from None
        if math.isnan(result):
            raise ValueError("must be a number (seconds)")
    elif kind == "dict":
        if isinstance(value, Mapping):
            return dict(value)
        raise ValueError("must be a table, e.g. { connect_timeout = 10 }")
    elif kind == "list":
        if isinstance(value, list | tuple):
            return list(value)
        if isinstance(value, str):  # an environment variable: "a, b"
            return [part.strip() for part in value.split(",") if part.strip()]
        raise ValueError("must be a list")
    else:  # pragma: no cover - a backend declared an unknown kind
        raise ValueError(f"has unknown kind {kind!r}")
    if option.minimum is not None and result < option.minimum:
        raise ValueError(f"must be >= {option.minimum:g}")
    return result


def validate_options(
    values: Mapping[str, Any],
    accepted: Mapping[str, Option],
    *,
    where: str,
    sources: Mapping[str, str] | None = None,
    raw: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Check names and cast values; every problem becomes one ConfigurationError.

    ``where`` names the origin for messages ("namespace 'database'", "connect()");
    ``sources`` maps a key to where its value came from (file, env var); ``raw`` maps
    a key to the exact text of an environment variable, so strings stay strings.
    """
    problems: list[str] = []
    result: dict[str, Any] = {}
    for key, value in values.items():
        option = accepted.get(key)
        origin = f" (from {sources[key]})" if sources and key in sources else ""
        if option is None:
            close = difflib.get_close_matches(key, list(accepted), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; accepted: {', '.join(sorted(accepted))}"
            problems.append(f"unknown option {key!r}{origin}{hint}")
            continue
        try:
            result[key] = _cast(option, value, raw.get(key) if raw else None)
        except ValueError as exc:
            # Only numbers and flags are echoed back: other values may carry secrets.
            shown = (
                f"{value!r} ({type(value).__name__})"
                if option.kind in {"int", "float", "bool"}
                else "a " + type(value).__name__
            )
            problems.append(f"option {key!r}{origin} {exc}, got {shown}")
    if problems:
        raise ConfigurationError(f"invalid database options in {where}: " + "; ".join(problems))
    return result
