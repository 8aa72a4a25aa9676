"""Fixtures for the reliability suite: a throwaway PostgreSQL cluster and a TCP proxy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._infra import Cluster, Proxy, pg_bin, require_tool


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster owned by the test: it may be stopped, crashed and restarted."""
    require_tool(pg_bin() is not None, "PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    instance = Cluster()
    instance.start()
    try:
        yield instance
    finally:
        instance.destroy()


@pytest.fixture
def proxy_to_pg(pg_url: str) -> Iterator[Proxy]:
    """A TCP proxy in front of the shared PostgreSQL; switch its ``mode`` to misbehave."""
    instance = Proxy(5432)
    try:
        yield instance
    finally:
        instance.close()
