"""Transaction behaviour of SQLAlchemyDatabase on SQLite, PostgreSQL and MariaDB,
observed from a second connection."""

from __future__ import annotations

import pytest

from structum_lab.plugins.database import (
    DatabaseError,
    IntegrityError,
    ProgrammingError,
    SQLAlchemyDatabase,
    TransactionError,
)


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


def test_commit_is_visible_only_after_the_block(db: SQLAlchemyDatabase, observer: SQLAlchemyDatabase) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (:id, :name)", {"id": 1, "name": "a"})
        assert names(observer) == []
    assert names(observer) == ["a"]


def test_exception_rolls_back_everything_and_is_reraised(db: SQLAlchemyDatabase, observer: SQLAlchemyDatabase) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), db.transaction() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
        conn.execute("INSERT INTO items (id, name) VALUES (2, 'b')")
        raise Boom
    assert names(observer) == []
    assert db.get_pool_info()["checked_out"] == 0


def test_failed_statement_rolls_back_the_whole_transaction(
    db: SQLAlchemyDatabase, observer: SQLAlchemyDatabase
) -> None:
    with pytest.raises(IntegrityError) as info, db.transaction() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
        conn.execute("INSERT INTO items (id, name) VALUES (2, 'a')")
    assert info.value.__cause__ is not None
    assert names(observer) == []


def test_savepoint_api_rolls_back_only_the_inner_block(db: SQLAlchemyDatabase, observer: SQLAlchemyDatabase) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (1, 'order')")
        with pytest.raises(IntegrityError), conn.transaction():
            conn.execute("INSERT INTO items (id, name) VALUES (2, 'item')")
            conn.execute("INSERT INTO items (id, name) VALUES (3, 'order')")
        with conn.transaction():
            conn.execute("INSERT INTO items (id, name) VALUES (4, 'kept')")
    assert names(observer) == ["order", "kept"]


def test_nested_db_transaction_is_a_savepoint(db: SQLAlchemyDatabase, observer: SQLAlchemyDatabase) -> None:
    with db.transaction() as outer:
        outer.execute("INSERT INTO items (id, name) VALUES (1, 'outer')")
        with pytest.raises(RuntimeError), db.transaction() as inner:
            assert inner is outer
            inner.execute("INSERT INTO items (id, name) VALUES (2, 'inner')")
            raise RuntimeError("undo the inner part only")
    assert names(observer) == ["outer"]
    assert db.get_pool_info()["checked_out"] == 0


def test_raw_savepoint_statements_as_in_the_spec(db: SQLAlchemyDatabase, observer: SQLAlchemyDatabase) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (1, 'order')")
        conn.execute("SAVEPOINT sp1")
        try:
            conn.execute("INSERT INTO items (id, name) VALUES (2, 'order')")  # duplicate name
        except DatabaseError:
            conn.execute("ROLLBACK TO SAVEPOINT sp1")
        conn.execute("INSERT INTO items (id, name) VALUES (3, 'after')")
    assert names(observer) == ["order", "after"]


def test_get_connection_explicit_commit_rollback_close(db: SQLAlchemyDatabase, observer: SQLAlchemyDatabase) -> None:
    conn = db.get_connection()
    try:
        conn.execute("INSERT INTO items (id, name) VALUES (1, 'committed')")
        conn.commit()
        conn.execute("INSERT INTO items (id, name) VALUES (2, 'rolled back')")
        conn.rollback()
        assert db.get_pool_info()["checked_out"] == 1
    finally:
        conn.close()
    assert names(observer) == ["committed"]
    assert db.get_pool_info()["checked_out"] == 0
    conn.close()  # idempotent


def test_close_without_commit_discards_the_work(db: SQLAlchemyDatabase, observer: SQLAlchemyDatabase) -> None:
    conn = db.get_connection()
    conn.execute("INSERT INTO items (id, name) VALUES (1, 'lost')")
    conn.close()
    assert names(observer) == []


def test_connection_is_unusable_after_its_block(db: SQLAlchemyDatabase) -> None:
    with db.transaction() as conn:
        pass
    with pytest.raises(TransactionError, match="transaction has ended"):
        conn.execute("SELECT 1")
    with pytest.raises(TransactionError):
        conn.commit()


def test_readonly_transaction_rejects_writes(db: SQLAlchemyDatabase, observer: SQLAlchemyDatabase) -> None:
    with pytest.raises(DatabaseError), db.transaction(readonly=True) as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (1, 'nope')")
    assert names(observer) == []
    # The read-only flag does not stick to the pooled connection.
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (2, 'yes')")
    assert names(observer) == ["yes"]


def test_isolation_on_a_nested_transaction_is_refused(db: SQLAlchemyDatabase) -> None:
    with db.transaction(), pytest.raises(TransactionError, match="outermost"), db.transaction(isolation="serializable"):
        pass


def test_result_api_rowcount_fetchmany_and_rows(db: SQLAlchemyDatabase) -> None:
    with db.transaction() as conn:
        for i in range(1, 8):
            conn.execute("INSERT INTO items (id, name) VALUES (:id, :name)", {"id": i, "name": f"n{i}"})
        assert conn.execute("UPDATE items SET name = name WHERE id > :n", {"n": 4}).rowcount == 3
        result = conn.execute("SELECT id, name FROM items ORDER BY id")
        assert result.keys() == ["id", "name"]
        first = result.fetchone()
        assert first is not None
        assert first["id"] == 1 and first[1] == "n1" and first.name == "n1"
        assert dict(first) == {"id": 1, "name": "n1"}
        assert [r["id"] for r in result.fetchmany(size=2)] == [2, 3]
        assert [r["id"] for r in result.fetchall()] == [4, 5, 6, 7]
        assert conn.execute("SELECT COUNT(*) AS n FROM items").scalar() == 7
        conn.execute("SELECT name FROM items WHERE id = :id", {"id": 3})
        row = conn.fetchone()  # cursor style, spec section 1.1
        assert row == {"name": "n3"}
        with pytest.raises(ProgrammingError, match="rowcount"):
            conn.execute("DELETE FROM items WHERE id = 7").fetchall()


def test_executemany(db: SQLAlchemyDatabase) -> None:
    with db.transaction() as conn:
        conn.executemany(
            "INSERT INTO items (id, name) VALUES (:id, :name)", [{"id": i, "name": f"n{i}"} for i in range(10)]
        )
        assert conn.execute("SELECT COUNT(*) FROM items").scalar() == 10


def test_colons_in_literals_casts_and_comments_reach_the_server(db: SQLAlchemyDatabase) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (:id, ':text') -- :comment\n", {"id": 1})
        row = conn.execute("SELECT name, '100%' AS pct FROM items /* :x */ WHERE id = :id", {"id": 1}).fetchone()
    assert row == {"name": ":text", "pct": "100%"}


def test_postgres_cast_after_a_parameter(pg_schema_url: str) -> None:
    with SQLAlchemyDatabase(pg_schema_url) as db, db.transaction() as conn:
        row = conn.execute("SELECT :n::int + 1 AS n, '{a}'::text[] AS arr, $$:lit$$ AS lit", {"n": "41"}).fetchone()
    assert row == {"n": 42, "arr": ["a"], "lit": ":lit"}


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
