"""Registration and selection through the registry, the contract version, and options
checked as ``connect()`` checks them (docs/architecture.md, "Discovery and selection")."""

from __future__ import annotations

import pytest

from ..._config.connect import connect, connect_async
from ..._config.registry import available_backends, get_registry
from ..._contract.errors import ConfigurationError
from ..._contract.features import Features
from ..._contract.protocols import AsyncDatabaseInterface
from ..._contract.url import DatabaseURL
from ..._contract.version import CONTRACT_ATTRIBUTE, check_contract
from ..._engine.flavour import ASYNC
from .base_async import AsyncKitBase

__all__ = ["AsyncRegistryTests"]

#: Every common option at a value other than its default (connect_args and echo are left out:
#: the first is the driver's own, the second prints every statement).
_COMMON = {
    "name": "kit",
    "pool_size": 2,
    "max_overflow": 1,
    "pool_timeout": 9.0,
    "pool_recycle": 600.0,
    "pool_pre_ping": False,
    "connect_timeout": 7.0,
    "statement_timeout": 30.0,
    "statement_deadline": 40.0,
    "health_check_timeout": 4.0,
    "health_degraded_ms": 900.0,
    "strict_params": True,
}


def _open(url: str, backend: str | None = None, **options: object) -> AsyncDatabaseInterface:
    """A database through the registry, whatever factory the test class uses."""
    if ASYNC:  # ASYNC
        return connect_async(url, backend=backend, **options)
    else:
        return connect(url, backend=backend, **options)  # type: ignore[return-value]


class AsyncRegistryTests(AsyncKitBase):
    """The backend's entry points, its contract version, selection by name and scheme, options."""

    async def test_backend_is_registered_and_declares_its_contract(self) -> None:
        info = get_registry().get(self.backend)
        assert self.backend in (info.name, *info.aliases)
        assert info in available_backends()
        assert info.schemes, "declare the URL schemes in the structum_database.schemes entry point group"
        plugin = info.load()
        declared = getattr(plugin, CONTRACT_ATTRIBUTE, None)
        assert declared is not None, f"the plugin module should declare {CONTRACT_ATTRIBUTE} = '<major>.<minor>'"
        assert check_contract(declared) is None  # neither another major nor a newer minor

    async def test_the_url_and_the_backend_name_select_the_backend(self, database_url: str) -> None:
        parsed = DatabaseURL.parse(database_url)
        registry = get_registry()
        info = registry.get(self.backend)
        assert info.accepts(parsed.scheme) is not None, f"{self.backend} does not claim {parsed.scheme}://"
        assert registry.select(parsed, self.backend) is info
        assert registry.select(parsed, self.backend.upper()) is info  # names are case-insensitive
        if self.scheme_selects_backend:
            assert registry.select(parsed) is info
        db = _open(database_url, self.backend)
        try:
            assert db.backend == self.backend
            assert isinstance(getattr(db, "features", None), Features)
            if ASYNC:  # ASYNC
                assert getattr(db, "is_async", True) is True
            else:
                assert getattr(db, "is_async", False) is False
        finally:
            await db.shutdown()

    async def test_options_are_checked_as_connect_checks_them(self, database_url: str) -> None:
        with pytest.raises(ConfigurationError, match="option 'pool_size' must be >= 1"):
            _open(database_url, self.backend, pool_size=0)
        with pytest.raises(ConfigurationError, match="did you mean 'pool_timeout'"):
            _open(database_url, self.backend, pool_timout=1)

    async def test_every_common_option_is_accepted(self, database_url: str) -> None:
        db = _open(database_url, self.backend, **_COMMON)
        try:
            assert db.name == "kit"
            info = db.get_pool_info()
            assert (info["size"], info["max_size"]) == (2, 3)
            async with db.transaction() as conn:
                assert await (await conn.execute("SELECT :one AS one", {"one": "1"})).scalar() == "1"
        finally:
            await db.shutdown()
