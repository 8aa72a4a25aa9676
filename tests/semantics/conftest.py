"""Every backend, sync and async, on every database it serves.

The tests here are written once, for asyncio, in ``test_*_async.py``;
``tools/sync_from_async.py`` generates the sync module ``test_*.py`` from each. A test
that asks for ``open_db_async`` (or ``open_url_async``) runs on every ASYNC_TARGETS
flavour; its generated twin asks for ``open_db`` (``open_url``) and runs on every
SYNC_TARGETS flavour. A target is (backend, dialect[+driver]); ``@pytest.mark.dialects(...)``
narrows a test to the targets of those dialects.

``open_db(**options)`` opens a database of the flavour on a fresh schema (PostgreSQL),
database (MariaDB) or file (SQLite), so semantics are observed on real servers;
``open_url(url, **options)`` opens one at a URL of the test's own (a closed port, a
silent server). Both shut down every database they opened afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from _flavours import ASYNC_TARGETS, SYNC_TARGETS, Opener

from structum_lab.plugins.database import connect, connect_async

ASYNC_OPENERS = {"open_db_async", "open_url_async"}
SYNC_OPENERS = {"open_db", "open_url"}


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


def _server_url(request: pytest.FixtureRequest, tmp_path: Path, scheme: str) -> str:
    dialect = scheme.partition("+")[0]
    if dialect == "sqlite":
        return f"{scheme}:///{tmp_path}/semantics.db"
    if dialect == "postgresql":
        base: str = request.getfixturevalue("pg_schema_url")
        return base.replace("postgresql://", f"{scheme}://", 1)
    base = request.getfixturevalue("mysql_db_url")
    return base.replace("mysql+pymysql://", f"{scheme}://", 1)


@pytest.fixture
def open_db(target: tuple[str, str], request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    opener = Opener(target, connect, _server_url(request, tmp_path, target[1]))
    yield opener
    for db in opener.opened:
        db.shutdown()


@pytest.fixture
async def open_db_async(
    target: tuple[str, str], request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Opener]:
    opener = Opener(target, connect_async, _server_url(request, tmp_path, target[1]))
    yield opener
    for db in opener.opened:
        await db.shutdown()


@pytest.fixture
def open_url(target: tuple[str, str]) -> Iterator[Opener]:
    opener = Opener(target, connect, None)
    yield opener
    for db in opener.opened:
        db.shutdown()


@pytest.fixture
async def open_url_async(target: tuple[str, str]) -> AsyncIterator[Opener]:
    opener = Opener(target, connect_async, None)
    yield opener
    for db in opener.opened:
        await db.shutdown()
