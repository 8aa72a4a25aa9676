"""Failover on real servers: the primary stops, the replica is promoted (``pg_ctl promote``),
and the database, configured with both hosts, writes to the new primary. And a primary that
turns read-only (SQLSTATE 25006) is left for the server that accepts writes."""

from __future__ import annotations

import logging
import threading
import time

import psycopg
import pytest
from _servers import Pair

from structum_lab.plugins.database import (
    ConnectionFailedError,
    ConnectionLostError,
    DatabaseError,
    ReplicatedDatabase,
    connect,
)


def open_pair(pair: Pair, backend: str) -> ReplicatedDatabase:
    db = connect(
        pair.multi_host_url(),  # target_session_attrs=read-write is added: the writable one of the two
        backend=backend,
        replicas=[pair.replica.url],
        replica_check_interval=0.1,
        pool_size=2,
        connect_timeout=2,
    )
    assert isinstance(db, ReplicatedDatabase)
    return db


def server_port(db: ReplicatedDatabase) -> int:
    with db.transaction() as conn:
        return int(conn.execute("SELECT inet_server_port()").scalar())


def test_failover_after_promotion(
    fresh_pair: Pair, backend: str, record_property: pytest.RecordProperty, caplog: pytest.LogCaptureFixture
) -> None:
    pair = fresh_pair
    pair.primary.sql("CREATE TABLE writes (n int PRIMARY KEY)")
    db = open_pair(pair, backend)
    acked: list[tuple[int, float]] = []
    failed: list[tuple[float, str]] = []
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                with db.transaction() as conn:
                    conn.execute("INSERT INTO writes (n) VALUES (:n)", {"n": n})
                acked.append((n, time.monotonic()))  # acknowledged: the commit returned
            except (ConnectionFailedError, ConnectionLostError) as exc:
                failed.append((time.monotonic(), type(exc).__name__))
            time.sleep(0.01)

    thread = threading.Thread(target=writer)
    try:
        assert server_port(db) == pair.primary.port
        thread.start()
        time.sleep(0.5)
        stopped = time.monotonic()
        pair.primary.stop("fast")
        pair.replica.promote()  # pg_ctl promote -w: returns once the replica accepts writes
        promoted = time.monotonic()
        deadline = promoted + 10
        while not any(t > promoted for _, t in acked):
            assert time.monotonic() < deadline, f"no write succeeded after the promotion: {failed[-3:]}"
            time.sleep(0.01)
        first = next(t for _, t in acked if t > promoted)
        time.sleep(0.3)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
    after_promotion, downtime = first - promoted, first - stopped
    record_property("first_write_after_promotion_s", round(after_promotion, 3))
    record_property("write_downtime_s", round(downtime, 3))
    print(
        f"\n[{backend}] first write {after_promotion:.3f} s after promotion, {downtime:.3f} s after the stop; "
        f"{len(failed)} failed attempts, {len(acked)} acknowledged"
    )
    assert after_promotion < 2.0
    with psycopg.connect(pair.replica.url) as conn:  # the new primary
        kept = {n for (n,) in conn.execute("SELECT n FROM writes")}
    assert [n for n, _ in acked if n not in kept] == []  # no acknowledged commit is lost
    assert server_port(db) == pair.replica.port
    with db.transaction(readonly=True) as conn:  # the promoted replica is out of rotation: the primary reads
        assert conn.execute("SELECT pg_is_in_recovery()").scalar() is False
    info = db.get_pool_info()
    assert info["failovers"] >= 1 and f":{pair.replica.port}" in info["last_failover"]
    assert "the primary is now the server at" in caplog.text
    assert info["members"][1]["state"] == "promoted"
    db.shutdown()


def test_a_read_only_primary_is_left_for_the_writable_server(
    fresh_pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    pair = fresh_pair
    pair.primary.sql("CREATE TABLE writes (n int PRIMARY KEY)")
    db = open_pair(pair, "psycopg")
    try:
        with db.transaction() as conn:
            conn.execute("INSERT INTO writes (n) VALUES (1)")
        pair.replica.promote()
        # The old primary stays up but refuses writes, as a demoted server does; pooled
        # connections still point at it.
        pair.primary.sql("ALTER SYSTEM SET default_transaction_read_only = on")
        pair.primary.sql("SELECT pg_reload_conf()")
        time.sleep(0.2)
        with caplog.at_level(logging.WARNING), pytest.raises(DatabaseError) as refused, db.transaction() as conn:
            conn.execute("INSERT INTO writes (n) VALUES (2)")
        assert refused.value.sqlstate == "25006"  # reported, not retried: a write is not idempotent
        assert "the primary moved" in caplog.text
        started = time.monotonic()
        with db.transaction() as conn:
            conn.execute("INSERT INTO writes (n) VALUES (3)")
            assert conn.execute("SELECT inet_server_port()").scalar() == pair.replica.port
        assert time.monotonic() - started < 2.0
        info = db.get_pool_info()
        assert info["failovers"] == 1 and "25006" in info["last_failover"]
        health = db.health_check()
        assert health.details["failovers"] == 1
    finally:
        db.shutdown()
