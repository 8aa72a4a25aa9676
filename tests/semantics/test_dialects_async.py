"""What first-party flavours do on one dialect, beyond the conformance kit (which asks
only what ``db.features`` declares)."""

from __future__ import annotations

import pytest
from _flavours import Opener


@pytest.mark.dialects("postgresql")
async def test_postgres_cast_after_a_parameter(open_db_async: Opener) -> None:
    db = open_db_async()
    n = 41 if "asyncpg" in db.url else "41"  # asyncpg binds by the cast's type; the others send text
    async with db.transaction() as conn:
        result = await conn.execute(
            "SELECT :n::int + 1 AS n, '{a}'::text[] AS arr, $$:lit$$ AS lit, '50%' AS pct /* :c */", {"n": n}
        )
        row = await result.fetchone()
    assert row == {"n": 42, "arr": ["a"], "lit": ":lit", "pct": "50%"}


@pytest.mark.dialects("mysql")
async def test_mariadb_insert_returning_as_in_the_spec(open_db_async: Opener) -> None:
    """Section 7.4's ``INSERT ... RETURNING id`` on MariaDB, which has it though the mysql
    dialect does not declare ``features.returning`` (MySQL has not)."""
    db = open_db_async()
    async with db.transaction() as conn:
        await conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY AUTO_INCREMENT, username VARCHAR(50))")
        result = await conn.execute("INSERT INTO users (username) VALUES (:u) RETURNING id", {"u": "bob"})
        assert (await result.fetchone()) == {"id": 1}
