"""The first-party backends, declared once: what they serve and how to install them.

Like fsspec's ``known_implementations``, this table lets core give the exact
``pip install`` line for a backend that is not installed, and it fixes the
priority between first-party backends that accept the same URL scheme: earlier
rows win (a plain ``postgresql://`` URL goes to the native psycopg backend when
both are installed). Installed backends themselves are discovered from entry
points; this table never imports anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["KNOWN_BACKENDS", "KnownBackend", "known_backend", "known_for_scheme", "scheme_matches"]


@dataclass(frozen=True, slots=True)
class KnownBackend:
    name: str
    distribution: str
    extra: str
    aliases: tuple[str, ...]
    schemes: tuple[str, ...]
    description: str
    #: Public class name -> "module:attribute", re-exported lazily by core.
    exports: tuple[tuple[str, str], ...] = ()

    @property
    def install(self) -> str:
        """How to install it: from a checkout (the project is not on PyPI; see docs/install.md)."""
        folder = self.distribution.removeprefix("structum-database-")
        return f'pip install "./core[{self.extra}]" ./backends/{folder}  (in a checkout of structum-database)'


_SA_DIALECTS = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")

KNOWN_BACKENDS: Final[tuple[KnownBackend, ...]] = (
    KnownBackend(
        name="psycopg",
        distribution="structum-database-psycopg",
        extra="postgres",
        aliases=("postgres",),
        schemes=("postgresql", "postgres"),
        description="PostgreSQL through psycopg 3 and psycopg_pool (sync and asyncio)",
        exports=(
            ("PostgresDatabase", "structum_lab.plugins.database_psycopg:PostgresDatabase"),
            ("AsyncPostgresDatabase", "structum_lab.plugins.database_psycopg:AsyncPostgresDatabase"),
        ),
    ),
    KnownBackend(
        name="sqlalchemy",
        distribution="structum-database-sqlalchemy",
        extra="sqlalchemy",
        aliases=(),
        schemes=tuple(s for d in _SA_DIALECTS for s in (d, f"{d}+*")),
        description="SQLAlchemy 2 engines: SQLite, PostgreSQL, MySQL/MariaDB, Oracle, MSSQL (sync and asyncio)",
        exports=(
            ("SQLAlchemyDatabase", "structum_lab.plugins.database_sqlalchemy:SQLAlchemyDatabase"),
            ("AsyncSQLAlchemyDatabase", "structum_lab.plugins.database_sqlalchemy:AsyncSQLAlchemyDatabase"),
        ),
    ),
)


def scheme_matches(pattern: str, scheme: str) -> int | None:
    """0 for an exact match, 1 for a ``dialect+*`` wildcard match, None otherwise."""
    if pattern == scheme:
        return 0
    if pattern.endswith("+*") and "+" in scheme and scheme.partition("+")[0] == pattern[:-2]:
        return 1
    return None


def known_backend(name: str) -> KnownBackend | None:
    for known in KNOWN_BACKENDS:
        if name == known.name or name in known.aliases:
            return known
    return None


def known_for_scheme(scheme: str) -> list[KnownBackend]:
    return [k for k in KNOWN_BACKENDS if any(scheme_matches(p, scheme) is not None for p in k.schemes)]


def first_party_rank(name: str) -> int:
    for rank, known in enumerate(KNOWN_BACKENDS):
        if known.name == name:
            return rank
    return len(KNOWN_BACKENDS)
