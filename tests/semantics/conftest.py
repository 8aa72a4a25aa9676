"""Every backend, sync and async, on every database it serves.

``test_conformance_async.py`` runs core's conformance kit (the suite third-party backends
run too, ``structum_lab.plugins.database.testing.conformance``) on every first-party
flavour, one test class per flavour. The other tests here are the first-party flavours'
own, beyond the kit.

The tests here are written once, for asyncio, in ``test_*_async.py``;
``tools/sync_from_async.py`` generates the sync module ``test_*.py`` from each. A test
that asks for ``open_db_async`` runs on every ASYNC_TARGETS
flavour; its generated twin asks for ``open_db`` and runs on every
SYNC_TARGETS flavour. A target is (backend, dialect[+driver]); ``@pytest.mark.dialects(...)``
narrows a test to the targets of those dialects.

``open_db(**options)`` opens a database of the flavour on a fresh schema (PostgreSQL),
database (MariaDB) or file (SQLite), so semantics are observed on real servers, and
shuts down every database it opened afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from _flavours import ASYNC_TARGETS, SYNC_TARGETS, Opener, server_url

from structum_lab.plugins.database import connect, connect_async

ASYNC_OPENERS = {"open_db_async"}
SYNC_OPENERS = {"open_db"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dialects(*names): run only on the targets of these dialects")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = set(metafunc.fixturenames)
    if names & ASYNC_OPENERS:
        targets = ASYNC_TARGETS
    elif names & SYNC_OPENERS:
        targets = SYNC_TARGETS
    else:
        return
    marker = metafunc.definition.get_closest_marker("dialects")
    if marker is not None:
        targets = [t for t in targets if t[1].partition("+")[0] in marker.args]
    assert targets, f"{metafunc.definition.nodeid}: no target of the dialects {marker and marker.args}"
    metafunc.parametrize("target", targets, ids=["-".join(t) for t in targets])


@pytest.fixture
def open_db(target: tuple[str, str], request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    opener = Opener(target, connect, server_url(request, tmp_path, target[1]))
    yield opener
    for db in opener.opened:
        db.shutdown()


@pytest.fixture
async def open_db_async(
    target: tuple[str, str], request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Opener]:
    opener = Opener(target, connect_async, server_url(request, tmp_path, target[1]))
    yield opener
    for db in opener.opened:
        await db.shutdown()
