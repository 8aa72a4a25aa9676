"""Scenario 8, bad input: hypothesis-generated URLs, option tables (wrong types, unknown keys,
nulls, out-of-range numbers, junk driver arguments) and parameter sets. Every failure is a
``DatabaseError`` subclass (``ConfigurationError`` for bad configuration) with a message;
nothing else escapes, and nothing hangs (each example is timed).

No example may load the shared server: URLs and options point at a closed port (or at the
real server with a pool of one), so a generated ``pool_size = 10**9`` opens nothing."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from structum_lab.plugins.database import (
    ConfigurationError,
    DatabaseError,
    connect,
    connect_async,
    from_config,
)
from structum_lab.plugins.database._config.connect import accepted_options
from structum_lab.plugins.database._config.registry import get_registry

# SQLAlchemy warns that SQLite ignores generated query parameters; that is all it does.
pytestmark = pytest.mark.filterwarnings("ignore:Query string argument")

#: Generous: a refused connection takes milliseconds; connect_timeout is 2 s.
EXAMPLE_LIMIT_S = 15.0
SMALL = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 2, "connect_timeout": 2, "health_check_timeout": 3}
FUZZ = settings(
    max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

SCHEMES = [
    "postgresql",
    "postgres",
    "postgresql+psycopg",
    "postgresql+asyncpg",
    "postgresql+nosuchdriver",
    "mysql",
    "mysql+pymysql",
    "mariadb",
    "sqlite",
    "oracle",
    "nosuchdb",
    "http",
    "",
]
# IP literals, localhost and malformed hosts only: generated names would go to DNS.
HOSTS = ["127.0.0.1", "localhost", "", "[::1]", "::1", "[zz]", "bad host", "h%zz", "a@b", "127.0.0.1:x", "[127.0.0.1"]
PORTS = ["", ":1", ":0", ":5432", ":3306", ":65535", ":70000", ":-1", ":abc", ":"]
QUERY_KEYS = [
    "sslmode",
    "sslrootcert",
    "connect_timeout",
    "options",
    "application_name",
    "password",
    "prepare_threshold",
    "charset",
    "foo",
    "",
]
text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


@st.composite
def urls(draw: st.DrawFn) -> str:
    if draw(st.booleans()) and draw(st.booleans()):
        return draw(st.text(max_size=40))  # anything at all
    scheme = draw(st.sampled_from(SCHEMES))
    user = draw(st.one_of(st.just(""), st.sampled_from(["postgres", "root"]), text))
    password = draw(st.one_of(st.just(""), text))
    userinfo = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = draw(st.sampled_from(HOSTS))
    port = draw(st.sampled_from(PORTS))
    database = draw(st.one_of(st.sampled_from(["test", "", "nosuchdb"]), text))
    query = draw(st.lists(st.tuples(st.sampled_from(QUERY_KEYS), text), max_size=3))
    tail = "&".join(f"{k}={v}" for k, v in query)
    if scheme == "sqlite":
        database = draw(st.sampled_from([":memory:", "", "/nonexistent/dir/x.db", "%zz", "\x00"]))
        return f"sqlite:///{database}" + (f"?{tail}" if tail else "")
    return f"{scheme}://{userinfo}{host}{port}/{database}" + (f"?{tail}" if tail else "")


def _accepted_keys() -> list[str]:
    keys: set[str] = set()
    for name in ("psycopg", "sqlalchemy"):
        for is_async in (False, True):
            keys |= set(accepted_options(get_registry().get(name), is_async=is_async))
    return sorted(keys - {"url", "backend"})


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    st.binary(max_size=4),
)
DRIVER_KEYS = ["connect_timeout", "sslmode", "options", "foo", "prepare_threshold", "application_name", "autocommit"]
values = st.one_of(
    scalars,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(DRIVER_KEYS), scalars, max_size=3),
)


@st.composite
def option_tables(draw: st.DrawFn) -> dict[str, Any]:
    keys = st.one_of(st.sampled_from(_accepted_keys()), text.filter(bool))
    return draw(st.dictionaries(keys, values, max_size=4))


# Targets of the option tables: nothing listens on port 1, and SQLite needs no server.
OPTION_URLS = [
    "postgresql://postgres@127.0.0.1:1/test",
    "postgresql+psycopg://postgres@127.0.0.1:1/test",
    "sqlite://",
    "mysql+pymysql://root@127.0.0.1:1/test",
]


def _use(db: Any) -> None:
    """A transaction and a health check: errors must be DatabaseErrors, health must not raise."""
    try:
        with db.transaction() as conn:
            conn.execute("SELECT 1")
    except DatabaseError as exc:
        assert str(exc)  # noqa: PT017 - any DatabaseError is fine, as long as it says something
    db.health_check()


async def _use_async(db: Any) -> None:
    try:
        async with db.transaction() as conn:
            await conn.execute("SELECT 1")
    except DatabaseError as exc:
        assert str(exc)  # noqa: PT017 - any DatabaseError is fine, as long as it says something
    await db.health_check()


def _only_database_errors(action: Any) -> None:
    """Run ``action`` on a watched thread: a hang fails the example instead of the suite."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            action()
        except BaseException as exc:  # judged below, on the test's thread
            outcome.append(exc)
        else:
            outcome.append(None)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(EXAMPLE_LIMIT_S)
    assert outcome, f"no answer within {EXAMPLE_LIMIT_S:g} s: hung"
    error = outcome[0]
    if error is not None and not isinstance(error, DatabaseError):
        raise error
    if error is not None:
        assert str(error), f"{type(error).__name__} without a message"


@FUZZ
@given(url=urls())
def test_generated_urls(url: str) -> None:
    def attempt() -> None:
        db = connect(url, **SMALL)
        try:
            _use(db)
        finally:
            db.shutdown()

    _only_database_errors(attempt)


@settings(FUZZ, max_examples=60)
@given(url=urls())
def test_generated_urls_async(url: str) -> None:
    async def attempt() -> None:
        db = connect_async(url, **SMALL)
        try:
            await _use_async(db)
        finally:
            await db.shutdown()

    _only_database_errors(lambda: asyncio.run(attempt()))


@FUZZ
@given(url=st.sampled_from(OPTION_URLS), options=option_tables(), is_async=st.booleans())
def test_generated_option_tables(url: str, options: dict[str, Any], is_async: bool) -> None:
    def attempt() -> None:
        if is_async:

            async def run() -> None:
                db = connect_async(url, **options)
                try:
                    await _use_async(db)
                finally:
                    await db.shutdown()

            asyncio.run(run())
            return
        db = connect(url, **options)
        try:
            _use(db)
        finally:
            db.shutdown()

    _only_database_errors(attempt)


class DictProvider:
    """A configuration provider over a dict: the shape files and environment variables give."""

    def __init__(self, data: dict[str, dict[str, Any]]) -> None:
        self.data = data

    def get(self, key: str, default: Any = None) -> Any:
        namespace, _, rest = key.partition(".")
        return self.data.get(namespace, {}).get(rest, default)

    def has(self, key: str) -> bool:
        return self.get(key, self) is not self

    def get_namespace(self, namespace: str) -> dict[str, Any]:
        return dict(self.data.get(namespace, {}))


@FUZZ
@given(url=st.sampled_from(OPTION_URLS), options=option_tables(), backend=st.sampled_from([None, "sqlalchemy", "x"]))
def test_generated_config_tables(url: str, options: dict[str, Any], backend: str | None) -> None:
    table: dict[str, Any] = {"url": url, "options": options}
    if backend:
        table["backend"] = backend
    provider = DictProvider({"database": table})

    def attempt() -> None:
        db = from_config("database", provider=provider)
        try:
            _use(db)
        finally:
            db.shutdown()

    _only_database_errors(attempt)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"pool_size": None}, "pool_size"),
        ({"pool_timeout": None}, "pool_timeout"),
        ({"health_check_timeout": None}, "health_check_timeout"),
        ({"pool_size": "ten"}, "pool_size"),
        ({"pool_timeout": math.nan}, "pool_timeout"),
        ({"pool_sise": 3}, "did you mean 'pool_size'"),
        ({"connect_args": "password=x"}, "connect_args"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], fragment: str) -> None:
    for url in OPTION_URLS:
        with pytest.raises(ConfigurationError, match=fragment):
            connect(url, **options)


@pytest.fixture
def closed_sqlite(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/x.db"


def test_driver_rejects_connect_args(closed_sqlite: str) -> None:
    """Arguments the driver's connect() does not take are a ConfigurationError naming them."""
    db = connect(closed_sqlite, connect_args={"no_such_argument": 1})
    try:
        with pytest.raises(ConfigurationError, match="no_such_argument"), db.transaction():
            pass
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()
