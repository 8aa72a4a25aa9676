"""Opening databases: by URL, by config namespace, or through a backend's own class."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from structum_lab.config import ConfigProvider

from .._contract.errors import ConfigurationError
from .._contract.options import COMMON_OPTIONS, Option, validate_options
from .._contract.protocols import AsyncDatabaseInterface, DatabaseInterface
from .._contract.url import DatabaseURL
from .manager import get_plugin_manager
from .registry import BackendInfo, get_registry
from .settings import Settings, load_settings

__all__ = [
    "ConfiguredReplica",
    "accepted_options",
    "checked_options",
    "class_options",
    "configured_replica",
    "connect",
    "connect_async",
    "from_config",
    "from_config_async",
]


def accepted_options(info: BackendInfo, *, is_async: bool) -> dict[str, Option]:
    """COMMON_OPTIONS plus what the backend declares (the backend is loaded)."""
    info.load()
    extra = get_plugin_manager().backend_options(info.name, is_async=is_async)
    return {**COMMON_OPTIONS, **extra}


def checked_options(namespace: str, provider: ConfigProvider | None = None) -> tuple[BackendInfo, dict[str, Any]]:
    """The backend a config namespace selects and its options, checked exactly as
    :func:`from_config` checks them, without opening the database."""
    settings = load_settings(namespace, provider)
    values = {**settings.values}
    values.setdefault("name", settings.namespace)
    parsed = DatabaseURL.parse(values.get("url"))  # type: ignore[arg-type]
    info = get_registry().select(parsed, values.get("backend"))
    accepted = accepted_options(info, is_async=False)
    checked = validate_options(
        values, accepted, where=f"config namespace {namespace!r}", sources=settings.sources, raw=settings.raw
    )
    return info, checked


_NAMESPACE = re.compile(r"[A-Za-z0-9_]+\Z")


@dataclass(frozen=True, slots=True)
class ConfiguredReplica:
    """A replica named by its config namespace, read and checked as ``from_config()`` reads one."""

    namespace: str
    backend: str
    options: Mapping[str, Any] = field(repr=False)  # its URL may hold a password


def configured_replica(namespace: str, provider: ConfigProvider | None = None) -> ConfiguredReplica:
    info, checked = checked_options(namespace, provider)
    return ConfiguredReplica(namespace, info.name, checked)


def is_namespace(spec: object) -> bool:
    """A replica written as a bare name (``"replica_db"``) is a config namespace, not a URL."""
    return isinstance(spec, str) and _NAMESPACE.match(spec) is not None


def _resolve_replicas(values: dict[str, Any], provider: ConfigProvider | None) -> None:
    # Here, where the provider is known: the database classes never see it.
    specs = values.get("replicas")
    if isinstance(specs, list | tuple):
        values["replicas"] = [configured_replica(s, provider) if is_namespace(s) else s for s in specs]


def _open(
    url: str | DatabaseURL | None,
    backend: str | None,
    options: Mapping[str, Any],
    *,
    is_async: bool,
    where: str,
    settings: Settings | None = None,
) -> DatabaseInterface | AsyncDatabaseInterface:
    if url is None:
        raise ConfigurationError(
            f"{where} needs a database URL, e.g. connect('sqlite:///app.db') or "
            "connect('postgresql://user@127.0.0.1:5432/app')"
        )
    parsed = DatabaseURL.parse(url)
    info = get_registry().select(parsed, backend)
    accepted = accepted_options(info, is_async=is_async)
    values = validate_options(
        options,
        accepted,
        where=where,
        sources=settings.sources if settings else None,
        raw=settings.raw if settings else None,
    )
    values.pop("backend", None)
    values.pop("url", None)
    return get_plugin_manager().connect(info.name, parsed, values, is_async=is_async)


def connect(url: str | DatabaseURL | None = None, *, backend: str | None = None, **options: Any) -> DatabaseInterface:
    """A ready database for ``url``; the backend comes from ``backend`` or the URL scheme.

    >>> db = connect("sqlite:///:memory:")          # doctest: +SKIP
    >>> db = connect("postgresql://app@db/app", backend="sqlalchemy", pool_size=10)  # doctest: +SKIP
    """
    db = _open(url, backend, options, is_async=False, where="connect()")
    return db  # type: ignore[return-value]


def connect_async(
    url: str | DatabaseURL | None = None, *, backend: str | None = None, **options: Any
) -> AsyncDatabaseInterface:
    """The asyncio counterpart of :func:`connect`."""
    db = _open(url, backend, options, is_async=True, where="connect_async()")
    return db  # type: ignore[return-value]


def _from_settings(
    settings: Settings, overrides: Mapping[str, Any], *, is_async: bool, provider: ConfigProvider | None
) -> Any:
    values = {**settings.values, **overrides}
    values.setdefault("name", settings.namespace)
    _resolve_replicas(values, provider)
    return _open(
        values.get("url"),
        values.get("backend"),
        values,
        is_async=is_async,
        where=f"config namespace {settings.namespace!r}",
        settings=settings,
    )


def from_config(
    namespace: str = "database", *, provider: ConfigProvider | None = None, **overrides: Any
) -> DatabaseInterface:
    """Open the database configured under ``namespace``; config picks the backend.

    ``overrides`` win over the configuration (handy in tests).
    """
    db = _from_settings(load_settings(namespace, provider), overrides, is_async=False, provider=provider)
    return db  # type: ignore[no-any-return]


def from_config_async(
    namespace: str = "database", *, provider: ConfigProvider | None = None, **overrides: Any
) -> AsyncDatabaseInterface:
    """The asyncio counterpart of :func:`from_config`."""
    db = _from_settings(load_settings(namespace, provider), overrides, is_async=True, provider=provider)
    return db  # type: ignore[no-any-return]


def class_options(
    backend: str,
    class_name: str,
    namespace: str,
    overrides: Mapping[str, Any],
    *,
    is_async: bool,
    provider: ConfigProvider | None = None,
) -> dict[str, Any]:
    """Validated constructor arguments for ``<Class>.from_config(namespace)``.

    A ``backend`` key naming another backend is an error rather than silently
    ignored: the operator asked for a backend this code path cannot give.
    """
    settings = load_settings(namespace, provider)
    values = {**settings.values, **overrides}
    values.setdefault("name", namespace)
    info = get_registry().get(backend)
    chosen = values.pop("backend", None)
    if chosen and get_registry().get(str(chosen)) is not info:
        raise ConfigurationError(
            f"config namespace {namespace!r} selects backend {chosen!r}, but {class_name}.from_config() "
            f"always uses the {info.name} backend; remove the backend key, or open the database with "
            f"structum_lab.plugins.database.from_config({namespace!r}) to let the configuration choose"
        )
    accepted = accepted_options(info, is_async=is_async)
    checked = validate_options(
        values, accepted, where=f"config namespace {namespace!r}", sources=settings.sources, raw=settings.raw
    )
    _resolve_replicas(checked, provider)
    return checked
