"""The pytest plugin, exercised with pytester against the real PostgreSQL and SQLite."""

from __future__ import annotations

import textwrap
from pathlib import Path

import psycopg
import pytest

pytest_plugins = ["pytester"]

ISOLATION_TESTS = textwrap.dedent(
    """
    import threading
    import pytest
    from sqlalchemy import Integer, String
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
    from structum_lab.plugins.database import ConfigurationError, get_database


    class Base(DeclarativeBase):
        pass


    class Item(Base):
        __tablename__ = "plugin_items"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        name: Mapped[str] = mapped_column(String(50))


    @pytest.fixture(scope="session")
    def structum_db_metadata():
        return Base.metadata


    def count(db):
        with db.transaction() as conn:
            return conn.execute("SELECT COUNT(*) FROM plugin_items").scalar()


    def test_1_writes_and_commits(structum_db):
        with structum_db.transaction() as conn:
            conn.execute("INSERT INTO plugin_items (id, name) VALUES (1, 'a')")
            conn.commit()                                   # code under test commits
            conn.execute("INSERT INTO plugin_items (id, name) VALUES (2, 'b')")
        conn = structum_db.get_connection()
        conn.execute("INSERT INTO plugin_items (id, name) VALUES (3, 'c')")
        conn.commit()
        conn.close()
        assert count(structum_db) == 3                      # visible inside the test


    def test_2_sees_nothing_from_test_1(structum_db):
        assert count(structum_db) == 0


    def test_3_rollback_and_savepoints_behave(structum_db):
        conn = structum_db.get_connection()
        conn.execute("INSERT INTO plugin_items (id, name) VALUES (1, 'kept')")
        conn.commit()
        conn.execute("INSERT INTO plugin_items (id, name) VALUES (2, 'undone')")
        conn.rollback()
        conn.close()
        with pytest.raises(RuntimeError):
            with structum_db.transaction() as c:
                c.execute("INSERT INTO plugin_items (id, name) VALUES (3, 'failed block')")
                raise RuntimeError
        with structum_db.transaction() as c:
            names = [r["name"] for r in c.execute("SELECT name FROM plugin_items").fetchall()]
        assert names == ["kept"]


    def test_4_registered_and_shared_across_threads(structum_db):
        assert get_database() is structum_db

        def app_code():
            with get_database().transaction() as conn:
                conn.execute("INSERT INTO plugin_items (id, name) VALUES (9, 'from a thread')")

        worker = threading.Thread(target=app_code)
        worker.start()
        worker.join()
        assert count(structum_db) == 1


    def test_5_orm_session_inside_the_test_transaction(structum_db):
        if structum_db.backend != "sqlalchemy":
            with pytest.raises(ConfigurationError, match="ORM sessions need the SQLAlchemy backend"):
                with structum_db.get_session():
                    pass
            return
        with structum_db.get_session() as session:
            session.add(Item(id=5, name="orm"))
            session.commit()
        assert count(structum_db) == 1


    def test_6_still_empty(structum_db):
        assert count(structum_db) == 0


    @pytest.mark.asyncio
    async def test_7_async_variant(structum_async_db):
        async with structum_async_db.transaction() as conn:
            await conn.execute("INSERT INTO plugin_items (id, name) VALUES (1, 'async')")
            await conn.commit()
        async with structum_async_db.transaction() as conn:
            assert await (await conn.execute("SELECT COUNT(*) FROM plugin_items")).scalar() == 1


    def test_8_empty_after_async(structum_db):
        assert count(structum_db) == 0
    """
)


def run(pytester: pytest.Pytester, url: str, *extra: str) -> pytest.RunResult:
    pytester.makepyfile(test_isolation=ISOLATION_TESTS)
    return pytester.runpytest_subprocess(f"--structum-db-url={url}", "-p", "no:cacheprovider", *extra)


@pytest.mark.parametrize("backend", ["sqlalchemy", "psycopg"])
def test_each_test_is_rolled_back_on_postgresql(pytester: pytest.Pytester, pg_schema_url: str, backend: str) -> None:
    result = run(pytester, pg_schema_url, f"--structum-db-backend={backend}")
    result.assert_outcomes(passed=8)
    schema = pg_schema_url.rsplit("%3D", 1)[1]
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test") as conn:
        # The session fixture dropped the table it created; nothing was left behind.
        found = conn.execute(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchone()
    assert found == (0,)


def test_each_test_is_rolled_back_on_sqlite(pytester: pytest.Pytester, tmp_path: Path) -> None:
    result = run(pytester, f"sqlite:///{tmp_path}/plugin.db")
    result.assert_outcomes(passed=8)


def test_schema_from_a_sql_file(pytester: pytest.Pytester, pg_schema_url: str) -> None:
    pytester.makefile(".sql", schema="CREATE TABLE things (id INT PRIMARY KEY);\nINSERT INTO things VALUES (1);\n")
    pytester.makeini("[pytest]\nstructum_db_schema = schema.sql\n")
    pytester.makepyfile(
        test_sql=(
            "def test_schema(structum_db):\n"
            "    with structum_db.transaction() as conn:\n"
            "        assert conn.execute('SELECT COUNT(*) FROM things').scalar() == 1\n"
        )
    )
    result = pytester.runpytest_subprocess(f"--structum-db-url={pg_schema_url}")
    result.assert_outcomes(passed=1)


def test_without_a_url_the_fixtures_skip_with_a_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRUCTUM_REQUIRE_SERVERS", raising=False)
    monkeypatch.delenv("STRUCTUM_TEST_DATABASE_URL", raising=False)
    pytester.makepyfile(test_nourl="def test_x(structum_db):\n    pass\n")
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no test database: pass --structum-db-url*"])
