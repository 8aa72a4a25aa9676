"""Core's conformance kit on every first-party flavour: one test class per flavour.

The kit (``structum_lab.plugins.database.testing.conformance``) is the suite a third-party
backend runs too; here each flavour of ASYNC_TARGETS (the generated sync module: of
SYNC_TARGETS) gets a class with the declarations of ``_flavours.declarations`` and the
error promises of ``_flavours.FirstParty``.
"""

from __future__ import annotations

from _flavours import ASYNC_TARGETS, SYNC_TARGETS, FirstParty, declarations

from structum_lab.plugins.database.kit import ASYNC
from structum_lab.plugins.database.testing.conformance import AsyncConformanceTests, AsyncKitDatabase


class AsyncFirstPartyFlavour(FirstParty, AsyncConformanceTests):
    async def settle_pool(self, db: AsyncKitDatabase) -> None:
        if self.backend == "psycopg":
            info = db.get_pool_info()
            assert info["min_size"] == info["size"]  # psycopg_pool's min_size is the pool_size
            await db.open()
            await db.pool.wait(5)  # type: ignore[attr-defined]


if ASYNC:  # ASYNC  # noqa: SIM108 - the sync module keeps only the else branch
    TARGETS = ASYNC_TARGETS
else:
    TARGETS = SYNC_TARGETS

for _backend, _scheme in TARGETS:
    _name = "Test" + "".join(part.capitalize() for part in (_backend, *_scheme.split("+")))
    globals()[_name] = type(_name, (AsyncFirstPartyFlavour,), declarations(_backend, _scheme))
