"""Options: the common ones keep their meaning, psycopg_pool's own names win, and the
backend is chosen by URL scheme or the ``backend`` key."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from structum_lab.config import set_config_provider
from structum_lab.plugins.database import (
    ConfigurationError,
    PostgresDatabase,
    SQLAlchemyDatabase,
    connect,
    from_config,
)
from structum_lab.plugins.database_psycopg._plugin import OPTIONS
from structum_lab.plugins.database_psycopg._settings import normalize_prepare_threshold
from structum_lab.plugins.dynaconf import DynaconfConfigProvider

UNREACHABLE = "postgresql://app:secret-pw@127.0.0.1:1/app"


@pytest.fixture
def built() -> Iterator[Any]:
    opened: list[PostgresDatabase] = []

    def build(url: str = UNREACHABLE, **options: Any) -> PostgresDatabase:
        db = PostgresDatabase(url, **options)
        opened.append(db)
        return db

    yield build
    for db in opened:
        db.shutdown()


def test_common_options_map_to_the_pool(built: Any) -> None:
    s = built(pool_size=4, max_overflow=6, pool_timeout=7, pool_recycle=120).settings
    assert (s.min_size, s.max_size, s.timeout, s.max_lifetime) == (4, 10, 7.0, 120.0)
    pool = built(pool_size=4, max_overflow=6, pool_timeout=7, pool_recycle=120).pool
    assert (pool.min_size, pool.max_size, pool.timeout, pool.max_lifetime) == (4, 10, 7.0, 120.0)


def test_psycopg_names_win_over_common_ones(built: Any) -> None:
    s = built(
        pool_size=10, min_size=2, max_size=20, timeout=5.0, pool_timeout=30, pool_recycle=60, max_lifetime=90
    ).settings
    assert (s.min_size, s.max_size, s.timeout, s.max_lifetime) == (2, 20, 5.0, 90.0)
    assert built(min_size=12).settings.max_size == 15  # never below min_size
    assert math.isinf(built(pool_recycle=-1).settings.max_lifetime)  # SQLAlchemy's "never"
    assert built().settings.max_lifetime == 3600.0


def test_driver_arguments(built: Any) -> None:
    kwargs = built(
        connect_timeout=0.5,
        statement_timeout=1.5,
        application_name="svc",
        prepare_threshold="off",
        connect_args={"keepalives_idle": 30},
    ).settings.kwargs
    assert kwargs["connect_timeout"] == 2  # libpq's minimum
    assert kwargs["options"] == "-c statement_timeout=1500"
    assert kwargs["application_name"] == "svc" and kwargs["prepare_threshold"] is None
    # autocommit: the engine sends BEGIN itself, with the first statement of each transaction
    assert kwargs["keepalives_idle"] == 30 and kwargs["autocommit"] is True
    merged = built(f"{UNREACHABLE}?options=-csearch_path%3Dapp", statement_timeout=2).settings.kwargs
    assert merged["options"] == "-csearch_path=app -c statement_timeout=2000"
    assert built(connect_args={"connect_timeout": 3}).settings.connect_timeout == 3


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), (False, None), ("none", None), ("OFF", None), (0, 0), (5, 5), ("7", 7)]
)
def test_prepare_threshold_values(value: object, expected: int | None) -> None:
    assert normalize_prepare_threshold(value) == expected


@pytest.mark.parametrize("value", [True, -1, "often", 1.5])
def test_prepare_threshold_rejects(value: object) -> None:
    with pytest.raises(ConfigurationError, match="prepare_threshold"):
        normalize_prepare_threshold(value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_size": 5, "max_size": 2}, "pool sizes do not fit"),
        ({"pool_size": 0}, "option 'pool_size' must be >= 1"),
        ({"connect_args": {"autocommit": True}}, "may not set autocommit"),
        ({"isolation_level": "chaos"}, "unknown isolation level"),
        ({"statement_timeout": -1}, "option 'statement_timeout' must be >= 0"),
    ],
)
def test_invalid_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PostgresDatabase(UNREACHABLE, **options)


def test_other_schemes_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="serves postgresql:// and postgres://"):
        PostgresDatabase("postgresql+psycopg://u@h/db")
    with pytest.raises(ConfigurationError, match="does not accept sqlite:// URLs"):
        connect("sqlite:///x.db", backend="psycopg")


def test_url_forms(built: Any, pg_url: str) -> None:
    for url in (
        pg_url,
        pg_url.replace("postgresql://", "postgres://"),
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
    ):
        db = built(url, pool_size=1)
        with db.transaction() as conn:
            assert conn.execute("SELECT current_database() AS d").scalar() == "test"
    db = built("host=127.0.0.1 user=app password='pw with space' dbname=x")
    assert "pw with space" not in repr(db) and db.name == "x"


def test_routing_between_installed_backends(pg_url: str) -> None:
    opened = [
        connect(pg_url, pool_size=1),
        connect(pg_url.replace("postgresql://", "postgres://"), pool_size=1),
        connect(pg_url, backend="postgres", pool_size=1),
        connect(pg_url, backend="sqlalchemy", pool_size=1),
        connect(pg_url.replace("postgresql://", "postgresql+psycopg://"), pool_size=1),
    ]
    try:
        assert [type(db) for db in opened] == [PostgresDatabase] * 3 + [SQLAlchemyDatabase] * 2
    finally:
        for db in opened:
            db.shutdown()


def test_declared_options_cover_the_constructor() -> None:
    import inspect

    from structum_lab.plugins.database import COMMON_OPTIONS, ReplicaOptions

    parameters = inspect.signature(PostgresDatabase.__init__).parameters
    accepted = {name for name, p in parameters.items() if p.kind is not p.VAR_KEYWORD} - {"self", "url"}
    accepted |= set(ReplicaOptions.__annotations__)  # **replication: Unpack[ReplicaOptions]

    assert accepted == (set(COMMON_OPTIONS) | set(OPTIONS)) - {"url", "backend"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "config" / "app").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    set_config_provider(None)


def use(project: Path, toml: str) -> None:
    (project / "config" / "app" / "database.toml").write_text(textwrap.dedent(toml))
    provider = DynaconfConfigProvider(root_path=str(project))
    provider.auto_discover()
    set_config_provider(provider)


def test_config_file_with_pgbouncer_and_pool_options(project: Path, pg_url: str) -> None:
    use(
        project,
        f"""
        [default]
        url = "{pg_url}"
        pool_size = 3
        pool_timeout = 4

        [default.options]
        prepare_threshold = false   # PgBouncer in transaction mode
        max_size = 6
        pool_use_lifo = true        # a SQLAlchemy option, accepted so configs can be shared
        """,
    )
    db = from_config()
    try:
        assert isinstance(db, PostgresDatabase)
        s = db.settings
        assert (s.min_size, s.max_size, s.timeout, s.kwargs["prepare_threshold"]) == (3, 6, 4.0, None)
        with db.transaction() as conn:
            assert conn.execute("SELECT 1 AS one").scalar() == 1
    finally:
        db.shutdown()


def test_config_typo_gets_a_suggestion(project: Path, pg_url: str) -> None:
    use(project, f'[default]\nurl = "{pg_url}"\nmin_sise = 2\n')
    with pytest.raises(ConfigurationError, match="did you mean 'min_size'"):
        from_config()


def test_environment_selects_the_backend(project: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    use(project, f'[default]\nurl = "{pg_url}"\npool_size = 1\n')
    monkeypatch.setenv("STRUCTUM_DATABASE__BACKEND", "sqlalchemy")
    db = from_config()
    try:
        assert isinstance(db, SQLAlchemyDatabase)
    finally:
        db.shutdown()
    with pytest.raises(ConfigurationError, match="always uses the psycopg backend"):
        PostgresDatabase.from_config()


def test_plugin_module_does_not_import_the_driver() -> None:
    import subprocess
    import sys

    code = (
        "import sys, structum_lab.plugins.database_psycopg._plugin as p; "
        "assert p.OPTIONS; print('psycopg' in sys.modules, 'psycopg_pool' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
