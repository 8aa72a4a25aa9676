"""The observers of one database, and the events the engine sends them.

Each event kind has a tuple of observer calls, empty when nobody listens: the engine
tests it (one attribute read) before timing or building anything, so a database
without observers pays nothing measurable. The tuples hold the plugins registered for
every database (``get_plugin_manager().register``) and the ones its ``observers``
option named, and are rebuilt when a plugin is registered or removed.

An observer that raises is logged once, with its traceback, and disabled for this
database; the statement, transaction or checkout it observed goes on untouched.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, Literal

from .._contract.errors import ConfigurationError, DatabaseError
from .._contract.events import ConnectionEvent, StatementEvent, TransactionEvent
from .._contract.protocols import Params

if TYPE_CHECKING:
    from pluggy import HookImpl

    from .._config.manager import PluginManager

__all__ = ["HOOKS", "Observers", "operation_of", "resolve_observers"]

log = logging.getLogger("structum_lab.plugins.database")

#: Event kind -> hook name.
HOOKS: Final = {
    "statement": "structum_database_statement_executed",
    "transaction": "structum_database_transaction_event",
    "checkout": "structum_database_connection_checked_out",
    "returned": "structum_database_connection_returned",
    "connection": "structum_database_connection_event",
    "finished": "structum_database_transaction_finished",
    "health": "structum_database_health_checked",
    "exhausted": "structum_database_pool_exhausted",
}

StatementKind = Literal["execute", "executemany", "pipelined", "stream", "copy", "control"]

_Call = tuple[object, Callable[..., object], tuple[str, ...]]  # (plugin, function, argument names)

_FIRST_WORD: Final = re.compile(r"(?:\s+|--[^\n]*\n?|/\*.*?\*/|\()*([A-Za-z]+)", re.S)


@lru_cache(maxsize=2048)
def operation_of(sql: str) -> str:
    """The statement's first keyword in capitals (``SELECT``, ``INSERT``, ``WITH``...), past
    blanks, comments and parentheses; ``""`` when there is none."""
    m = _FIRST_WORD.match(sql)
    return m.group(1).upper() if m else ""


def resolve_observers(
    manager: PluginManager, names: Sequence[object] | None, options: Mapping[str, object] | None
) -> list[object]:
    """The plugins the ``observers`` option names, made with their ``observer_options``."""
    chosen = [str(name).strip() for name in names or () if str(name).strip()]
    settings = dict(options or {})
    unused = sorted(set(settings) - set(chosen))
    if unused:
        raise ConfigurationError(
            f"observer_options has settings for {', '.join(map(repr, unused))}, which observers does not enable "
            f"(observers = {chosen!r}); add it to observers or remove its settings"
        )
    plugins: list[object] = []
    for name in dict.fromkeys(chosen):
        given = settings.get(name)
        if given is not None and not isinstance(given, Mapping):
            raise ConfigurationError(f"observer_options.{name} must be a table of settings, got {given!r}")
        plugins.append(manager.named_observer(name, given))
    return plugins


class Observers:
    """Per event kind, the calls to make; ``emit_*`` make them, each isolated."""

    __slots__ = (
        "__weakref__",
        "_disabled",
        "_lock",
        "_manager",
        "_named",
        "_scrub",
        "checkout",
        "connection",
        "database",
        "exhausted",
        "finished",
        "health",
        "returned",
        "statement",
        "transaction",
    )

    def __init__(
        self,
        manager: PluginManager,
        database: object,
        named: Sequence[object] = (),
        scrub: Callable[[str], str] | None = None,
    ) -> None:
        self._manager = manager
        self.database = database
        self._scrub = scrub
        self._named: tuple[object, ...] = tuple(named)
        self._disabled: set[int] = set()
        self._lock = threading.Lock()
        self.statement: tuple[_Call, ...] = ()
        self.transaction: tuple[_Call, ...] = ()
        self.checkout: tuple[_Call, ...] = ()
        self.returned: tuple[_Call, ...] = ()
        self.connection: tuple[_Call, ...] = ()
        self.finished: tuple[_Call, ...] = ()
        self.health: tuple[_Call, ...] = ()
        self.exhausted: tuple[_Call, ...] = ()
        self.refresh()
        manager.watch(self)

    def refresh(self) -> None:
        """Rebuild the call tuples (a plugin was registered, removed or disabled)."""
        with self._lock:
            for kind, hook in HOOKS.items():
                impls: list[HookImpl] = [*self._manager.event_impls(hook)]
                for plugin in self._named:
                    impls.extend(self._manager.plugin_impls(plugin, hook))
                calls = tuple(
                    (impl.plugin, impl.function, tuple(impl.argnames))
                    for impl in impls
                    if id(impl.plugin) not in self._disabled
                )
                setattr(self, kind, calls)

    def _call(self, calls: tuple[_Call, ...], kwargs: Mapping[str, Any]) -> None:
        for plugin, function, argnames in calls:
            try:
                function(*[kwargs[name] for name in argnames])
            except Exception:
                self._disable(plugin, function)

    def _disable(self, plugin: object, function: Callable[..., object]) -> None:
        with self._lock:
            if id(plugin) in self._disabled:
                return
            self._disabled.add(id(plugin))
        name = getattr(function, "__qualname__", repr(function))
        log.exception(
            "observer %s raised and is disabled for database %s; the database call is not affected",
            name,
            getattr(self.database, "name", "?"),
        )
        self.refresh()

    # -- events ------------------------------------------------------------------------

    def emit_statement(
        self,
        sql: str,
        duration_s: float,
        *,
        rowcount: int = -1,
        error: BaseException | None = None,
        params: Params = None,
        batch: int = 1,
        in_transaction: bool = True,
        operation: str | None = None,
        kind: StatementKind = "execute",
    ) -> None:
        if self._scrub is not None:
            sql = self._scrub(sql)
        event = StatementEvent(
            sql=sql,
            operation=operation_of(sql) if operation is None else operation,
            duration_s=duration_s,
            rowcount=rowcount,
            error=error,
            sqlstate=error.sqlstate if isinstance(error, DatabaseError) else None,
            params=params,
            batch=batch,
            in_transaction=in_transaction,
            kind=kind,
        )
        self._call(self.statement, {"database": self.database, "event": event})

    def emit_transaction(self, event: TransactionEvent) -> None:
        self._call(self.transaction, {"database": self.database, "event": event})

    def emit_checkout(self, wait_s: float) -> None:
        self._call(self.checkout, {"database": self.database, "wait_s": wait_s})

    def emit_returned(self, use_s: float) -> None:
        self._call(self.returned, {"database": self.database, "use_s": use_s})

    def emit_connection(self, event: ConnectionEvent) -> None:
        self._call(self.connection, {"database": self.database, "event": event})

    def emit_finished(self, outcome: str, duration_s: float, error: BaseException | None) -> None:
        kwargs = {"database": self.database, "outcome": outcome, "duration_s": duration_s, "error": error}
        self._call(self.finished, kwargs)

    def emit_health(self, result: object) -> None:
        self._call(self.health, {"database": self.database, "result": result})

    def emit_exhausted(self, pool_info: object, waited_s: float) -> None:
        self._call(self.exhausted, {"database": self.database, "pool_info": pool_info, "waited_s": waited_s})
