"""What a new user trips over (issue "What a new user trips over"): each point, on real databases."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from structum_lab.plugins.database import (
    ConfigurationError,
    DatabaseError,
    ParameterError,
    PostgresDatabase,
    ProgrammingError,
    SQLAlchemyDatabase,
    connect,
)

CLOSED = "postgresql://app:pw-not-shown@127.0.0.1:1/app"  # nothing listens on port 1


# -- 3. one validation, whichever way a database is built ----------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pool_size": 2.5}, "option 'pool_size' must be an integer, got 2.5 (float)"),
        ({"pool_size": 0}, "option 'pool_size' must be >= 1, got 0 (int)"),
        ({"pool_size": -1}, "option 'pool_size' must be >= 1, got -1 (int)"),
        ({"max_overflow": -1}, "option 'max_overflow' must be >= 0, got -1 (int)"),
        ({"pool_timeout": "soon"}, "option 'pool_timeout' must be a number (seconds), got 'soon' (str)"),
    ],
)
@pytest.mark.parametrize("how", ["constructor", "connect"])
@pytest.mark.parametrize("cls", [SQLAlchemyDatabase, PostgresDatabase])
def test_constructors_check_options_as_connect_does(
    cls: type[Any], how: str, options: dict[str, Any], message: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/x.db" if cls is SQLAlchemyDatabase else CLOSED
    with pytest.raises(ConfigurationError) as info:
        if how == "constructor":
            cls(url, **options)
        else:
            connect(url, backend=cls.backend_name, **options)
    assert message in str(info.value)


@pytest.mark.parametrize("cls", [SQLAlchemyDatabase, PostgresDatabase])
def test_numbers_as_text_are_read_as_connect_reads_them(cls: type[Any], tmp_path: Path) -> None:
    db = cls(f"sqlite:///{tmp_path}/x.db" if cls is SQLAlchemyDatabase else CLOSED, pool_size="3", max_overflow="1")
    try:
        info = db.get_pool_info()
        assert (info["size"], info["max_size"]) == (3, 4)
    finally:
        db.shutdown()


# -- 4. an unknown dialect is a ConfigurationError -------------------------------------------


def test_unknown_dialect_in_the_constructor_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="no dialect or driver named 'sqlite3'"):
        SQLAlchemyDatabase("sqlite3:///x.db")


# -- 5. extra keys in a parameter dict -------------------------------------------------------


@pytest.fixture(params=["psycopg", "sqlalchemy-postgresql", "sqlalchemy-sqlite", "sqlalchemy-mysql"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    which = request.param
    if which == "sqlalchemy-sqlite":
        url, backend = f"sqlite:///{tmp_path}/x.db", "sqlalchemy"
    elif which == "sqlalchemy-mysql":
        url, backend = request.getfixturevalue("mysql_url"), "sqlalchemy"
    else:
        url, backend = request.getfixturevalue("pg_url"), which.partition("-")[0]
    return url, backend


def test_extra_parameter_names_are_ignored_and_strict_params_refuses_them(any_db: Any) -> None:
    url, backend = any_db
    shared = {"a": 1, "b": "two", "unused": object()}  # one dict for several statements
    db = connect(url, backend=backend)
    try:
        assert db.execute("SELECT :a AS a", shared).fetchone() == {"a": 1}
        assert db.execute("SELECT :b AS b", shared).scalar() == "two"
        with pytest.raises(ParameterError, match="missing parameter :c"):
            db.execute("SELECT :c AS c", shared)
    finally:
        db.shutdown()
    strict = connect(url, backend=backend, strict_params=True)
    try:
        with pytest.raises(ParameterError, match="unexpected parameters 'b', 'unused'"):
            strict.execute("SELECT :a AS a", shared)
    finally:
        strict.shutdown()


# -- 6. pool sizes ----------------------------------------------------------------------------


def test_a_cap_alone_lowers_the_defaulted_minimum() -> None:
    db = PostgresDatabase(CLOSED, max_size=3)
    try:
        assert (db.settings.min_size, db.settings.max_size) == (3, 3)
    finally:
        db.shutdown()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_size": 5, "max_size": 3}, "min_size=5 is above max_size=3"),
        ({"pool_size": 10, "max_size": 3}, "pool_size=10 is above max_size=3"),
        ({"pool_timeout": 0}, "pool_timeout=0 would fail every checkout"),
        ({"timeout": 0}, "timeout=0 would fail every checkout"),
    ],
)
def test_pool_sizes_that_clash_name_what_was_set(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PostgresDatabase(CLOSED, **options)


# -- 7. error texts -------------------------------------------------------------------------


def test_errors_show_the_sql_as_written_and_name_the_parameter(any_db: Any) -> None:
    url, backend = any_db
    db = connect(url, backend=backend)
    try:
        with pytest.raises(ProgrammingError) as syntax:
            db.execute("SELECT 1 FORM nowhere WHERE id = :id", {"id": 1})
        assert "SQL: SELECT 1 FORM nowhere WHERE id = :id" in str(syntax.value)
        assert "$1" not in str(syntax.value) and "%s" not in str(syntax.value)
        if "mysql" not in url:  # PyMySQL sends any object as its str()
            with pytest.raises(DatabaseError, match=r"\(parameter :a\)"):
                db.execute("SELECT :a AS a, :b AS b", {"a": object(), "b": 2})
    finally:
        db.shutdown()


def test_an_outage_is_logged_once_not_once_per_attempt(caplog: pytest.LogCaptureFixture) -> None:
    import time

    with caplog.at_level(logging.WARNING):
        db = PostgresDatabase(CLOSED, pool_timeout=2, connect_timeout=2)
        try:
            with pytest.raises(DatabaseError), db.transaction():
                pass
            time.sleep(1.5)  # psycopg_pool keeps retrying in the background meanwhile
        finally:
            db.shutdown()
    mine = [r for r in caplog.records if "cannot connect" in r.getMessage()]
    pools = [r for r in caplog.records if r.name == "psycopg.pool" and "error connecting" in r.getMessage()]
    assert len(mine) == 1 and not pools
    assert "pw-not-shown" not in caplog.text


# -- 8. the CLI -----------------------------------------------------------------------------


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "structum_lab.plugins.database._integrations.cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_config_flags_an_unknown_key_as_check_does(tmp_path: Path) -> None:
    (tmp_path / "config" / "app").mkdir(parents=True)
    (tmp_path / "config" / "app" / "database.toml").write_text(
        f'[default]\nurl = "sqlite:///{tmp_path}/x.db"\npool_sise = 3\n'
    )
    shown, checked = _cli(tmp_path, "config"), _cli(tmp_path, "check")
    assert shown.returncode == checked.returncode == 3
    for run in (shown, checked):
        assert "unknown option 'pool_sise'" in run.stderr and "did you mean 'pool_size'?" in run.stderr
    assert "pool_sise" in shown.stdout  # the table is still shown


def test_check_says_which_backend_it_probes_with(tmp_path: Path) -> None:
    (tmp_path / "config" / "app").mkdir(parents=True)
    (tmp_path / "config" / "app" / "database.toml").write_text(f'[default]\nurl = "sqlite:///{tmp_path}/x.db"\n')
    run = _cli(tmp_path, "check")
    assert run.returncode == 0
    assert "with the sqlalchemy backend" in run.stderr and "sqlalchemy" in run.stdout


# -- 9. secrets across environments ---------------------------------------------------------


def _project(tmp_path: Path, database_toml: str, secrets_toml: str) -> Path:
    (tmp_path / "config" / "app").mkdir(parents=True)
    (tmp_path / "config" / "app" / "database.toml").write_text(textwrap.dedent(database_toml))
    (tmp_path / "config" / ".secrets.toml").write_text(textwrap.dedent(secrets_toml))
    return tmp_path


def test_a_secret_can_be_scoped_to_one_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from structum_lab.plugins.dynaconf import DynaconfConfigProvider

    root = _project(
        tmp_path,
        """
        [default]
        url = "postgresql://localhost/dev_db"
        """,
        """
        [database]
        password_hint = "shared"
        [database.production]
        url = "postgresql://app:S3CRET-value@prod.db.example.com/prod"
        """,
    )
    development = DynaconfConfigProvider.discover(root).get_namespace("database")
    assert development["url"] == "postgresql://localhost/dev_db"  # the production secret stays out
    assert development["password_hint"] == "shared"
    monkeypatch.setenv("STRUCTUM_ENV", "production")
    production = DynaconfConfigProvider.discover(root)
    assert production.get_namespace("database")["url"].endswith("@prod.db.example.com/prod")
    assert production.url_override("database") is None


def test_an_unscoped_secret_url_overriding_the_file_is_said_once_masked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from structum_lab.plugins.dynaconf import DynaconfConfigProvider

    root = _project(  # the spec's Quick Start files, as printed
        tmp_path,
        """
        [default]
        url = "postgresql://user:password@localhost:5432/mydb"
        pool_size = 10
        """,
        """
        [database]
        url = "postgresql://user:YOUR_PASSWORD@prod.db.example.com:5432/production_db"
        """,
    )
    provider = DynaconfConfigProvider.discover(root)
    with caplog.at_level(logging.WARNING, logger="structum_lab.plugins.dynaconf"):
        assert "prod.db.example.com" in provider.get_namespace("database")["url"]  # the spec's layout works
        provider.get_namespace("database")
    [record] = [r for r in caplog.records if "overrides the url" in r.getMessage()]
    assert "[database.production]" in record.getMessage() and "YOUR_PASSWORD" not in record.getMessage()
    run = _cli(root, "config")
    assert "overrides the url of config/app/database.toml [default]" in run.stderr
    assert "YOUR_PASSWORD" not in run.stdout + run.stderr


# -- 10. rows -------------------------------------------------------------------------------


def test_a_duplicated_column_name_is_an_error_that_names_it(any_db: Any) -> None:
    url, backend = any_db
    db = connect(url, backend=backend)
    try:
        with db.transaction() as conn:
            with pytest.raises(ProgrammingError, match=r"more than one column named 'id'.*alias them"):
                conn.execute("SELECT 1 AS id, 2 AS id, 3 AS x").fetchall()
            assert conn.execute("SELECT 1 AS id, 2 AS id").scalar() == 1  # by position
            row = conn.execute("SELECT 1 AS a, 2 AS b").fetchone()
            assert row is not None
            names = list(row)
            a, b = row.values()
            assert names == ["a", "b"] and (a, b) == (1, 2)  # the documented unpacking rule
    finally:
        db.shutdown()
