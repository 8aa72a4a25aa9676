"""Transactions, savepoints, connections and results of PostgresDatabase, observed from a
second connection (which sees only committed data): what is psycopg's own (COPY, parameter
styles, prepared statements, server settings). What every backend shares:
tests/semantics/test_transactions_async.py."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from structum_lab.plugins.database import (
    IntegrityError,
    ParameterError,
    PostgresDatabase,
    ProgrammingError,
    StatementTimeoutError,
    SupportsCopy,
    TransactionError,
)


@pytest.fixture
def db(open_pg: Any) -> PostgresDatabase:
    database: PostgresDatabase = open_pg(pool_size=3, max_overflow=0, pool_timeout=5)
    with database.transaction() as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE)")
    return database


def names(observer: Any) -> list[str]:
    return [r[0] for r in observer.execute("SELECT name FROM items ORDER BY id").fetchall()]


def test_swallowed_error_does_not_commit_silently(db: PostgresDatabase, observer: Any) -> None:
    # PostgreSQL answers COMMIT of an aborted transaction with ROLLBACK; we say so.
    with pytest.raises(TransactionError, match="rolled back, not committed"), db.transaction() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
        with contextlib.suppress(IntegrityError):
            conn.execute("INSERT INTO items (id, name) VALUES (2, 'a')")
    assert names(observer) == []
    with db.transaction() as conn:  # the pooled connection is clean again
        conn.execute("INSERT INTO items (id, name) VALUES (3, 'c')")
    assert names(observer) == ["c"]


def test_get_connection_as_context_manager(db: PostgresDatabase, observer: Any) -> None:
    with db.get_connection() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (1, 'kept')")
    with pytest.raises(RuntimeError), db.get_connection() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (2, 'dropped')")
        raise RuntimeError
    assert names(observer) == ["kept"]
    assert db.get_pool_info()["checked_out"] == 0


def test_closing_inside_the_block_rolls_back(db: PostgresDatabase, observer: Any) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (1, 'x')")
        conn.close()
    assert names(observer) == []
    assert db.get_pool_info()["checked_out"] == 0


def test_isolation_level_applies_to_one_transaction(db: PostgresDatabase) -> None:
    with db.transaction(isolation="serializable") as conn:
        assert conn.execute("SHOW transaction_isolation").scalar() == "serializable"
    with db.transaction(isolation="REPEATABLE READ", readonly=True) as conn:
        assert conn.execute("SHOW transaction_isolation").scalar() == "repeatable read"
        assert conn.execute("SHOW transaction_read_only").scalar() == "on"
    for _ in range(3):  # every pooled connection is back to the default
        with db.transaction() as conn:
            assert conn.execute("SHOW transaction_isolation").scalar() == "read committed"
            assert conn.execute("SHOW transaction_read_only").scalar() == "off"


def test_default_isolation_level_option(open_pg: Any) -> None:
    db = open_pg(isolation_level="repeatable_read", pool_size=1)
    with db.transaction() as conn:
        assert conn.execute("SHOW transaction_isolation").scalar() == "repeatable read"
    with db.transaction(isolation="serializable") as conn:
        assert conn.execute("SHOW transaction_isolation").scalar() == "serializable"
    with db.transaction() as conn:
        assert conn.execute("SHOW transaction_isolation").scalar() == "repeatable read"


def test_fetch_before_any_statement(db: PostgresDatabase) -> None:
    with db.transaction() as conn, pytest.raises(ProgrammingError, match="no statement has been executed"):
        conn.fetchone()


def test_parameter_styles(db: PostgresDatabase) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (id, name) VALUES (:id, :name)", {"id": 1, "name": "named"})
        conn.execute("INSERT INTO items (id, name) VALUES (%s, %s)", (2, "format"))
        conn.execute("INSERT INTO items (id, name) VALUES (%(id)s, %(name)s)", {"id": 3, "name": "pyformat"})
        conn.execute("INSERT INTO items (id, name) VALUES ($2, $1)", ["dollar", 4])
        conn.execute("INSERT INTO items (id, name) VALUES (5, '100% :literal $1 %s')")
        rows = conn.execute("SELECT name FROM items ORDER BY id").fetchall()
        assert [r["name"] for r in rows] == ["named", "format", "pyformat", "dollar", "100% :literal $1 %s"]
        row = conn.execute(
            "SELECT :n::int + 1 AS n, '{a}'::text[] AS arr, $$:lit$$ AS lit, '50%' AS pct /* :c */", {"n": "41"}
        ).fetchone()
        assert row == {"n": 42, "arr": ["a"], "lit": ":lit", "pct": "50%"}
        with pytest.raises(ParameterError, match="missing parameter :name"):
            conn.execute("SELECT :id, :name", {"id": 1})
        with pytest.raises(ParameterError, match="expected 2 parameters"):
            conn.execute("SELECT %s, %s", (1,))


def test_executemany_and_copy_records(db: PostgresDatabase, observer: Any) -> None:
    with db.transaction() as conn:
        assert isinstance(conn, SupportsCopy)
        count = conn.executemany(
            "INSERT INTO items (id, name) VALUES (:id, :name)", [{"id": i, "name": f"m{i}"} for i in range(100)]
        )
        assert count == 100
        assert conn.executemany("INSERT INTO items (id, name) VALUES (:id, :name)", []) == 0
        assert conn.executemany("UPDATE items SET name = name || '!' WHERE id < %s", [(10,), (5,)]) == 15
        copied = conn.copy_records("items", ["id", "name"], ((i, f"c{i}") for i in range(100, 1100)))
        assert copied == 1000
    assert observer.execute("SELECT COUNT(*), MIN(name), MAX(id) FROM items").fetchone() == (1100, "c100", 1099)
    assert observer.execute("SELECT name FROM items WHERE id = 3").fetchone() == ("m3!!",)


def test_copy_records_quotes_names_and_takes_schema_qualified_tables(db: PostgresDatabase, observer: Any) -> None:
    schema = observer.execute("SELECT current_schema()").fetchone()[0]
    with db.transaction() as conn:
        conn.execute('CREATE TABLE "Odd Table" ("select" TEXT, "Mixed Case" INT, note TEXT)')
        rows = [("a'b", 1, None), ("tab\there", 2, "new\nline"), ("back\\slash", 3, "ünïcode")]
        assert conn.copy_records(f"{schema}.Odd Table", ["select", "Mixed Case", "note"], rows) == 3
        got = conn.execute('SELECT "select", "Mixed Case", note FROM "Odd Table" ORDER BY 2').fetchall()
        assert [tuple(r.values()) for r in got] == rows
        with pytest.raises(ParameterError):
            conn.copy_records("a.b.c", ["x"], [])
        with pytest.raises(ParameterError):
            conn.copy_records("items", "id", [])  # type: ignore[arg-type]


def test_copy_records_errors_roll_back(db: PostgresDatabase, observer: Any) -> None:
    with pytest.raises(IntegrityError), db.transaction() as conn:
        conn.copy_records("items", ["id", "name"], [(1, "a"), (1, "b")])
    assert names(observer) == []


def test_statement_timeout_keeps_the_urls_own_options(open_pg: Any) -> None:
    # pg_schema_url carries options=-csearch_path=...; statement_timeout must not replace it.
    db = open_pg(statement_timeout=0.2, pool_size=1)
    with db.transaction() as conn:
        conn.execute("CREATE TABLE here (x INT)")
        assert conn.execute("SHOW statement_timeout").scalar() == "200ms"
    with pytest.raises(StatementTimeoutError) as info, db.transaction() as conn:
        conn.execute("SELECT pg_sleep(2)")
    assert info.value.sqlstate == "57014"
    with db.transaction() as conn:
        assert conn.execute("SELECT COUNT(*) FROM here").scalar() == 0


def test_prepare_threshold_none_for_pgbouncer(open_pg: Any) -> None:
    db = open_pg(prepare_threshold=None, pool_size=1)
    with db.transaction() as conn:
        for i in range(10):
            assert conn.execute("SELECT :i::int AS i", {"i": i}).scalar() == i
        assert conn.psycopg_connection.prepare_threshold is None
        assert conn.execute("SELECT COUNT(*) FROM pg_prepared_statements").scalar() == 0
    prepared = open_pg(pool_size=1)
    with prepared.transaction() as conn:
        for i in range(10):
            conn.execute("SELECT :i::int AS i", {"i": i})
        assert conn.execute("SELECT COUNT(*) FROM pg_prepared_statements").scalar() >= 1


def test_echo_logs_statements(open_pg: Any, caplog: pytest.LogCaptureFixture) -> None:
    db = open_pg(echo=True, pool_size=1)
    with caplog.at_level("INFO", logger="structum_lab.plugins.database.sql"), db.transaction() as conn:
        conn.execute("SELECT :x::int AS x", {"x": 7})
    assert any("SELECT %s::int AS x (7,)" in r.getMessage() for r in caplog.records)  # as sent to psycopg


def test_bulk_fetch_leaves_the_garbage_collector_as_it_was(db: PostgresDatabase) -> None:
    import gc

    with db.transaction() as conn:
        assert gc.isenabled()
        rows = conn.execute("SELECT g AS n FROM generate_series(1, 5000) g").fetchall()
        assert len(rows) == 5000 and rows[-1] == {"n": 5000} and gc.isenabled()
        result = conn.execute("SELECT g AS n FROM generate_series(1, 5000) g")
        assert len(result.fetchmany(2000)) == 2000 and len(result.fetchall()) == 3000 and gc.isenabled()
        gc.disable()
        try:
            assert len(conn.execute("SELECT g FROM generate_series(1, 5000) g").fetchall()) == 5000
            assert not gc.isenabled()  # a collector the application disabled stays disabled
        finally:
            gc.enable()
