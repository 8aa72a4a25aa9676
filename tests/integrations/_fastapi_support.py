"""Helpers shared by the FastAPI integration tests."""

from __future__ import annotations

import socket
import warnings
from typing import Any

with warnings.catch_warnings():
    # Starlette 1.x asks for httpx2 behind its TestClient (a UserWarning subclass); httpx still works.
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

__all__ = ["TestClient", "closed_port", "pg_rows"]


def pg_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` on a connection of its own (autocommit): what other sessions see."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
