"""A typed facade over pluggy, so no caller touches ``pm.hook`` and its ``Any``.

Backend hooks are called on one plugin, chosen by the registry; event hooks are
broadcast with each observer isolated, so a broken metrics plugin cannot fail a
transaction. The list of observers is cached per hook because event hooks sit on the
transaction path and a pluggy call costs more than the check.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Literal

import pluggy
from pluggy import HookImpl

from .._contract.errors import BackendLoadError, ConfigurationError
from .._contract.hookspecs import PROJECT_NAME, DatabaseBackendSpec, DatabaseEventSpec

if TYPE_CHECKING:
    from .._contract.health import HealthCheckResult
    from .._contract.options import Option
    from .._contract.protocols import AsyncDatabaseInterface, DatabaseInterface, PoolInfo
    from .._contract.url import DatabaseURL

__all__ = ["OBSERVER_GROUP", "PluginManager", "get_plugin_manager"]

#: Entry point group for observer plugins (metrics, audit) loaded on first use.
OBSERVER_GROUP = "structum_database.plugins"

log = logging.getLogger("structum_lab.plugins.database")


class PluginManager:
    """Registers backend and observer plugins and calls their hooks with types."""

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(PROJECT_NAME)
        self._pm.add_hookspecs(DatabaseBackendSpec)
        self._pm.add_hookspecs(DatabaseEventSpec)
        self._backends: dict[str, object] = {}
        self._observers: dict[str, tuple[Callable[..., object], ...]] = {}
        self._observers_loaded = False
        self._lock = threading.Lock()

    @property
    def pluggy(self) -> pluggy.PluginManager:
        """The underlying pluggy manager, for tracing and advanced use."""
        return self._pm

    # -- registration ----------------------------------------------------------------

    def register_backend(self, name: str, plugin: object, *, distribution: str) -> None:
        """Register a backend plugin; pluggy validates its hook signatures here."""
        with self._lock:
            if name in self._backends:
                return
            try:
                if not self._pm.is_registered(plugin):
                    self._pm.register(plugin, name=f"backend:{name}")
            except pluggy.PluginValidationError as exc:
                raise BackendLoadError(
                    f"backend {name!r} from distribution {distribution!r} does not match the hook specification: {exc}",
                    backend_name=name,
                    distribution=distribution,
                ) from exc
            if self._impl(plugin, "structum_database_connect") is None:
                raise BackendLoadError(
                    f"backend {name!r} from distribution {distribution!r} does not implement "
                    "structum_database_connect(url, options, is_async)",
                    backend_name=name,
                    distribution=distribution,
                )
            self._backends[name] = plugin
            self._observers.clear()

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register an observer plugin (implements event hooks)."""
        with self._lock:
            self._pm.register(plugin, name=name)
            self._observers.clear()

    def unregister(self, plugin: object) -> None:
        with self._lock:
            self._pm.unregister(plugin)
            self._observers.clear()

    def load_observer_entry_points(self) -> None:
        """Load plugins of the ``structum_database.plugins`` group, once."""
        if self._observers_loaded:
            return
        self._observers_loaded = True
        for ep in entry_points(group=OBSERVER_GROUP):
            try:
                self.register(ep.load(), name=f"observer:{ep.name}")
            except Exception:
                log.exception("observer plugin %r (%s) failed to load; continuing without it", ep.name, ep.value)

    # -- backend hooks -----------------------------------------------------------------

    def _impl(self, plugin: object, hook: str) -> HookImpl | None:
        caller: pluggy.HookCaller = getattr(self._pm.hook, hook)
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin:
                return impl
        return None

    def _call_backend(self, name: str, hook: str, kwargs: Mapping[str, Any]) -> Any:
        plugin = self._backends[name]
        impl = self._impl(plugin, hook)
        if impl is None:
            return None
        # pluggy lets an implementation take a subset of the spec's arguments.
        return impl.function(*(kwargs[arg] for arg in impl.argnames))

    def backend_options(self, name: str, *, is_async: bool) -> Mapping[str, Option]:
        result = self._call_backend(name, "structum_database_options", {"is_async": is_async})
        if result is None:
            return {}
        if not isinstance(result, Mapping):
            raise ConfigurationError(
                f"backend {name!r}: structum_database_options(is_async) returned {type(result).__name__}, "
                "expected a mapping of option name to Option"
            )
        return result

    def connect(
        self, name: str, url: DatabaseURL, options: Mapping[str, Any], *, is_async: bool
    ) -> DatabaseInterface | AsyncDatabaseInterface:
        result = self._call_backend(
            name, "structum_database_connect", {"url": url, "options": options, "is_async": is_async}
        )
        if result is None or not hasattr(result, "transaction"):
            raise ConfigurationError(
                f"backend {name!r}: structum_database_connect(url, options, is_async) returned "
                f"{type(result).__name__}, expected a database object with transaction()"
            )
        return result  # type: ignore[no-any-return]

    # -- event hooks -------------------------------------------------------------------

    def _observer_functions(self, hook: str) -> tuple[Callable[..., object], ...]:
        found = self._observers.get(hook)
        if found is None:
            impls = getattr(self._pm.hook, hook).get_hookimpls()
            found = tuple(_bind_observer(impl) for impl in reversed(impls))
            self._observers[hook] = found
        return found

    def has_observers(self, hook: str) -> bool:
        return bool(self._observer_functions(hook))

    def _broadcast(self, hook: str, kwargs: Mapping[str, Any]) -> None:
        for function in self._observer_functions(hook):
            try:
                function(kwargs)
            except Exception:
                log.exception("observer hook %s failed; the database call is not affected", hook)

    def transaction_finished(
        self,
        database: DatabaseInterface | AsyncDatabaseInterface,
        outcome: Literal["commit", "rollback"],
        duration_s: float,
        error: BaseException | None,
    ) -> None:
        self._broadcast(
            "structum_database_transaction_finished",
            {"database": database, "outcome": outcome, "duration_s": duration_s, "error": error},
        )

    def health_checked(self, database: DatabaseInterface | AsyncDatabaseInterface, result: HealthCheckResult) -> None:
        self._broadcast("structum_database_health_checked", {"database": database, "result": result})

    def pool_exhausted(
        self, database: DatabaseInterface | AsyncDatabaseInterface, pool_info: PoolInfo, waited_s: float
    ) -> None:
        self._broadcast(
            "structum_database_pool_exhausted", {"database": database, "pool_info": pool_info, "waited_s": waited_s}
        )


def _bind_observer(impl: HookImpl) -> Callable[[Mapping[str, Any]], object]:
    function, argnames = impl.function, impl.argnames

    def call(kwargs: Mapping[str, Any]) -> object:
        return function(*(kwargs[a] for a in argnames))

    return call


_manager: PluginManager | None = None
_manager_lock = threading.Lock()


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager (created on first use)."""
    global _manager  # noqa: PLW0603 - one manager per process, like pluggy's users do
    if _manager is None:
        with _manager_lock:
            if _manager is None:
                _manager = PluginManager()
    return _manager
