"""Translated SQL run for real: psycopg on PostgreSQL, pymysql on MariaDB/MySQL, sqlite3.

The returned values prove that look-alikes in literals, identifiers and comments reached
the server untouched and that the parameters were bound where the placeholders were.
Servers that cannot be reached are skipped, unless ``STRUCTUM_REQUIRE_SERVERS=1``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from structum_lab.plugins.database._engine.params import (
    MYSQL,
    POSTGRESQL,
    PSYCOPG,
    PSYCOPG_POSITIONAL,
    PYMYSQL,
    SQLITE,
    SQLITE3,
    Translator,
)

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
MYSQL_ARGS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 3306,
    "user": "root",
    "password": "",
    "database": "test",
    "connect_timeout": 3,
}


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail when the run has promised that the servers are there."""
    if os.environ.get("STRUCTUM_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{reason} (STRUCTUM_REQUIRE_SERVERS=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def pg() -> Iterator[Any]:
    try:
        import psycopg
    except ImportError:
        unavailable("psycopg is not installed")
    try:
        conn = psycopg.connect(PG_DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL ({PG_DSN}) is unreachable: {exc}")
    with conn:
        yield conn


@pytest.fixture(scope="module")
def my() -> Iterator[Any]:
    try:
        import pymysql
    except ImportError:
        unavailable("pymysql is not installed")
    try:
        conn = pymysql.connect(**MYSQL_ARGS, autocommit=True)
    except pymysql.err.OperationalError as exc:
        unavailable(f"MariaDB/MySQL at {MYSQL_ARGS['host']}:{MYSQL_ARGS['port']} is unreachable: {exc}")
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def lite() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    try:
        yield conn
    finally:
        conn.close()


# --- PostgreSQL / psycopg ------------------------------------------------------------------


@pytest.fixture(params=[PSYCOPG, PSYCOPG_POSITIONAL], ids=["pyformat", "positional"])
def pg_t(request: pytest.FixtureRequest) -> Translator:
    """Both ways to send named parameters to psycopg: as %(name)s, and as %s (the backend's)."""
    return Translator(POSTGRESQL, request.param)


def pg_row(conn: Any, pg_t: Translator, sql: str, params: object = None) -> tuple[Any, ...]:
    query, bound = pg_t(sql, params)
    row = conn.execute(query, bound).fetchone()
    assert row is not None
    return tuple(row)


@pytest.mark.postgres
def test_pg_named(pg: Any, pg_t: Translator) -> None:
    sql = (
        "SELECT :a AS a, ':a' AS lit, 'x%' AS pct, :b::int AS b, $$ :c %s $$ AS body, E'\\':d' AS esc,"
        " '%s' AS fmt, \"col:x\".v AS q, 'it''s :e' AS quoted /* :f % */ -- :g %\n"
        ' FROM (SELECT 1 AS v) AS "col:x"'
    )
    row = pg_row(pg, pg_t, sql, {"a": "A", "b": "7"})
    assert row == ("A", ":a", "x%", 7, " :c %s ", "':d", "%s", 1, "it's :e")


@pytest.mark.postgres
def test_pg_named_repeated_and_cast(pg: Any, pg_t: Translator) -> None:
    assert pg_row(pg, pg_t, "SELECT :n::int + :n::int, (ARRAY[1,2,3])[2:3]", {"n": "20"}) == (40, [2, 3])


@pytest.mark.postgres
def test_pg_dollar_numbers(pg: Any, pg_t: Translator) -> None:
    sql = "SELECT $2::text AS second, $1::text AS first, $2::text AS again, '$1' AS lit, 'a%' AS pct"
    assert pg_row(pg, pg_t, sql, ("one", "two")) == ("two", "one", "two", "$1", "a%")


@pytest.mark.postgres
def test_pg_dollar_body_with_numbers(pg: Any, pg_t: Translator) -> None:
    sql = "SELECT $fn$ $1 :x $fn$ AS body, $1::int AS v"
    assert pg_row(pg, pg_t, sql, [5]) == (" $1 :x ", 5)


@pytest.mark.postgres
def test_pg_pyformat_and_format(pg: Any, pg_t: Translator) -> None:
    sql = "SELECT %(a)s AS a, '%s' AS lit, '100%%' AS pct, 'x%' AS lone"
    assert pg_row(pg, pg_t, sql, {"a": 1}) == (1, "%s", "100%", "x%")
    assert pg_row(pg, pg_t, "SELECT %s::int AS a, %s AS b, 'it''s %s'", (1, "b")) == (1, "b", "it's %s")


@pytest.mark.postgres
def test_pg_no_placeholders(pg: Any, pg_t: Translator) -> None:
    assert pg_row(pg, pg_t, "SELECT 'x%' AS pct, ':a' AS lit, '%s' AS fmt") == ("x%", ":a", "%s")


@pytest.mark.postgres
def test_pg_executemany(pg: Any, pg_t: Translator) -> None:
    with pg.cursor() as cur:
        cur.execute("CREATE TEMP TABLE structum_params_t (a int, b text)")
        try:
            stmt = pg_t.prepare("INSERT INTO structum_params_t (a, b) VALUES (:a, ':b' || :b || '%')")
            cur.executemany(stmt.sql, stmt.bind_many([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]))
            cur.execute("SELECT a, b FROM structum_params_t ORDER BY a")
            assert cur.fetchall() == [(1, ":bx%"), (2, ":by%")]
        finally:
            cur.execute("DROP TABLE structum_params_t")


# --- MariaDB / MySQL / pymysql -------------------------------------------------------------

MY_T = Translator(MYSQL, PYMYSQL)


def my_row(conn: Any, sql: str, params: object = None) -> tuple[tuple[Any, ...], list[str]]:
    query, bound = MY_T(sql, params)
    with conn.cursor() as cur:
        cur.execute(query, bound)
        row = cur.fetchone()
        return tuple(row), [d[0] for d in cur.description]


@pytest.mark.mysql
def test_mysql_named(my: Any) -> None:
    sql = (
        "SELECT :a AS a, ':a' AS lit, 'x%' AS pct, CAST(:b AS SIGNED) AS b, 'it\\'s :c' AS esc,"
        " \"dq :d\" AS dq, 1 AS `e:f`, 'it''s :g' AS quoted # :h %\n"
        " , 2 AS two -- :i %\n /* :j % */"
    )
    row, columns = my_row(my, sql, {"a": "A", "b": "7"})
    assert row == ("A", ":a", "x%", 7, "it's :c", "dq :d", 1, "it's :g", 2)
    assert columns[6] == "e:f"


@pytest.mark.mysql
def test_mysql_double_dash_needs_space(my: Any) -> None:
    # 1--:a is 1 - -:a in MySQL, so :a must be bound.
    row, _ = my_row(my, "SELECT 1--:a AS m", {"a": 1})
    assert row == (2,)


@pytest.mark.mysql
def test_mysql_format_and_dollar(my: Any) -> None:
    assert my_row(my, "SELECT %s AS a, 'b%%' AS pct, '%s' AS lit", ("A",))[0] == ("A", "b%", "%s")
    assert my_row(my, "SELECT $2 AS a, $1 AS b, 'c%' AS pct", ("one", "two"))[0] == ("two", "one", "c%")


@pytest.mark.mysql
def test_mysql_no_placeholders(my: Any) -> None:
    assert my_row(my, "SELECT 'x%' AS pct, ':a' AS lit")[0] == ("x%", ":a")


# --- sqlite3 -------------------------------------------------------------------------------

LITE_T = Translator(SQLITE, SQLITE3)


def lite_row(conn: sqlite3.Connection, sql: str, params: object = None) -> tuple[Any, ...]:
    query, bound = LITE_T(sql, params)
    cur = conn.execute(query) if bound is None else conn.execute(query, bound)
    return tuple(cur.fetchone())


def test_sqlite_named(lite: sqlite3.Connection) -> None:
    sql = (
        "SELECT :a AS a, ':a' AS lit, 'x%' AS pct, CAST(:b AS INTEGER) AS b, \"col:x\".v, `t:u`.v"
        ' /* :c */ -- :d\n FROM (SELECT 1 AS v) AS "col:x", (SELECT 2 AS v) AS `t:u`'
    )
    assert lite_row(lite, sql, {"a": "A", "b": "7"}) == ("A", ":a", "x%", 7, 1, 2)


def test_sqlite_other_styles(lite: sqlite3.Connection) -> None:
    assert lite_row(lite, "SELECT %(a)s, '100%%', '%s'", {"a": 1}) == (1, "100%", "%s")
    assert lite_row(lite, "SELECT %s, %s, '%%'", (1, 2)) == (1, 2, "%")
    assert lite_row(lite, "SELECT $2, $1, $2, '$1'", ("one", "two")) == ("two", "one", "two", "$1")
