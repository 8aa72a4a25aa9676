"""The spec's SQLAlchemy examples (sections 3, 4, 9), run as written on PostgreSQL. The sections
every backend shares (6-8): tests/semantics/test_spec_examples_async.py."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from structum_lab.config import set_config_provider
from structum_lab.plugins.database import SQLAlchemyDatabase
from structum_lab.plugins.dynaconf import DynaconfConfigProvider

SCHEMA = """
CREATE TABLE users (
    id SERIAL PRIMARY KEY,
    username VARCHAR(50) UNIQUE NOT NULL,
    email VARCHAR(255) UNIQUE NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP,
    last_login TIMESTAMP
);
CREATE TABLE sessions (id SERIAL PRIMARY KEY, expires_at TIMESTAMP NOT NULL);
"""


@pytest.fixture
def project(quick_start_project: Path) -> Path:
    """The Quick Start's project; its step 3 (the config provider) is the ``db`` fixture's."""
    return quick_start_project


@pytest.fixture
def db(project: Path) -> SQLAlchemyDatabase:
    provider = DynaconfConfigProvider(root_path=".")
    provider.auto_discover()
    set_config_provider(provider)
    database = SQLAlchemyDatabase.from_config()
    with database.transaction() as conn:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO users (username, email) VALUES ('alice', 'alice@example.com')")
    yield database
    database.shutdown()


def test_quick_start(db: SQLAlchemyDatabase, capsys: pytest.CaptureFixture[str]) -> None:
    # Section 3, step 3 (the provider setup ran in the fixture, as written there).
    with db.transaction() as conn:
        result = conn.execute("SELECT * FROM users WHERE id = :user_id", {"user_id": 1})
        user = result.fetchone()

        if user:
            print(f"Found user: {user['username']}")
    assert capsys.readouterr().out == "Found user: alice\n"
    assert db.get_pool_info()["size"] == 10  # from config/app/database.toml


def test_query_execution_examples(db: SQLAlchemyDatabase) -> None:
    # Section 4.2
    with db.transaction() as conn:
        result = conn.execute(
            """
            INSERT INTO users (username, email, created_at)
            VALUES (:username, :email, :created_at)
            RETURNING id
            """,
            {"username": "john_doe", "email": "john@example.com", "created_at": datetime.utcnow()},
        )
        new_id = result.fetchone()["id"]
    assert new_id == 2

    with db.transaction() as conn:
        result = conn.execute("SELECT id, username, email FROM users WHERE active = :active", {"active": True})
        user = result.fetchone()
        assert f"{user['id']}: {user['username']}" == "1: alice"
        users = result.fetchall()
        assert [f"{u['id']}: {u['username']}" for u in users] == ["2: john_doe"]
        assert result.fetchmany(size=100) == []

    with db.transaction() as conn:
        result = conn.execute(
            "UPDATE users SET last_login = :now WHERE id = :user_id", {"now": datetime.utcnow(), "user_id": 2}
        )
        assert result.rowcount == 1

    with db.transaction() as conn:
        conn.execute("INSERT INTO sessions (expires_at) VALUES ('2000-01-01'), ('2999-01-01')")
        result = conn.execute("DELETE FROM sessions WHERE expires_at < :now", {"now": datetime.utcnow()})
        assert result.rowcount == 1


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(50))
    email: Mapped[str] = mapped_column(String(255))


def test_orm_session(db: SQLAlchemyDatabase) -> None:
    # Section 4.3
    with db.get_session() as session:
        users = session.query(User).filter(User.username.like("ali%")).all()
        assert [u.username for u in users] == ["alice"]
        new_user = User(username="jane_doe", email="jane@example.com")
        session.add(new_user)
        session.commit()
        user = session.get(User, 1)
        if user:
            user.email = "newemail@example.com"
            session.commit()
    with db.transaction() as conn:
        emails = [r["email"] for r in conn.execute("SELECT email FROM users ORDER BY id").fetchall()]
    assert emails == ["newemail@example.com", "jane@example.com"]
    assert db.get_pool_info()["checked_out"] == 0


def test_orm_session_is_rolled_back_on_error_and_joins_a_transaction(db: SQLAlchemyDatabase) -> None:
    with pytest.raises(RuntimeError), db.get_session() as session:
        session.add(User(username="ghost", email="ghost@example.com"))
        session.flush()
        raise RuntimeError
    with db.transaction() as conn:
        conn.execute("INSERT INTO users (username, email) VALUES ('raw', 'raw@example.com')")
        with db.get_session() as session:  # shares the transaction
            session.add(User(username="orm", email="orm@example.com"))
            session.commit()
        seen = conn.execute("SELECT COUNT(*) FROM users WHERE username IN ('raw', 'orm')").scalar()
        assert seen == 2
    with db.transaction() as conn:
        names = {r["username"] for r in conn.execute("SELECT username FROM users").fetchall()}
    assert names == {"alice", "raw", "orm"}


def test_multiple_database_connections(project: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Section 9.2 and 9.3: namespaces configured only through environment variables.
    monkeypatch.setenv("STRUCTUM_PRIMARY_DB__URL", pg_url)
    monkeypatch.setenv("STRUCTUM_REPLICA_DB__URL", pg_url)
    monkeypatch.setenv("STRUCTUM_REPLICA_DB__POOL_SIZE", "2")
    primary_db = SQLAlchemyDatabase.from_config(namespace="primary_db")
    replica_db = SQLAlchemyDatabase.from_config(namespace="replica_db")
    try:
        assert primary_db.name == "primary_db" and replica_db.name == "replica_db"
        assert replica_db.get_pool_info()["size"] == 2
        with replica_db.transaction() as conn:
            assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
    finally:
        primary_db.shutdown()
        replica_db.shutdown()
