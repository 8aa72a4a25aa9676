"""Scenario 8, bad input through parameters: hypothesis-generated parameter sets (wrong
containers, wrong counts, unadaptable values, NUL bytes, huge numbers) raise DatabaseError
subclasses and leave the database usable; SQL injection attempts through parameters are
inert on every backend and placeholder style - the value is stored and read back unchanged,
and the tables survive."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from structum_lab.plugins.database import DatabaseError, connect, connect_async

from ._workload import PG_URL

# psycopg_pool's workers draw from the global random module (connection jitter) while
# hypothesis generates examples on this thread; hypothesis takes that for a strategy's doing.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")

STYLES = {
    ":name": ("SELECT :a AS a, :b AS b", "named"),
    "%s": ("SELECT %s AS a, %s AS b", "positional"),
    "%(name)s": ("SELECT %(a)s AS a, %(b)s AS b", "named"),
    "$1": ("SELECT $1 AS a, $2 AS b", "positional"),
}
PARAMS = settings(
    max_examples=80,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Opaque:
    """A value no driver knows how to send."""


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(),
    st.binary(max_size=8),
    st.decimals(),
    st.datetimes(),
    st.dates(),
    st.timedeltas(),
    st.uuids(),
    st.complex_numbers(),
    st.lists(st.integers(-5, 5), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sets(st.integers(), max_size=2),
    st.builds(Opaque),
)


@st.composite
def parameter_sets(draw: st.DrawFn, shape: str) -> Any:
    """Mostly well-formed sets with odd values, sometimes the wrong container or count."""
    a, b = draw(values), draw(values)
    if draw(st.integers(0, 3)):
        return {"a": a, "b": b} if shape == "named" else draw(st.sampled_from([(a, b), [a, b]]))
    return draw(
        st.one_of(
            st.none(),
            st.text(max_size=5),
            st.integers(),
            st.lists(values, max_size=3),
            st.tuples(values),
            st.dictionaries(st.sampled_from(["a", "b", "c", "A", ""]), values, max_size=3),
            st.sets(st.integers(), max_size=2),
        )
    )


def _check_outcome(value_sets: Any, row: dict[str, Any] | None) -> None:
    """A text value that was accepted comes back unchanged (nothing was interpreted)."""
    if row is None:
        return
    sent = list(value_sets.values()) if isinstance(value_sets, dict) else list(value_sets)
    for name, value in zip(("a", "b"), sent, strict=False):
        if isinstance(value, str) and "\x00" not in value:
            assert row[name] == value


SYNC_TARGETS = ["psycopg", "sqlalchemy", "sqlite", "mariadb"]
ASYNC_TARGETS = ["psycopg", "sqlalchemy", "sqlalchemy-asyncpg", "sqlite", "mariadb"]


def _url(target: str, request: pytest.FixtureRequest, tmp_path: Any, *, is_async: bool = False) -> str:
    if target == "psycopg":
        return str(request.getfixturevalue("pg_url"))
    if target in ("sqlalchemy", "sqlalchemy-asyncpg"):
        driver = "asyncpg" if target.endswith("asyncpg") else "psycopg"
        return str(request.getfixturevalue("pg_url")).replace("postgresql://", f"postgresql+{driver}://", 1)
    if target == "sqlite":
        return f"sqlite+{'aiosqlite' if is_async else 'pysqlite'}:///{tmp_path}/params.db"
    url = str(request.getfixturevalue("mysql_db_url"))
    return url.replace("mysql+pymysql://", "mysql+aiomysql://", 1) if is_async else url


@pytest.mark.parametrize("style", list(STYLES))
@pytest.mark.parametrize("target", SYNC_TARGETS)
def test_generated_parameter_sets(target: str, style: str, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    sql, shape = STYLES[style]
    db = connect(_url(target, request, tmp_path), pool_size=1, max_overflow=0, pool_timeout=5)

    @PARAMS
    @given(params=parameter_sets(shape))
    def run(params: Any) -> None:
        row = None
        try:
            with db.transaction() as conn:
                row = conn.execute(sql, params).fetchone()
        except DatabaseError as exc:
            assert str(exc)  # noqa: PT017 - any DatabaseError is fine, as long as it says something
        _check_outcome(params, row)
        with db.transaction() as conn:  # still usable
            assert conn.execute("SELECT 1 AS one").scalar() == 1

    try:
        run()
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()


@pytest.mark.parametrize("style", [":name", "$1"])
@pytest.mark.parametrize("target", ASYNC_TARGETS)
def test_generated_parameter_sets_async(target: str, style: str, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    sql, shape = STYLES[style]
    loop = asyncio.new_event_loop()
    db = connect_async(_url(target, request, tmp_path, is_async=True), pool_size=1, max_overflow=0, pool_timeout=5)

    def on_loop(coro: Coroutine[Any, Any, Any]) -> Any:
        return loop.run_until_complete(coro)

    async def attempt(params: Any) -> None:
        row = None
        try:
            async with db.transaction() as conn:
                row = await (await conn.execute(sql, params)).fetchone()
        except DatabaseError as exc:
            assert str(exc)  # noqa: PT017 - any DatabaseError is fine, as long as it says something
        _check_outcome(params, row)
        async with db.transaction() as conn:
            assert await (await conn.execute("SELECT 1 AS one")).scalar() == 1

    @settings(PARAMS, max_examples=40)
    @given(params=parameter_sets(shape))
    def run(params: Any) -> None:
        on_loop(attempt(params))

    try:
        run()
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        on_loop(db.shutdown())
        loop.close()


# -- SQL injection -------------------------------------------------------------------------

PAYLOADS = [
    "'; DROP TABLE {victim}; --",
    "'); DROP TABLE {victim}; --",
    '"; DROP TABLE {victim}; --',
    "\\'; DROP TABLE {victim}; --",
    "1; DROP TABLE {victim}",
    "$$; DROP TABLE {victim}; $$",
    "x' OR '1'='1",
    "' UNION SELECT 1, 'pwned' --",
    ":v %s %(v)s $1 ? {{}}",
    "\u02bc; DROP TABLE {victim}; --",
    "Robert'); DELETE FROM {table} WHERE 1=1; --",
    "*/ DROP TABLE {victim}; /*",
]
INSERTS = {
    ":name": ("INSERT INTO {table} (id, v) VALUES (:id, :v)", lambda i, v: {"id": i, "v": v}),
    "%s": ("INSERT INTO {table} (id, v) VALUES (%s, %s)", lambda i, v: (i, v)),
    "%(name)s": ("INSERT INTO {table} (id, v) VALUES (%(id)s, %(v)s)", lambda i, v: {"id": i, "v": v}),
    "$1": ("INSERT INTO {table} (id, v) VALUES ($1, $2)", lambda i, v: [i, v]),
}
SELECTS = {
    ":name": ("SELECT id, v FROM {table} WHERE v = :v", lambda v: {"v": v}),
    "%s": ("SELECT id, v FROM {table} WHERE v = %s", lambda v: (v,)),
    "%(name)s": ("SELECT id, v FROM {table} WHERE v = %(v)s", lambda v: {"v": v}),
    "$1": ("SELECT id, v FROM {table} WHERE v = $1", lambda v: [v]),
}


def _injections(table: str, victim: str) -> Iterator[tuple[str, int, str]]:
    """(style, id, payload) for every payload in every style, with unique ids."""
    n = 0
    for style in INSERTS:
        for payload in PAYLOADS:
            n += 1
            # The case number keeps each stored value unique, so the read-back finds one row.
            yield style, n, payload.format(victim=victim, table=table) + f" #{n}"


def _sync_injection(db: Any, table: str, victim: str) -> int:
    cases = list(_injections(table, victim))
    for style, ident, payload in cases:
        sql, make = INSERTS[style]
        with db.transaction() as conn:
            conn.execute(sql.format(table=table), make(ident, payload))
        sql, make = SELECTS[style]
        with db.transaction() as conn:
            rows = conn.execute(sql.format(table=table), make(payload)).fetchall()
        assert [(r["id"], r["v"]) for r in rows] == [(ident, payload)], (style, payload)
    with db.transaction() as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").scalar() == len(cases)
        assert conn.execute(f"SELECT count(*) FROM {victim}").scalar() == 1
    return len(cases)


async def _async_injection(db: Any, table: str, victim: str) -> int:
    cases = list(_injections(table, victim))
    for style, ident, payload in cases:
        sql, make = INSERTS[style]
        async with db.transaction() as conn:
            await conn.execute(sql.format(table=table), make(ident, payload))
        sql, make = SELECTS[style]
        async with db.transaction() as conn:
            rows = await (await conn.execute(sql.format(table=table), make(payload))).fetchall()
        assert [(r["id"], r["v"]) for r in rows] == [(ident, payload)], (style, payload)
    async with db.transaction() as conn:
        assert await (await conn.execute(f"SELECT count(*) FROM {table}")).scalar() == len(cases)
        assert await (await conn.execute(f"SELECT count(*) FROM {victim}")).scalar() == 1
    return len(cases)


def _create(run: Callable[[str], None], table: str, victim: str) -> None:
    run(f"CREATE TABLE {table} (id integer PRIMARY KEY, v varchar(200) NOT NULL)")
    run(f"CREATE TABLE {victim} (id integer)")
    run(f"INSERT INTO {victim} VALUES (1)")


@pytest.fixture
def pg_tables(pg_url: str) -> Iterator[tuple[str, str]]:
    table, victim = f"inj_{uuid.uuid4().hex[:10]}", f"victim_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        _create(conn.execute, table, victim)
    try:
        yield table, victim
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}, {victim}")


@pytest.mark.parametrize("target", ["psycopg", "sqlalchemy"])
def test_injection_is_inert_postgresql(target: str, pg_url: str, pg_tables: tuple[str, str]) -> None:
    url = pg_url if target == "psycopg" else pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
    with connect(url) as db:
        assert _sync_injection(db, *pg_tables) == len(PAYLOADS) * len(INSERTS)


@pytest.mark.parametrize("target", ["psycopg", "sqlalchemy", "sqlalchemy-asyncpg"])
async def test_injection_is_inert_postgresql_async(target: str, pg_url: str, pg_tables: tuple[str, str]) -> None:
    driver = {"sqlalchemy": "postgresql+psycopg://", "sqlalchemy-asyncpg": "postgresql+asyncpg://"}.get(target)
    url = pg_url.replace("postgresql://", driver, 1) if driver else pg_url
    async with connect_async(url) as db:
        assert await _async_injection(db, *pg_tables) == len(PAYLOADS) * len(INSERTS)


@pytest.mark.parametrize("target", ["sqlite", "mariadb"])
def test_injection_is_inert_other_databases(target: str, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    url = _url(target, request, tmp_path)
    with connect(url) as db:
        with db.transaction() as conn:
            _create(conn.execute, "inj", "victim")
        assert _sync_injection(db, "inj", "victim") == len(PAYLOADS) * len(INSERTS)
    async_url = _url(target, request, tmp_path, is_async=True)

    async def run_async() -> None:
        async with connect_async(async_url) as adb:
            async with adb.transaction() as conn:
                await conn.execute("DELETE FROM inj")
            await _async_injection(adb, "inj", "victim")

    asyncio.run(run_async())


def test_awkward_values_round_trip(pg_url: str) -> None:
    """Values that look like SQL or placeholders, and types with their own quoting, come back equal."""
    samples = [
        "'",
        "''",
        "\\",
        "%",
        "%%",
        "%s",
        ":x",
        "$1",
        "--",
        "/*",
        "é中\U0001f600",
        decimal.Decimal("1e-30"),
        dt.date(1, 1, 1),
        b"\x00'\\",
    ]
    with connect(pg_url) as db, db.transaction() as conn:
        for value in samples:
            assert conn.execute("SELECT :v AS v", {"v": value}).scalar() == value
