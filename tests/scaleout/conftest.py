"""Servers of the scale-out suite: one primary with a streaming replica, shared by the tests
that leave them as they found them, and fresh pairs for the tests that promote a replica.
All of them are throwaway clusters on free ports, removed at the end."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from _servers import Pair, Primary, Replica, require_binaries, wait_until


def _start_pair() -> Pair:
    require_binaries()
    primary = Primary()
    primary.start()
    try:
        replica = Replica(primary)
        replica.start()
    except BaseException:
        primary.destroy()
        raise
    pair = Pair(primary, replica)
    wait_until(lambda: primary.sql("SELECT count(*) FROM pg_stat_replication") == 1, what="streaming replication")
    return pair


def _stop_pair(pair: Pair) -> None:
    pair.replica.destroy()
    pair.primary.destroy()


@pytest.fixture(scope="session")
def shared_pair() -> Iterator[Pair]:
    pair = _start_pair()
    yield pair
    _stop_pair(pair)


@pytest.fixture
def pair(shared_pair: Pair) -> Iterator[Pair]:
    """The shared primary and replica, as a test that delays or stops the replica must leave them."""
    yield shared_pair
    replica = shared_pair.replica
    if not replica.running():
        replica.start()
    replica.set_delay("0")


@pytest.fixture
def fresh_pair() -> Iterator[Pair]:
    """A pair of its own, for a test that stops the primary or promotes the replica."""
    pair = _start_pair()
    yield pair
    _stop_pair(pair)


@pytest.fixture
def items(pair: Pair) -> Iterator[str]:
    """A table ``items (n int primary key)`` on the primary, already on the replica."""
    name = f"items_{uuid.uuid4().hex[:10]}"
    pair.primary.sql(f"CREATE TABLE {name} (n int PRIMARY KEY)")

    def replicated() -> bool:
        with psycopg.connect(pair.replica.url, autocommit=True) as conn:
            return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone() == (True,)

    wait_until(replicated, what="the table on the replica")
    yield name
    pair.primary.sql(f"DROP TABLE {name}")


@pytest.fixture(params=["psycopg", "sqlalchemy"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
