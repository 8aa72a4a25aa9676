"""Per-dialect knowledge of this backend: the default drivers, the URL SQLAlchemy gets.

What a DB-API driver needs in general (parameter style, timeouts, what to install) is
core's (``kit.target_for``, ``kit.timeout_connect_args``, ``kit.driver_install_hint``).
"""

from __future__ import annotations

from typing import Final

from structum_lab.plugins.database import ConfigurationError, DatabaseURL

__all__ = [
    "is_memory_sqlite",
    "to_sqlalchemy_url",
]

_SYNC_DRIVER: Final = {"postgresql": "psycopg", "mysql": "pymysql", "mariadb": "pymysql"}
_ASYNC_DRIVER: Final = {
    "postgresql": "psycopg",
    "mysql": "aiomysql",
    "mariadb": "aiomysql",
    "sqlite": "aiosqlite",
}
_ASYNC_DRIVERS: Final = frozenset(
    {"psycopg", "psycopg_async", "asyncpg", "aiomysql", "asyncmy", "aiosqlite", "aioodbc"}
)


def to_sqlalchemy_url(url: DatabaseURL, *, is_async: bool) -> str:
    """The connectable SQLAlchemy URL: ``postgres://`` renamed, a default driver added.

    A bare ``postgresql://`` uses psycopg 3 (psycopg2 is not a dependency); async
    engines get an async driver (``sqlite+aiosqlite``, ``mysql+aiomysql``, ...).
    """
    if url.is_conninfo:
        raise ConfigurationError(
            "the SQLAlchemy backend needs a URL (postgresql://user@host/db), not a libpq key=value string"
        )
    dialect = "postgresql" if url.dialect == "postgres" else url.dialect
    driver = url.driver
    if is_async:
        if driver is None:
            driver = _ASYNC_DRIVER.get(dialect)
            if driver is None:
                raise ConfigurationError(
                    f"no default async driver for {dialect}://; name one, e.g. {dialect}+<asyncdriver>://"
                )
        elif driver not in _ASYNC_DRIVERS:
            suggestion = _ASYNC_DRIVER.get(dialect)
            hint = f" such as {dialect}+{suggestion}://" if suggestion else ""
            raise ConfigurationError(
                f"{dialect}+{driver}:// is a synchronous driver; AsyncSQLAlchemyDatabase needs an async one{hint}"
            )
    elif driver is None:
        driver = _SYNC_DRIVER.get(dialect)
    scheme = f"{dialect}+{driver}" if driver else dialect
    text = (
        url.with_scheme(scheme).render(hide_password=False) if scheme != url.scheme else url.render(hide_password=False)
    )
    return _hosts_in_query(text, url.hosts) if url.hosts else text


def _hosts_in_query(text: str, hosts: tuple[tuple[str, int | None], ...]) -> str:
    """libpq's multi-host form ``h1:5432,h2:5433`` as SQLAlchemy writes it: ``?host=h1:5432&host=h2:5433``."""
    head, _, rest = text.partition("://")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i != -1), default=len(rest))
    userinfo, at, _ = rest[:cut].rpartition("@")
    tail = rest[cut:]
    path, mark, query = tail.partition("?")
    extra = "&".join(f"host={h}:{p}" if p else f"host={h}" for h, p in hosts)
    query = f"{query}&{extra}" if mark and query else extra
    return f"{head}://{userinfo}{at}{path or '/'}?{query}"


def is_memory_sqlite(url: DatabaseURL) -> bool:
    if url.dialect != "sqlite":
        return False
    query = url.query_dict()
    return url.database in (None, "", ":memory:") or query.get("mode") == "memory"
