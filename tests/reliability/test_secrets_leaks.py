"""Scenario 10, secrets: a distinctive password - in the URL, in a ``?password=`` query parameter
(which SQLAlchemy's own masking misses) and in ``connect_args`` - never shows up in reprs of
databases, results and connections, in pool info, in health messages, in exception messages
and whole tracebacks (chained causes included), or in any log record at any level, with the
root logger at DEBUG and ``echo=True``. Failures are provoked too: a closed port, and a wrong
password on a throwaway cluster that checks passwords (the shared server trusts everyone)."""

from __future__ import annotations

import asyncio
import io
import logging
import traceback
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from structum_lab.plugins.database import (
    AsyncPostgresDatabase,
    AsyncSQLAlchemyDatabase,
    ConfigurationError,
    DatabaseError,
    DatabaseURL,
    PostgresDatabase,
    SQLAlchemyDatabase,
)

from ._infra import Cluster, pg_bin, require_tool
from ._workload import PG_URL

#: Distinctive, and full of characters that URLs must encode.
PASSWORD = "Zt4-Sec@ret:p/w%rd?x#9"
ENCODED = quote(PASSWORD, safe="")
KINDS = ["psycopg", "psycopg-async", "sqlalchemy", "sqlalchemy-async", "sqlalchemy-asyncpg"]
PLACES = ["userinfo", "query", "connect_args"]


def assert_clean(text: str, where: str) -> None:
    for form in (PASSWORD, ENCODED):
        assert form not in text, f"password found in {where}: ...{text[max(0, text.find(form) - 120) :][:200]}..."


def full_traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def make_url(role: str, host_port: str, place: str, password: str = PASSWORD) -> tuple[str, dict[str, Any] | None]:
    encoded = quote(password, safe="")
    if place == "userinfo":
        return f"postgresql://{role}:{encoded}@{host_port}", None
    if place == "query":
        base, _, db = host_port.partition("/")
        return f"postgresql://{role}@{base}/{db}?password={encoded}", None
    return f"postgresql://{role}@{host_port}", {"password": password}


def open_kind(kind: str, url: str, connect_args: dict[str, Any] | None) -> Any:
    options: dict[str, Any] = {
        "connect_args": connect_args,
        "echo": True,
        "pool_size": 1,
        "max_overflow": 0,
        "pool_timeout": 3,
        "connect_timeout": 2,
    }
    if kind.startswith("sqlalchemy"):
        driver = "asyncpg" if kind.endswith("asyncpg") else "psycopg"
        url = url.replace("postgresql://", f"postgresql+{driver}://", 1)
        cls: type[Any] = AsyncSQLAlchemyDatabase if "async" in kind else SQLAlchemyDatabase
    else:
        cls = AsyncPostgresDatabase if "async" in kind else PostgresDatabase
    return cls(url, **options)


class Everything(logging.Handler):
    """Every record, formatted with its traceback, plus its raw message and arguments."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.out = io.StringIO()

    def emit(self, record: logging.LogRecord) -> None:
        self.out.write(self.format(record) + "\n" + repr(record.msg) + repr(record.args) + "\n")


@pytest.fixture
def all_logs() -> Iterator[Everything]:
    handler = Everything()
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


@pytest.fixture
def secret_role(pg_url: str) -> Iterator[str]:
    role = f"sdb_secret_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
    try:
        yield role
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            conn.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.fixture(scope="module")
def password_cluster() -> Iterator[Cluster]:
    """A throwaway cluster that checks passwords (scram-sha-256) for role ``app``."""
    require_tool(pg_bin() is not None, "PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    cluster = Cluster()
    (cluster.datadir / "pg_hba.conf").write_text(
        "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
    )
    cluster.start()
    try:
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            conn.execute("CREATE ROLE app LOGIN PASSWORD 'the-right-one'")
        yield cluster
    finally:
        cluster.destroy()


def exercise_sync(db: Any, seen: list[str]) -> None:
    seen += [repr(db), str(db), db.url, repr(db.get_pool_info()), repr(getattr(db, "settings", None))]
    with db.transaction() as conn:
        result = conn.execute("SELECT current_user AS who")
        seen += [repr(conn), str(conn), repr(result), str(result.fetchone())]
    with db.get_connection() as conn:
        seen.append(repr(conn))
    seen.append(repr(db.execute("SELECT 1 AS one")))
    health = db.health_check()
    assert health.healthy, health.message
    seen += [repr(health), repr(health.to_dict())]
    with pytest.raises(DatabaseError) as failed, db.transaction() as conn:
        conn.execute("SELEC 1")
    seen.append(full_traceback(failed.value))
    seen.append(repr(db.get_pool_info()))


async def exercise_async(db: Any, seen: list[str]) -> None:
    seen += [repr(db), str(db), db.url, repr(db.get_pool_info())]
    async with db.transaction() as conn:
        result = await conn.execute("SELECT current_user AS who")
        seen += [repr(conn), repr(result), str(await result.fetchone())]
    conn = await db.get_connection()
    seen.append(repr(conn))
    await conn.close()
    seen.append(repr(await db.execute("SELECT 1 AS one")))
    health = await db.health_check()
    assert health.healthy, health.message
    seen += [repr(health), repr(health.to_dict())]
    with pytest.raises(DatabaseError) as failed:
        async with db.transaction() as conn:
            await conn.execute("SELEC 1")
    seen.append(full_traceback(failed.value))
    seen.append(repr(db.get_pool_info()))


def fail_sync(db: Any, seen: list[str]) -> None:
    seen += [repr(db), db.url]
    with pytest.raises(DatabaseError) as failed, db.transaction() as conn:
        conn.execute("SELECT 1")
    seen += [str(failed.value), repr(failed.value), full_traceback(failed.value)]
    health = db.health_check()
    assert not health.healthy
    seen += [repr(health), repr(health.to_dict()), repr(db.get_pool_info())]


async def fail_async(db: Any, seen: list[str]) -> None:
    seen += [repr(db), db.url]
    with pytest.raises(DatabaseError) as failed:
        async with db.transaction() as conn:
            await conn.execute("SELECT 1")
    seen += [str(failed.value), repr(failed.value), full_traceback(failed.value)]
    health = await db.health_check()
    assert not health.healthy
    seen += [repr(health), repr(health.to_dict()), repr(db.get_pool_info())]


def run(kind: str, db: Any, sync_step: Any, async_step: Any, seen: list[str]) -> None:
    if "async" in kind:

        async def go() -> None:
            try:
                await async_step(db, seen)
            finally:
                await db.shutdown()

        asyncio.run(go())
        return
    try:
        sync_step(db, seen)
    finally:
        db.shutdown()


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("kind", KINDS)
def test_password_never_shown_when_it_works(
    kind: str, place: str, secret_role: str, all_logs: Everything, capfd: pytest.CaptureFixture[str]
) -> None:
    url, connect_args = make_url(secret_role, "127.0.0.1:5432/test", place)
    seen: list[str] = []
    run(kind, open_kind(kind, url, connect_args), exercise_sync, exercise_async, seen)
    assert_clean("\n".join(seen), "reprs, results, health, errors")
    assert_clean(all_logs.out.getvalue(), "log records")
    out, err = capfd.readouterr()  # echo=True's own handler writes to stdout
    assert_clean(out + err, "stdout/stderr")
    assert all_logs.out.getvalue(), "DEBUG logging captured nothing"


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("kind", KINDS)
def test_password_never_shown_when_it_fails(
    kind: str,
    place: str,
    password_cluster: Cluster,
    all_logs: Everything,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A closed port, then a wrong password on a server that checks it."""
    seen: list[str] = []
    url, connect_args = make_url("app", "127.0.0.1:1/postgres", place)
    run(kind, open_kind(kind, url, connect_args), fail_sync, fail_async, seen)
    url, connect_args = make_url("app", f"127.0.0.1:{password_cluster.port}/postgres", place)
    run(kind, open_kind(kind, url, connect_args), fail_sync, fail_async, seen)
    text = "\n".join(seen)
    assert "password authentication failed" in text
    assert_clean(text, "errors, tracebacks and health messages")
    assert_clean(all_logs.out.getvalue(), "log records")
    out, err = capfd.readouterr()
    assert_clean(out + err, "stdout/stderr")


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:{PASSWORD.replace('@', '%40')}@127.0.0.1:1/test",  # raw '/', '?', '#', '%'
        f"postgresql://u:{PASSWORD}@127.0.0.1:1/test",  # raw '@' as well
        "postgresql://u:p@ss@w@rd@127.0.0.1:1/test",
        "postgresql://u:ab'cd ef@127.0.0.1:1/test",
    ],
)
def test_malformed_urls_do_not_echo_the_password(url: str) -> None:
    """A password the parser cannot place is neither echoed by the error nor half-masked."""
    password = url.split("://u:", 1)[1].rsplit("@127.0.0.1", 1)[0]
    try:
        parsed = DatabaseURL.parse(url)
    except ConfigurationError as exc:
        text = full_traceback(exc)
    else:
        text = parsed.render() + repr(parsed) + str(parsed)
    for fragment in {password, password.split("@")[-1], password.split("/")[0]}:
        if len(fragment) >= 3:
            assert fragment not in text, text


@pytest.mark.parametrize("password", ["p@ss'w\"d x", "post", "a&b=c"])
def test_masked_url_keeps_its_shape(password: str) -> None:
    """Masking replaces exactly the password and secret query values, not look-alikes elsewhere."""
    encoded = quote(password, safe="")
    url = DatabaseURL.parse(f"postgresql://postgres:{encoded}@h:5432/postgres?password={encoded}&sslmode=require")
    assert url.render() == "postgresql://postgres:***@h:5432/postgres?password=***&sslmode=require"
