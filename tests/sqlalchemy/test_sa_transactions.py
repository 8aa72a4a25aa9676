"""SQL text and context handling of SQLAlchemyDatabase on SQLite, PostgreSQL and MariaDB,
observed from a second connection. The transaction semantics every backend shares:
tests/semantics/test_transactions_async.py."""

from __future__ import annotations

import pytest

from structum_lab.plugins.database import SQLAlchemyDatabase


@pytest.fixture
def db(any_url: str) -> SQLAlchemyDatabase:
    database = SQLAlchemyDatabase(any_url, pool_size=3, pool_timeout=5)
    with database.transaction() as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE)")
    yield database
    database.shutdown()


@pytest.fixture
def observer(any_url: str) -> SQLAlchemyDatabase:
    """A second, independent pool: sees only what is committed."""
    database = SQLAlchemyDatabase(any_url, pool_size=1)
    yield database
    database.shutdown()


def names(db: SQLAlchemyDatabase) -> list[str]:
    with db.transaction() as conn:
        return [r["name"] for r in conn.execute("SELECT name FROM items ORDER BY id").fetchall()]


def test_colons_in_literals_casts_and_comments_reach_the_server(db: SQLAlchemyDatabase) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (:id, ':text') -- :comment\n", {"id": 1})
        row = conn.execute("SELECT name, '100%' AS pct FROM items /* :x */ WHERE id = :id", {"id": 1}).fetchone()
    assert row == {"name": ":text", "pct": "100%"}


def test_transaction_exited_in_another_context_still_ends(db: SQLAlchemyDatabase, observer: SQLAlchemyDatabase) -> None:
    """A with-block spanning a generator resumed in another context (as FastAPI does with
    yield dependencies) must still commit and return its connection."""
    import contextvars

    def dependency():  # type: ignore[no-untyped-def]
        with db.transaction() as conn:
            yield conn

    gen = dependency()
    conn = contextvars.copy_context().run(next, gen)
    conn.execute("INSERT INTO items (id, name) VALUES (1, 'from another context')")
    with pytest.raises(StopIteration):
        contextvars.copy_context().run(next, gen)
    assert names(observer) == ["from another context"]
    assert db.get_pool_info()["checked_out"] == 0
