"""from_config(): real files and env vars in a temp project, every bad input explained."""

from __future__ import annotations

from pathlib import Path

import pytest

from structum_lab.config import set_config_provider
from structum_lab.plugins.database import (
    ConfigurationError,
    PostgresDatabase,
    SQLAlchemyDatabase,
    from_config,
)
from structum_lab.plugins.dynaconf import DynaconfConfigProvider


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "config" / "app").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    set_config_provider(None)
    yield tmp_path
    set_config_provider(None)


def write(project: Path, text: str, name: str = "database") -> None:
    (project / "config" / "app" / f"{name}.toml").write_text(text)


def test_precedence_env_over_secrets_over_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(project, f'[default]\nurl = "sqlite:///{project}/file.db"\npool_size = 3\npool_timeout = 9\n')
    (project / "config" / ".secrets.toml").write_text(
        f'[database]\nurl = "sqlite:///{project}/secret.db"\npool_size = 4\n'
    )
    monkeypatch.setenv("STRUCTUM_DATABASE__POOL_SIZE", "6")
    with SQLAlchemyDatabase.from_config() as db:
        assert db.url.endswith("secret.db")
        assert db.get_pool_info()["size"] == 6
        assert db.engine.pool.timeout() == 9  # type: ignore[attr-defined] # from the file


def test_environment_sections_and_options_table(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        project,
        f'[default]\nurl = "sqlite:///{project}/dev.db"\npool_size = 2\n'
        "[default.options]\npool_pre_ping = false\n"
        f'[production]\nurl = "sqlite:///{project}/prod.db"\npool_size = 20\n'
        "[production.options]\npool_use_lifo = true\n",
    )
    with SQLAlchemyDatabase.from_config() as db:
        assert db.url.endswith("dev.db") and db.engine.pool._pre_ping is False
    monkeypatch.setenv("STRUCTUM_ENV", "production")
    with SQLAlchemyDatabase.from_config() as db:
        assert db.url.endswith("prod.db")
        assert db.get_pool_info()["size"] == 20
        assert db.engine.pool._pre_ping is False  # default.options merged under production.options
        assert db.engine.pool._pool.use_lifo is True  # type: ignore[attr-defined]


def test_a_typo_in_a_key_suggests_the_right_one(project: Path) -> None:
    write(project, f'[default]\nurl = "sqlite:///{project}/a.db"\npool_sise = 3\n')
    with pytest.raises(ConfigurationError) as info:
        SQLAlchemyDatabase.from_config()
    message = str(info.value)
    assert "unknown option 'pool_sise'" in message
    assert "config/app/database.toml [default]" in message
    assert "did you mean 'pool_size'?" in message


def test_a_wrong_type_names_key_type_and_source(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(project, f'[default]\nurl = "sqlite:///{project}/a.db"\n')
    monkeypatch.setenv("STRUCTUM_DATABASE__POOL_SIZE", "ten")
    with pytest.raises(
        ConfigurationError, match=r"option 'pool_size' \(from env STRUCTUM_DATABASE__POOL_SIZE\) must be an integer"
    ):
        SQLAlchemyDatabase.from_config()
    monkeypatch.setenv("STRUCTUM_DATABASE__POOL_SIZE", "0")
    with pytest.raises(ConfigurationError, match=r"'pool_size'.* must be >= 1"):
        SQLAlchemyDatabase.from_config()


def test_a_missing_url_says_where_to_set_it(project: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        from_config("replica_db")
    message = str(info.value)
    assert "namespace 'replica_db'" in message
    assert "config/app/replica_db.toml" in message
    assert "STRUCTUM_REPLICA_DB__URL" in message


def test_a_url_with_a_numeric_password_stays_a_string(
    project: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    # Env values are parsed as TOML; a URL (or a password) must keep its exact text.
    monkeypatch.setenv("STRUCTUM_DATABASE__URL", pg_url)
    monkeypatch.setenv("STRUCTUM_DATABASE__CONNECT_TIMEOUT", "3")
    with from_config() as db:
        assert db.execute("SELECT 1 AS one").scalar() == 1


def test_backend_key_selects_the_backend(project: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str) -> None:
    write(project, f'[default]\nurl = "{pg_url}"\npool_size = 2\n')
    with from_config() as db:
        assert isinstance(db, PostgresDatabase)
    monkeypatch.setenv("STRUCTUM_DATABASE__BACKEND", "sqlalchemy")
    with from_config() as db:
        assert isinstance(db, SQLAlchemyDatabase)
    with pytest.raises(ConfigurationError, match=r"selects backend 'sqlalchemy', but PostgresDatabase.from_config\(\)"):
        PostgresDatabase.from_config()


def test_explicit_provider_and_overrides(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    (other / "config" / "app").mkdir(parents=True)
    (other / "config" / "app" / "reports.toml").write_text(f'[default]\nurl = "sqlite:///{other}/r.db"\n')
    provider = DynaconfConfigProvider(root_path=other)
    provider.auto_discover()
    with from_config("reports", provider=provider, pool_size=1) as db:
        assert db.name == "reports"
        assert db.url.endswith("r.db")
