"""Transaction semantics, identical on every synchronous backend (docs/transactions.md)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import pytest

from structum_lab.plugins.database import (
    DatabaseError,
    SerializationError,
    TransactionError,
    TransientError,
    run_transaction,
)

DDL = "CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)"


@pytest.fixture
def db(open_db: Callable[..., Any]) -> Any:
    database = open_db(pool_size=4, pool_timeout=10)
    with database.transaction() as conn:
        conn.execute(DDL)
        conn.executemany("INSERT INTO acct (id, balance) VALUES (:id, :b)", [{"id": i, "b": 100} for i in (1, 2)])
    return database


@pytest.fixture
def observer(open_db: Callable[..., Any]) -> Any:
    return open_db(pool_size=1)


def balances(db: Any) -> dict[int, int]:
    with db.transaction() as conn:
        return {r["id"]: r["balance"] for r in conn.execute("SELECT id, balance FROM acct ORDER BY id")}


def test_commit_on_success_visible_only_after(db: Any, observer: Any) -> None:
    with db.transaction() as conn:
        conn.execute("UPDATE acct SET balance = balance - 10 WHERE id = 1")
        assert balances(observer)[1] == 100
    assert balances(observer) == {1: 90, 2: 100}


def test_rollback_on_exception_and_reraise(db: Any, observer: Any) -> None:
    with pytest.raises(ZeroDivisionError), db.transaction() as conn:
        conn.execute("UPDATE acct SET balance = 0 WHERE id = 1")
        conn.execute("UPDATE acct SET balance = 0 WHERE id = 2")
        _ = 1 / 0
    assert balances(observer) == {1: 100, 2: 100}


def test_nested_transaction_is_a_savepoint(db: Any, observer: Any) -> None:
    with db.transaction() as outer:
        outer.execute("UPDATE acct SET balance = 1 WHERE id = 1")
        with pytest.raises(KeyError), db.transaction() as inner:
            inner.execute("UPDATE acct SET balance = 2 WHERE id = 2")
            raise KeyError
        with outer.transaction():
            outer.execute("UPDATE acct SET balance = 3 WHERE id = 2")
        with pytest.raises(ValueError), outer.transaction():
            outer.execute("UPDATE acct SET balance = 4 WHERE id = 1")
            raise ValueError
    assert balances(observer) == {1: 1, 2: 3}


def test_connection_after_block_is_an_error(db: Any) -> None:
    with db.transaction() as conn:
        pass
    with pytest.raises(TransactionError, match="has ended"):
        conn.execute("SELECT 1")


def test_readonly_transaction(db: Any, observer: Any) -> None:
    with db.transaction(readonly=True) as conn:
        assert conn.execute("SELECT COUNT(*) FROM acct").scalar() == 2
    with pytest.raises(DatabaseError), db.transaction(readonly=True) as conn:
        conn.execute("UPDATE acct SET balance = 0 WHERE id = 1")
    assert balances(observer) == {1: 100, 2: 100}


def test_repeatable_read_keeps_its_snapshot(db: Any, observer: Any, open_db: Callable[..., Any]) -> None:
    if open_db.dialect == "sqlite":  # type: ignore[attr-defined]
        # SQLite isolates with locks, not snapshots: a writer cannot commit under an open reader.
        impatient = open_db(pool_size=1, connect_args={"timeout": 0.2})
        with db.transaction(isolation="repeatable_read") as conn:
            assert conn.execute("SELECT balance FROM acct WHERE id = 1").scalar() == 100
            with pytest.raises(TransientError), impatient.transaction() as other:
                other.execute("UPDATE acct SET balance = 5 WHERE id = 1")
            assert conn.execute("SELECT balance FROM acct WHERE id = 1").scalar() == 100
        assert balances(observer)[1] == 100
        return
    with db.transaction(isolation="repeatable_read") as conn:
        assert conn.execute("SELECT balance FROM acct WHERE id = 1").scalar() == 100
        with observer.transaction() as other:
            other.execute("UPDATE acct SET balance = 5 WHERE id = 1")
        assert conn.execute("SELECT balance FROM acct WHERE id = 1").scalar() == 100
    with db.transaction(isolation="read_committed") as conn:
        assert conn.execute("SELECT balance FROM acct WHERE id = 1").scalar() == 5


def _increment_concurrently(db: Any, *, retry: bool) -> tuple[list[BaseException], list[int]]:
    """Two threads read the same row, meet at a barrier, then both write it.

    Under SERIALIZABLE one of them must lose: PostgreSQL reports 40001, MariaDB a
    deadlock (1213), SQLite SQLITE_BUSY (lock upgrade deadlock). With ``retry`` both
    go through run_transaction().
    """
    barrier = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []
    attempts: list[int] = []

    def body(conn: Any) -> None:
        attempts.append(1)
        balance = conn.execute("SELECT balance FROM acct WHERE id = 1").scalar()
        if len(attempts) <= 2:  # only the first round meets at the barrier
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
        conn.execute("UPDATE acct SET balance = :b WHERE id = 1", {"b": balance + 1})

    def worker() -> None:
        try:
            if retry:
                run_transaction(db, body, isolation="serializable", backoff=0.01)
            else:
                with db.transaction(isolation="serializable") as conn:
                    body(conn)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors, attempts


def test_serialization_conflict_surfaces_as_a_core_error(db: Any, observer: Any, open_db: Callable[..., Any]) -> None:
    errors, _ = _increment_concurrently(db, retry=False)
    assert len(errors) == 1, errors
    assert isinstance(errors[0], TransientError)
    if open_db.dialect == "postgresql":  # type: ignore[attr-defined]
        assert isinstance(errors[0], SerializationError) and errors[0].sqlstate == "40001"
    assert balances(observer)[1] == 101  # the winner committed, the loser left nothing


def test_retry_helper_makes_both_conflicting_transactions_succeed(
    db: Any, observer: Any, open_db: Callable[..., Any]
) -> None:
    errors, attempts = _increment_concurrently(db, retry=True)
    assert errors == []
    assert len(attempts) >= 3  # at least one transaction ran again
    assert balances(observer)[1] == 102  # no increment lost


def test_retry_refuses_to_run_inside_a_transaction(db: Any) -> None:
    with db.transaction(), pytest.raises(TransactionError, match="outermost"):
        run_transaction(db, lambda c: None)


def test_retry_gives_up_after_attempts(db: Any) -> None:
    calls = []

    def always_conflicts(conn: Any) -> None:
        calls.append(1)
        raise SerializationError("simulated conflict", sqlstate="40001")

    with pytest.raises(TransientError):
        run_transaction(db, always_conflicts, attempts=3, backoff=0)
    assert len(calls) == 3


def test_no_leak_after_1000_mixed_transactions(db: Any) -> None:
    for i in range(1000):
        try:
            with db.transaction() as conn:
                conn.execute("UPDATE acct SET balance = balance + 1 WHERE id = :id", {"id": 1 + i % 2})
                if i % 3 == 0:
                    raise RuntimeError("roll this one back")
                if i % 7 == 0:
                    with conn.transaction():
                        conn.execute("UPDATE acct SET balance = balance + 1 WHERE id = 1")
        except RuntimeError:
            pass
    info = db.get_pool_info()
    assert info["checked_out"] == 0
    assert info["available"] == info["total"] >= 1
    committed = [i for i in range(1000) if i % 3]
    expected_1 = 100 + sum(1 for i in committed if i % 2 == 0) + sum(1 for i in committed if i % 7 == 0)
    expected_2 = 100 + sum(1 for i in committed if i % 2 == 1)
    assert balances(db) == {1: expected_1, 2: expected_2}


def test_failed_statement_without_savepoint(db: Any, observer: Any, open_db: Callable[..., Any]) -> None:
    """PostgreSQL aborts the whole transaction on an error; COMMIT would silently roll back,
    so the layer raises instead. MariaDB and SQLite undo only the failed statement."""
    dialect = open_db.dialect  # type: ignore[attr-defined]
    if dialect == "postgresql":
        with pytest.raises(TransactionError, match="rolled back, not committed") as info, db.transaction() as conn:
            conn.execute("UPDATE acct SET balance = 1 WHERE id = 1")
            with contextlib.suppress(DatabaseError):
                conn.execute("INSERT INTO acct (id, balance) VALUES (1, 0)")  # duplicate key
        assert info.value.sqlstate == "25P02"
        assert balances(observer) == {1: 100, 2: 100}
    else:
        with db.transaction() as conn:
            conn.execute("UPDATE acct SET balance = 1 WHERE id = 1")
            with contextlib.suppress(DatabaseError):
                conn.execute("INSERT INTO acct (id, balance) VALUES (1, 0)")
        assert balances(observer) == {1: 1, 2: 100}
    assert db.get_pool_info()["checked_out"] == 0


def test_db_execute_runs_one_statement_on_its_own(db: Any, observer: Any) -> None:
    result = db.execute("UPDATE acct SET balance = :b WHERE id = :id", {"b": 7, "id": 1})
    assert result.rowcount == 1
    assert balances(observer) == {1: 7, 2: 100}  # committed at once
    rows = db.execute("SELECT id, balance FROM acct ORDER BY id")
    assert rows.keys() == ["id", "balance"]
    assert rows.fetchone() == {"id": 1, "balance": 7}
    assert rows.fetchall() == [{"id": 2, "balance": 100}]
    assert rows.fetchone() is None
    assert db.execute("SELECT COUNT(*) AS n FROM acct").scalar() == 2
    assert db.get_pool_info()["checked_out"] == 0
    with pytest.raises(DatabaseError):
        db.execute("SELECT * FROM no_such_table")
    assert db.get_pool_info()["checked_out"] == 0


def test_db_execute_inside_a_transaction_joins_it(db: Any, observer: Any) -> None:
    with pytest.raises(RuntimeError), db.transaction():
        db.execute("UPDATE acct SET balance = 0 WHERE id = 1")
        assert db.execute("SELECT balance FROM acct WHERE id = 1").scalar() == 0
        raise RuntimeError
    assert balances(observer) == {1: 100, 2: 100}
