"""What a backend package needs to stay cheap to import: lazy exports and a lazy connect hook.

The registry imports a backend's package to reach its plugin module; the driver (and
SQLAlchemy or psycopg) must load only when a database is created.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any, cast

from .._contract.hookspecs import hookimpl
from .._contract.options import Option
from .._contract.protocols import AsyncDatabaseInterface, DatabaseInterface
from .._contract.url import DatabaseURL

__all__ = ["backend_hooks", "lazy_exports", "open_database"]


def lazy_exports(package: str, where: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: each name in ``where`` is imported from
    its (relative) module on first use, then kept in the package."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(where)

    return __getattr__, __dir__


def open_database(
    package: str, name: str, url: DatabaseURL, options: Mapping[str, Any], *, is_async: bool
) -> DatabaseInterface | AsyncDatabaseInterface:
    """``structum_database_connect`` for a backend whose package exports ``name`` and ``Async<name>``."""
    cls = getattr(importlib.import_module(package), f"Async{name}" if is_async else name)
    return cast("DatabaseInterface | AsyncDatabaseInterface", cls(url, **options))


def backend_hooks(
    package: str, name: str, accepted: Mapping[str, Option]
) -> tuple[Callable[[bool], Mapping[str, Option]], Callable[..., DatabaseInterface | AsyncDatabaseInterface]]:
    """The two backend hooks of a backend whose package exports ``name`` and ``Async<name>`` and
    which accepts ``accepted`` beyond ``COMMON_OPTIONS``. In its plugin module::

        structum_database_options, structum_database_connect = backend_hooks(__package__, "MyDatabase", OPTIONS)
    """

    @hookimpl
    def structum_database_options(is_async: bool) -> Mapping[str, Option]:
        return accepted

    @hookimpl
    def structum_database_connect(
        url: DatabaseURL, options: Mapping[str, Any], is_async: bool
    ) -> DatabaseInterface | AsyncDatabaseInterface:
        return open_database(package, name, url, options, is_async=is_async)

    return structum_database_options, structum_database_connect
