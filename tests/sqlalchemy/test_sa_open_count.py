"""``get_pool_info()["total"]`` of the SQLAlchemy backend is the number of connections the
server has for the pool, also after SQLAlchemy closed a connection without its close event:
it does so when a connect listener is interrupted after the connection was opened (an
asyncio task cancelled while the connection is set up, or a listener of the application's
that raises)."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from sqlalchemy import event

from structum_lab.plugins.database import SQLAlchemyDatabase


def _server_connections(url: str, app: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)).fetchone()
    assert row is not None
    return int(row[0])


def _settled(url: str, app: str, expected: int) -> int:
    """The server's count once it reaches ``expected`` (a closed session ends a moment later), or after 5 s."""
    deadline = time.monotonic() + 5
    while (count := _server_connections(url, app)) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return count


def test_a_connection_closed_without_a_close_event_is_not_counted(pg_url: str) -> None:
    app = f"count-{uuid.uuid4().hex[:10]}"
    db = SQLAlchemyDatabase(
        pg_url.replace("postgresql://", "postgresql+psycopg://", 1),
        connect_args={"application_name": app},
        pool_size=2,
        max_overflow=0,
    )
    interruptions = [RuntimeError("interrupted while the connection was set up")]

    @event.listens_for(db.engine, "connect")
    def _interrupted(_dbapi_connection: object, _record: object) -> None:
        if interruptions:
            raise interruptions.pop()

    try:
        with pytest.raises(RuntimeError, match="interrupted"):
            db.get_connection()
        assert db.get_pool_info()["total"] == 0
        assert _settled(pg_url, app, 0) == 0  # SQLAlchemy did close it
        with db.transaction() as conn:
            conn.execute("SELECT 1")
            assert db.get_pool_info()["total"] == 1 == _settled(pg_url, app, 1)
        info = db.get_pool_info()
        assert info["total"] == 1 and info["checked_out"] == 0 and info["requests_waiting"] == 0
    finally:
        db.shutdown()
    assert _settled(pg_url, app, 0) == 0
