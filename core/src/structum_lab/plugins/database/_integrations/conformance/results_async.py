"""Results, rows, ``:name`` parameters and literal safety, ``executemany()``, and the mapping
of the database's errors onto the core hierarchy (docs/results.md)."""

from __future__ import annotations

import pytest

from ..._contract.errors import (
    DatabaseError,
    IntegrityError,
    MultipleResultsFound,
    NoResultFound,
    ParameterError,
    ProgrammingError,
)
from .base_async import AsyncKitBase, names
from .protocols_async import AsyncKitDatabase
from .support import Opener, raises

__all__ = ["AsyncResultTests"]


class AsyncResultTests(AsyncKitBase):
    """The result and row API, parameters, and error mapping."""

    async def test_result_api_rowcount_fetchmany_and_rows(self, db: AsyncKitDatabase) -> None:
        async with db.transaction() as conn:
            for i in range(1, 8):
                await conn.execute("INSERT INTO items (id, name) VALUES (:id, :name)", {"id": i, "name": f"n{i}"})
            assert (await conn.execute("UPDATE items SET name = name WHERE id > :n", {"n": 4})).rowcount == 3
            result = await conn.execute("SELECT id, name FROM items ORDER BY id")
            assert result.keys() == ["id", "name"]
            assert result.rowcount == (7 if self.counts_selected_rows else -1)
            first = await result.fetchone()
            assert first is not None
            assert first["id"] == 1 and first[1] == "n1" and first.name == "n1"  # type: ignore[index]
            assert dict(first) == {"id": 1, "name": "n1"}
            assert [r["id"] for r in await result.fetchmany(size=2)] == [2, 3]
            assert [r["id"] for r in await result.fetchmany()] == [4]
            assert [r["id"] async for r in result] == [5, 6, 7]
            assert await result.fetchone() is None
            assert await result.fetchall() == []
            assert await result.fetchmany(5) == []
            rest = await conn.execute("SELECT id, name FROM items ORDER BY id")
            assert (await rest.fetchone()) == {"id": 1, "name": "n1"}
            assert [r["id"] for r in await rest.fetchmany(size=2)] == [2, 3]
            assert [r["id"] for r in await rest.fetchall()] == [4, 5, 6, 7]
            assert await (await conn.execute("SELECT COUNT(*) AS n FROM items")).scalar() == 7
            assert await (await conn.execute("SELECT 1 AS a, 2 AS a")).scalar() == 1  # by position
            assert await (await conn.execute("SELECT 1 WHERE false")).scalar() is None
            scalar_then = await conn.execute("SELECT id FROM items ORDER BY id")
            assert await scalar_then.scalar() == 1
            assert await scalar_then.fetchall() == []  # scalar() exhausts, as in SQLAlchemy
            await conn.execute("SELECT name FROM items WHERE id = :id", {"id": 3})
            assert await conn.fetchone() == {"name": "n3"}  # cursor style, spec section 1.1
            assert await conn.fetchone() is None
            await conn.execute("SELECT id FROM items WHERE id < 4 ORDER BY id")
            assert await conn.fetchmany(2) == [{"id": 1}, {"id": 2}]
            assert await conn.fetchall() == [{"id": 3}]
            deleted = await conn.execute("DELETE FROM items WHERE id = 7")
            assert deleted.rowcount == 1 and deleted.keys() == []
            for fetch in (deleted.fetchall, deleted.fetchone, deleted.fetchmany, deleted.scalar):
                with pytest.raises(ProgrammingError, match="rowcount"):
                    await fetch()

    async def test_sqlalchemy_style_result_api(self, db: AsyncKitDatabase) -> None:
        async with db.transaction() as conn:
            await conn.executemany(
                "INSERT INTO items (id, name) VALUES (:id, :n)", [{"id": i, "n": f"n{i}"} for i in (1, 2)]
            )
            one = await (await conn.execute("SELECT name FROM items WHERE id = 1")).one()
            assert one == {"name": "n1"}
            assert await (await conn.execute("SELECT name FROM items WHERE id = 3")).one_or_none() is None
            assert await (await conn.execute("SELECT name FROM items ORDER BY id")).first() == {"name": "n1"}
            assert await (await conn.execute("SELECT id FROM items ORDER BY id")).scalars().all() == [1, 2]
            assert await (await conn.execute("SELECT id FROM items WHERE id = 2")).scalar_one() == 2
            assert len(await (await conn.execute("SELECT id FROM items")).all()) == 2
            with pytest.raises(NoResultFound):
                await (await conn.execute("SELECT id FROM items WHERE id = 3")).one()
            with pytest.raises(MultipleResultsFound):
                await (await conn.execute("SELECT id FROM items")).one_or_none()

    async def test_two_columns_of_one_name_are_refused_when_read_as_rows(self, db: AsyncKitDatabase) -> None:
        async with db.transaction() as conn:
            for fetch in ("fetchone", "fetchall"):
                result = await conn.execute("SELECT 1 AS id, 2 AS id")
                with pytest.raises(ProgrammingError, match="more than one column named 'id'"):
                    await getattr(result, fetch)()

    async def test_executemany(self, db: AsyncKitDatabase, observer: AsyncKitDatabase) -> None:
        async with db.transaction() as conn:
            count = await conn.executemany(
                "INSERT INTO items (id, name) VALUES (:id, :name)", [{"id": i, "name": f"n{i}"} for i in range(100)]
            )
            assert count == (100 if self.counts_batch_rows else -1)
            assert await conn.executemany("INSERT INTO items (id, name) VALUES (:id, :name)", []) == 0
            assert await (await conn.execute("SELECT COUNT(*) FROM items")).scalar() == 100
        assert len(await names(observer)) == 100

    # -- parameters ------------------------------------------------------------------------

    async def test_named_parameters_never_touch_literals_or_comments(self, db: AsyncKitDatabase) -> None:
        async with db.transaction() as conn:
            result = await conn.execute(
                "SELECT :n + 1 AS n, ':lit' AS lit, '50%' AS pct, 'it''s :x' AS quoted /* :c */ -- :d\n", {"n": 41}
            )
            assert await result.fetchone() == {"n": 42, "lit": ":lit", "pct": "50%", "quoted": "it's :x"}
            # A name used twice binds twice; names the SQL does not use are ignored.
            same = await conn.execute("SELECT :a AS a, :b AS b, :a AS again", {"a": "one", "b": "two", "unused": 3})
            assert await same.fetchone() == {"a": "one", "b": "two", "again": "one"}

    async def test_parameter_errors_name_the_placeholders_never_the_values(
        self, db: AsyncKitDatabase, open_database: Opener[AsyncKitDatabase]
    ) -> None:
        async with db.transaction() as conn:
            with pytest.raises(ParameterError, match=":name") as info:
                await conn.execute("INSERT INTO items (id, name) VALUES (:id, :name)", {"id": "secret-value-1"})
            assert "secret-value-1" not in str(info.value)
            with pytest.raises(ParameterError):
                await conn.execute("SELECT :a AS a")
        strict = open_database(strict_params=True)
        async with strict.transaction() as conn:
            with pytest.raises(ParameterError, match="unexpected parameter 'unused'"):
                await conn.execute("SELECT :a AS a", {"a": 1, "unused": 2})

    # -- errors --------------------------------------------------------------------------

    async def test_database_errors_map_onto_the_core_hierarchy(self, db: AsyncKitDatabase) -> None:
        cases: list[tuple[str, type[DatabaseError], str]] = [
            ("INSERT INTO acct (id, balance) VALUES (1, 0)", IntegrityError, "unique_violation"),
            ("INSERT INTO items (id, name) VALUES (5, NULL)", IntegrityError, "not_null_violation"),
            ("SELEKT * FROM acct", ProgrammingError, "syntax_error"),
            ("SELECT * FROM no_such_table", ProgrammingError, "syntax_error"),
        ]
        for sql, expected, situation in cases:
            async with raises(expected) as info, db.transaction() as conn:
                await conn.execute(sql)
            error = info.value
            assert error.backend == self.backend, error
            assert error.__cause__ is not None and not isinstance(error.__cause__, DatabaseError)
            assert sql in str(error)  # the SQL as written, for the reader of the log
            self.check_error(situation, error)
        assert db.get_pool_info()["checked_out"] == 0
