"""Core's conformance kit on every first-party flavour: one test class per flavour.

The kit (``structum_lab.plugins.database.testing.conformance``) is the suite a third-party
backend runs too; here each flavour of ASYNC_TARGETS (the generated sync module: of
SYNC_TARGETS) gets a class with the declarations of ``_flavours.declarations`` and the
error promises of ``_flavours.FirstParty``.
"""

from __future__ import annotations

import pytest
from _flavours import ASYNC_TARGETS, SYNC_TARGETS, FirstParty, declarations

from structum_lab.plugins.database import ParameterError
from structum_lab.plugins.database.kit import ASYNC
from structum_lab.plugins.database.testing.conformance import AsyncConformanceTests, AsyncKitDatabase


class AsyncFirstPartyFlavour(FirstParty, AsyncConformanceTests):
    async def settle_pool(self, db: AsyncKitDatabase) -> None:
        if self.backend == "psycopg":
            info = db.get_pool_info()
            assert info["min_size"] == info["size"]  # psycopg_pool's min_size is the pool_size
            await db.open()
            await db.pool.wait(5)  # type: ignore[attr-defined]


class AsyncAsyncpgFlavour(AsyncFirstPartyFlavour):
    """SQLAlchemy on asyncpg: one known gap, marked where the kit found it."""

    @pytest.mark.xfail(
        raises=ParameterError,
        strict=True,
        reason="the SQLAlchemy backend declares read_uncommitted on postgresql+asyncpg, but SQLAlchemy's asyncpg "
        "dialect refuses 'READ UNCOMMITTED' (PostgreSQL runs it as READ COMMITTED)",
    )
    async def test_every_declared_isolation_level_runs_and_does_not_stick(self, db: AsyncKitDatabase) -> None:
        await super().test_every_declared_isolation_level_runs_and_does_not_stick(db)


if ASYNC:  # ASYNC  # noqa: SIM108 - the sync module keeps only the else branch
    TARGETS = ASYNC_TARGETS
else:
    TARGETS = SYNC_TARGETS

for _backend, _scheme in TARGETS:
    _name = "Test" + "".join(part.capitalize() for part in (_backend, *_scheme.split("+")))
    _base = AsyncAsyncpgFlavour if _scheme.endswith("+asyncpg") else AsyncFirstPartyFlavour
    globals()[_name] = type(_name, (_base,), declarations(_backend, _scheme))
