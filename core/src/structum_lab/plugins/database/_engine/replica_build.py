"""From options to the members of a database with replicas: the router's settings, the
primary's URL, and what each replica is opened with. (No I/O: the router opens them.)

A replica given as a URL (or a table with a ``url``) inherits the primary's options, all of
them when it uses the same backend, the common ones otherwise, under its own name
(``<name>/replica<N>``); a replica given as a config namespace is a full database of its own,
configured there. A replica never has replicas of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._config.connect import ConfiguredReplica, configured_replica, is_namespace
from .._config.registry import get_registry
from .._contract.errors import ConfigurationError
from .._contract.options import COMMON_OPTIONS, REPLICA_OPTIONS, validate_options
from .._contract.url import DatabaseURL

__all__ = [
    "ReplicaPlan",
    "RouterPlan",
    "RouterSettings",
    "plan_router",
    "primary_url",
    "replica_plans",
    "router_settings",
    "split_options",
]

_IDENTITY = frozenset({"url", "name", "backend"})


@dataclass(frozen=True, slots=True)
class RouterSettings:
    strategy: str
    max_lag: float | None
    fallback: str
    interval: float
    read_your_writes: str
    window: float
    wait: float
    #: A member whose check has run this long is out of rotation (its server may be silent).
    stuck_after: float


@dataclass(frozen=True, slots=True)
class ReplicaPlan:
    url: DatabaseURL
    backend: str
    options: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RouterPlan:
    """What ``<DatabaseClass>(url, replicas=[...], ...)`` opens: the primary and its replicas."""

    url: DatabaseURL
    options: Mapping[str, Any]
    settings: RouterSettings
    replicas: list[ReplicaPlan]


def plan_router(class_name: str, backend: object, args: Sequence[object], kwargs: Mapping[str, Any]) -> RouterPlan:
    """The arguments of a database class called with ``replicas``, checked and split."""
    where = f"{class_name}()"
    given = dict(kwargs)
    if len(args) > 1:
        raise TypeError(f"{where} takes the URL as its only positional argument")
    url = args[0] if args else given.pop("url", None)
    if not isinstance(url, str | DatabaseURL):
        raise ConfigurationError(f"{where} needs the primary's URL")
    routing, options = split_options(given)
    timeout = float(options.get("health_check_timeout") or 5.0)
    settings = router_settings(routing, where=where, health_check_timeout=timeout)
    parsed = primary_url(url)
    if settings.read_your_writes == "lsn" and parsed.dialect not in ("postgresql", "postgres"):
        raise ConfigurationError(
            f"read_your_writes = 'lsn' follows PostgreSQL's WAL positions; for {parsed.dialect} replicas set "
            "read_your_writes = 'window' (reads go to the primary for a while after a commit) or 'off'"
        )
    name = options.get("name") or parsed.database or parsed.dialect
    plans = replica_plans(routing["replicas"], inherited=options, backend=str(backend), name=name)
    return RouterPlan(parsed, options, settings, plans)


def split_options(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the router's options, the primary's)."""
    router = {k: v for k, v in kwargs.items() if k in REPLICA_OPTIONS}
    primary = {k: v for k, v in kwargs.items() if k not in REPLICA_OPTIONS}
    return router, primary


def router_settings(values: Mapping[str, Any], *, where: str, health_check_timeout: float) -> RouterSettings:
    checked = validate_options(values, {k: COMMON_OPTIONS[k] for k in REPLICA_OPTIONS}, where=where)

    def get(key: str) -> Any:
        return checked.get(key, COMMON_OPTIONS[key].default)

    return RouterSettings(
        strategy=get("replica_strategy"),
        max_lag=get("replica_max_lag"),
        fallback=get("replica_fallback"),
        interval=get("replica_check_interval"),
        read_your_writes=get("read_your_writes"),
        window=get("read_your_writes_window"),
        wait=get("read_your_writes_wait"),
        stuck_after=max(health_check_timeout, 2 * get("replica_check_interval")),
    )


def primary_url(url: str | DatabaseURL) -> DatabaseURL:
    """A multi-host primary URL reaches the server that accepts writes: libpq tries the hosts
    in order and, with ``target_session_attrs=read-write``, skips standbys. Added for psycopg
    (either backend) unless the URL sets ``target_session_attrs`` itself."""
    parsed = DatabaseURL.parse(url)
    psycopg = parsed.dialect in ("postgresql", "postgres") and parsed.driver in (None, "psycopg", "psycopg_async")
    if parsed.hosts and psycopg and "target_session_attrs" not in parsed.query_dict():
        return parsed.with_query("target_session_attrs", "read-write")
    return parsed


def _backend_for(url: DatabaseURL, chosen: object, primary_backend: str) -> str:
    registry = get_registry()
    if chosen is not None:
        return registry.select(url, str(chosen)).name
    try:  # the primary's backend when it serves this URL too, else the one the scheme selects
        return registry.select(url, primary_backend).name
    except ConfigurationError:
        return registry.select(url, None).name


def replica_plans(specs: object, *, inherited: Mapping[str, Any], backend: str, name: str) -> list[ReplicaPlan]:
    if not isinstance(specs, list | tuple):
        raise ConfigurationError(f"replicas must be a list of URLs or config namespaces, got {type(specs).__name__}")
    base = {k: v for k, v in inherited.items() if k not in _IDENTITY and k not in REPLICA_OPTIONS}
    plans: list[ReplicaPlan] = []
    for number, given_spec in enumerate(specs, 1):
        spec = configured_replica(str(given_spec)) if is_namespace(given_spec) else given_spec
        if isinstance(spec, ConfiguredReplica):
            options = dict(spec.options)
            url = DatabaseURL.parse(options.pop("url"))
            options.pop("backend", None)
            chosen_backend = spec.backend
        else:
            if isinstance(spec, Mapping):
                given = dict(spec)
                raw_url = given.pop("url", None)
                if raw_url is None:
                    raise ConfigurationError(f"replica {number} is a table without a 'url'")
            elif isinstance(spec, str | DatabaseURL):
                given, raw_url = {}, spec
            else:
                raise ConfigurationError(
                    f"replica {number} must be a URL, a config namespace or a table of options, "
                    f"got {type(spec).__name__}"
                )
            url = DatabaseURL.parse(raw_url)
            chosen_backend = _backend_for(url, given.pop("backend", None), backend)
            same = chosen_backend == backend
            options = {k: v for k, v in base.items() if same or k in COMMON_OPTIONS}
            options.update(given)
            options.setdefault("name", f"{name}/replica{number}")
        if options.get("replicas"):
            raise ConfigurationError(f"replica {options.get('name', number)!r} cannot have replicas of its own")
        for key in REPLICA_OPTIONS:
            options.pop(key, None)
        plans.append(ReplicaPlan(url, chosen_backend, options))
    return plans
