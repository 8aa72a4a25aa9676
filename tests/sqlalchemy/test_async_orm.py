"""AsyncSQLAlchemyDatabase with the spec's ORM model (section 4.3), on every async driver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from structum_lab.plugins.database import AsyncSQLAlchemyDatabase, from_config_async


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(50))
    email: Mapped[str] = mapped_column(String(255))


@pytest.fixture(params=["sqlite+aiosqlite", "postgresql+psycopg", "postgresql+asyncpg", "mysql+aiomysql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncSQLAlchemyDatabase]:
    scheme = request.param
    if scheme.startswith("sqlite"):
        url = f"{scheme}:///{tmp_path}/orm.db"
    elif scheme.startswith("postgresql"):
        url = request.getfixturevalue("pg_schema_url").replace("postgresql://", f"{scheme}://", 1)
    else:
        url = request.getfixturevalue("mysql_db_url").replace("mysql+pymysql://", f"{scheme}://", 1)
    database = AsyncSQLAlchemyDatabase(url, pool_size=2)
    async with database.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield database
    await database.shutdown()


async def test_async_session_with_the_spec_model(db: AsyncSQLAlchemyDatabase) -> None:
    async with db.get_session() as session:
        session.add_all([User(username="john", email="john@example.com"), User(username="jane", email="j@x.org")])
        await session.commit()
        users = (await session.scalars(select(User).where(User.username.like("jo%")))).all()
        assert [u.username for u in users] == ["john"]
        user = await session.get(User, 1)
        assert user is not None
        user.email = "newemail@example.com"
        await session.commit()
    async with db.transaction() as conn:
        rows = await (await conn.execute("SELECT username, email FROM users ORDER BY id")).fetchall()
    assert rows == [
        {"username": "john", "email": "newemail@example.com"},
        {"username": "jane", "email": "j@x.org"},
    ]
    assert db.get_pool_info()["checked_out"] == 0


async def test_session_rolls_back_on_error_and_joins_a_transaction(db: AsyncSQLAlchemyDatabase) -> None:
    with pytest.raises(RuntimeError):
        async with db.get_session() as session:
            session.add(User(username="ghost", email="g@x.org"))
            await session.flush()
            raise RuntimeError
    with pytest.raises(LookupError):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO users (id, username, email) VALUES (10, 'raw', 'r@x.org')")
            async with db.get_session() as session:
                session.add(User(id=11, username="orm", email="o@x.org"))
                await session.commit()  # only a savepoint: the transaction decides
            raise LookupError  # so both the raw and the ORM rows are rolled back
    async with db.transaction() as conn:
        assert await (await conn.execute("SELECT COUNT(*) FROM users")).scalar() == 0


async def test_from_config_async(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRUCTUM_DATABASE__URL", f"sqlite:///{tmp_path}/cfg.db")
    monkeypatch.setenv("STRUCTUM_DATABASE__BACKEND", "sqlalchemy")
    monkeypatch.chdir(tmp_path)
    db = from_config_async()
    try:
        assert isinstance(db, AsyncSQLAlchemyDatabase)
        assert db.url.startswith("sqlite:///")  # aiosqlite is chosen internally
        async with db.transaction() as conn:
            assert await (await conn.execute("SELECT 1 AS one")).fetchone() == {"one": 1}
    finally:
        await db.shutdown()
