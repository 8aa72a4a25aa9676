"""What every backend's database class shares: identity, masking, config, events.

Backends subclass :class:`DatabaseBase` and keep only driver-specific code; naming,
secret scrubbing, ``from_config``, error translation and observer events are here
once, so they behave the same whichever backend an operator selects.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self

from structum_lab.config import ConfigProvider

from ._connect import class_options
from ._driver_errors import translate_error
from ._errors import DatabaseError
from ._fork import FORK
from ._leaks import ensure_reaper
from ._manager import get_plugin_manager
from ._secrets import CORE_LOGGERS, Secrets, collect_secrets, protect_logs
from ._url import DatabaseURL

__all__ = ["DatabaseBase"]

_TX_HOOK = "structum_database_transaction_finished"


class DatabaseBase:
    """Base of the backend database classes (not a public extension point by itself:
    third-party backends may use it, or implement the Protocols directly)."""

    #: Registry name of the backend that owns the subclass.
    backend_name: ClassVar[str] = ""
    #: True for the asyncio classes.
    is_async: ClassVar[bool] = False

    _url: DatabaseURL
    _name: str
    _secrets: Secrets
    health_check_timeout: float
    health_degraded_ms: float

    def _setup_base(
        self,
        url: str | DatabaseURL,
        *,
        name: str | None,
        connect_args: Mapping[str, Any] | None,
        health_check_timeout: float,
        health_degraded_ms: float,
    ) -> DatabaseURL:
        parsed = DatabaseURL.parse(url)
        self._url = parsed
        self._name = name or parsed.database or parsed.dialect
        self._secrets = Secrets([*parsed.secrets(), *collect_secrets(connect_args)])
        protect_logs(self._secrets, CORE_LOGGERS)  # the backend adds its drivers' loggers
        self.health_check_timeout = float(health_check_timeout)
        self.health_degraded_ms = float(health_degraded_ms)
        self._plugins = get_plugin_manager()
        self._plugins.load_observer_entry_points()
        ensure_reaper()  # returns connections that are garbage-collected without close()
        self._fork_epoch = FORK.epoch  # the pool about to be built belongs to this process
        return parsed

    # -- identity ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The name used in logs, health output and ``get_database(name)``."""
        return self._name

    @property
    def backend(self) -> str:
        return self.backend_name

    @property
    def url(self) -> str:
        """The URL with every secret masked."""
        return self._url.render()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self._name!r} url={self._url.render()!r}>"

    # -- configuration -----------------------------------------------------------------

    @classmethod
    def from_config(
        cls, namespace: str = "database", *, provider: ConfigProvider | None = None, **overrides: Any
    ) -> Self:
        """Build from the config namespace (``config/app/<namespace>.toml``, secrets, env).

        ``overrides`` win over the configuration.
        """
        options = class_options(
            cls.backend_name, cls.__name__, namespace, overrides, is_async=cls.is_async, provider=provider
        )
        return cls(**options)

    # -- shared helpers for subclasses -------------------------------------------------

    def _error(
        self, exc: BaseException, *, connecting: bool = False, lost: bool = False, context: str = ""
    ) -> DatabaseError:
        return translate_error(
            exc, backend=self.backend_name, secrets=self._secrets, connecting=connecting, lost=lost, context=context
        )

    def _health_details(self) -> dict[str, Any]:
        return {"backend": self.backend_name, "database": self._name, "pool": dict(self.get_pool_info())}

    def get_pool_info(self) -> Mapping[str, Any]:  # pragma: no cover - every backend overrides
        raise NotImplementedError

    def _observed(self) -> bool:
        return self._plugins.has_observers(_TX_HOOK)

    def _transaction_finished(
        self, outcome: Literal["commit", "rollback"], started: float, error: BaseException | None
    ) -> None:
        self._plugins.transaction_finished(self, outcome, time.perf_counter() - started, error)  # type: ignore[arg-type]
