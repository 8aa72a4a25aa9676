"""A typed facade over pluggy, so no caller touches ``pm.hook`` and its ``Any``.

Backend hooks are called on one plugin, chosen by the registry. Event hooks are not
called through pluggy here: each database's engine keeps its observers' functions per
event (``_engine/observe.py``), because they sit on the statement path; this manager
tells those engines when a plugin comes or goes, and loads the observers a database's
``observers`` option names from the ``structum_database.plugins`` entry point group.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

import pluggy
from pluggy import HookImpl

from .._contract.errors import BackendLoadError, ConfigurationError
from .._contract.hookspecs import PROJECT_NAME, DatabaseBackendSpec, DatabaseEventSpec

if TYPE_CHECKING:
    from .._contract.options import Option
    from .._contract.protocols import AsyncDatabaseInterface, DatabaseInterface
    from .._contract.url import DatabaseURL

__all__ = ["OBSERVER_GROUP", "PluginManager", "get_plugin_manager"]

#: Entry point group for observer plugins (metrics, audit) loaded on first use.
OBSERVER_GROUP = "structum_database.plugins"

log = logging.getLogger("structum_lab.plugins.database")


class _Watcher(Protocol):
    def refresh(self) -> None: ...


class PluginManager:
    """Registers backend and observer plugins and calls their hooks with types."""

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(PROJECT_NAME)
        self._pm.add_hookspecs(DatabaseBackendSpec)
        self._pm.add_hookspecs(DatabaseEventSpec)
        self._backends: dict[str, object] = {}
        self._watchers: weakref.WeakSet[_Watcher] = weakref.WeakSet()
        self._named: dict[tuple[str, str], object] = {}  # (entry point name, options repr) -> plugin
        self._checked: dict[int, pluggy.PluginManager] = {}  # named plugins, validated, by id
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

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register an observer plugin (implements event hooks) for every database."""
        with self._lock:
            self._pm.register(plugin, name=name)
        self._notify()

    def unregister(self, plugin: object) -> None:
        with self._lock:
            self._pm.unregister(plugin)
        self._notify()

    def watch(self, watcher: _Watcher) -> None:
        """Call ``watcher.refresh()`` whenever an observer plugin is registered or removed."""
        with self._lock:
            self._watchers.add(watcher)

    def _notify(self) -> None:
        with self._lock:
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher.refresh()

    # -- observers ---------------------------------------------------------------------

    def event_impls(self, hook: str) -> list[HookImpl]:
        """The implementations of an event hook by plugins registered for every database,
        in pluggy's calling order."""
        return list(reversed(getattr(self._pm.hook, hook).get_hookimpls()))

    def plugin_impls(self, plugin: object, hook: str) -> list[HookImpl]:
        """The implementations of an event hook by one named observer plugin."""
        checked = self._checked.get(id(plugin))
        if checked is None:
            return []
        return list(reversed(getattr(checked.hook, hook).get_hookimpls()))

    def observer_names(self) -> list[str]:
        """The observers installed (entry points of the ``structum_database.plugins`` group)."""
        return sorted({ep.name for ep in entry_points(group=OBSERVER_GROUP)})

    def named_observer(self, name: str, options: Mapping[str, Any] | None = None) -> object:
        """The observer plugin an ``observers`` entry names, made with its ``observer_options``.

        The entry point is a class (called with the options as keywords) or a module or
        object with the hook functions (which then takes no options). One plugin per name
        and options, shared by the databases that name it.
        """
        options = dict(options or {})
        key = (name, repr(sorted(options.items())))
        with self._lock:
            found = self._named.get(key)
        if found is not None:
            return found
        matches = [ep for ep in entry_points(group=OBSERVER_GROUP) if ep.name == name]
        if not matches:
            installed = ", ".join(self.observer_names()) or "none"
            raise ConfigurationError(
                f"observers: no observer named {name!r} is installed (installed: {installed}). The first-party "
                "ones are 'logging', 'prometheus' (extra [prometheus]) and 'opentelemetry' (extra [opentelemetry])"
            )
        try:
            target = matches[0].load()
        except ConfigurationError:
            raise
        except Exception as exc:
            raise ConfigurationError(
                f"observers: the observer {name!r} ({matches[0].value}) failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        if isinstance(target, type):
            try:
                plugin = target(**options)
            except TypeError as exc:
                raise ConfigurationError(f"observer_options for {name!r}: {exc}") from None
        elif options:
            raise ConfigurationError(f"observer_options for {name!r}: this observer takes no options")
        else:
            plugin = target
        checked = pluggy.PluginManager(PROJECT_NAME)
        checked.add_hookspecs(DatabaseEventSpec)
        try:
            checked.register(plugin, name=f"observer:{name}")
        except pluggy.PluginValidationError as exc:
            raise ConfigurationError(f"observers: the observer {name!r} does not fit the event hooks: {exc}") from exc
        with self._lock:
            self._named.setdefault(key, plugin)
            self._checked[id(plugin)] = checked
            return self._named[key]

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
