"""The user's spec, sections 3 (Quick Start) and 9 (Configuration), with its files as written."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from structum_lab.config import ConfigProvider, get_config_provider, set_config_provider
from structum_lab.plugins.dynaconf import DynaconfConfigProvider

QUICK_START_DATABASE_TOML = """\
[default]
url = "postgresql://user:password@localhost:5432/mydb"
pool_size = 10
pool_timeout = 30
echo = false  # Set true to log SQL queries
"""

QUICK_START_SECRETS_TOML = """\
[database]
url = "postgresql://user:YOUR_PASSWORD@prod.db.example.com:5432/production_db"
"""

# Section 9.1 exactly as the spec prints it, including the JSON-style
# ``{ "connect_timeout": 10 }``, which strict TOML rejects.
COMPLETE_DATABASE_TOML = """\
[default]
url = "postgresql://localhost:5432/dev_db"
pool_size = 5
pool_timeout = 30
pool_recycle = 3600
echo = true  # Log SQL in development

[default.options]
pool_pre_ping = true
connect_args = { "connect_timeout": 10 }

[production]
url = "postgresql://prod.db.internal:5432/prod_db"
pool_size = 20
pool_timeout = 60
pool_recycle = 1800
echo = false

[production.options]
pool_pre_ping = true
pool_use_lifo = true  # LIFO for better connection reuse
"""

COMPLETE_SECRETS_TOML = """\
[database]
# Production credentials
url = "postgresql://app_user:STRONG_PASSWORD@prod.db.example.com:5432/production"
"""
SECRET_URL = "postgresql://app_user:STRONG_PASSWORD@prod.db.example.com:5432/production"


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No STRUCTUM_* or Dynaconf variables from the outer environment, no global provider."""
    for name in list(os.environ):
        if name.startswith(("STRUCTUM_", "DYNACONF")) or name.endswith("_FOR_DYNACONF"):
            monkeypatch.delenv(name)
    set_config_provider(None)
    yield
    set_config_provider(None)


def write_project(root: Path, database_toml: str, secrets_toml: str) -> None:
    (root / "config" / "app").mkdir(parents=True)
    (root / "config" / "app" / "database.toml").write_text(database_toml)
    (root / "config" / ".secrets.toml").write_text(secrets_toml)


def test_quick_start_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path, QUICK_START_DATABASE_TOML, QUICK_START_SECRETS_TOML)
    monkeypatch.chdir(tmp_path)

    # Setup config
    provider = DynaconfConfigProvider(root_path=".")
    provider.auto_discover()
    set_config_provider(provider)

    current = get_config_provider()
    assert current is provider
    assert current.get("database.url") == "postgresql://user:YOUR_PASSWORD@prod.db.example.com:5432/production_db"
    assert current.get_namespace("database") == {
        "url": "postgresql://user:YOUR_PASSWORD@prod.db.example.com:5432/production_db",
        "pool_size": 10,
        "pool_timeout": 30,
        "echo": False,
    }


def test_complete_example_development(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_project(tmp_path, COMPLETE_DATABASE_TOML, COMPLETE_SECRETS_TOML)
    with caplog.at_level(logging.WARNING, logger="structum_lab.plugins.dynaconf"):
        provider = DynaconfConfigProvider.discover(tmp_path)

    assert provider.environment == "development"
    assert provider.get_namespace("database") == {
        "url": SECRET_URL,
        "pool_size": 5,
        "pool_timeout": 30,
        "pool_recycle": 3600,
        "echo": True,
        "options": {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}},
    }
    # The JSON-style inline table is accepted, with a warning that names the place; and the
    # secret url replacing the file's in every environment is said once, without its value.
    toml_warning, override = (r.getMessage() for r in caplog.records)
    assert "config/app/database.toml" in toml_warning
    assert "line 10, column 35" in toml_warning
    assert "config/.secrets.toml [database] overrides the url of config/app/database.toml [default]" in override
    assert "[database.production]" in override and SECRET_URL not in override
    provider.get_namespace("database")
    assert len(caplog.records) == 2  # once


@pytest.mark.parametrize("how", ["env var", "constructor"])
def test_complete_example_production(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    write_project(tmp_path, COMPLETE_DATABASE_TOML, COMPLETE_SECRETS_TOML)
    if how == "env var":
        monkeypatch.setenv("STRUCTUM_ENV", "production")
        provider = DynaconfConfigProvider(tmp_path).auto_discover()
    else:
        provider = DynaconfConfigProvider(tmp_path, environment="production").auto_discover()

    assert provider.environment == "production"
    assert provider.get_namespace("database") == {
        "url": SECRET_URL,
        "pool_size": 20,
        "pool_timeout": 60,
        "pool_recycle": 1800,
        "echo": False,
        # [production.options] merges into [default.options]: connect_args stays.
        "options": {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}, "pool_use_lifo": True},
    }


def test_environment_variable_overrides_section_9_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path, COMPLETE_DATABASE_TOML, COMPLETE_SECRETS_TOML)
    provider: ConfigProvider = DynaconfConfigProvider(tmp_path).auto_discover()

    # Set after discovery: variables are read whenever values are resolved.
    monkeypatch.setenv("STRUCTUM_DATABASE__URL", "postgresql://localhost/test_db")
    monkeypatch.setenv("STRUCTUM_DATABASE__POOL_SIZE", "20")
    monkeypatch.setenv("STRUCTUM_PRIMARY_DB__URL", "postgresql://primary.example/app")
    monkeypatch.setenv("STRUCTUM_REPLICA_DB__URL", "postgresql://replica.example/app")

    assert provider.get("database.url") == "postgresql://localhost/test_db"
    assert provider.get("database.pool_size") == 20
    assert provider.get_namespace("primary_db") == {"url": "postgresql://primary.example/app"}
    assert provider.get_namespace("replica_db") == {"url": "postgresql://replica.example/app"}
    assert isinstance(provider, DynaconfConfigProvider)
    assert provider.namespaces() == ["database", "primary_db", "replica_db"]


def test_describe_names_every_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path, COMPLETE_DATABASE_TOML, COMPLETE_SECRETS_TOML)
    monkeypatch.setenv("STRUCTUM_ENV", "production")
    monkeypatch.setenv("STRUCTUM_DATABASE__POOL_SIZE", "25")
    provider = DynaconfConfigProvider.discover(tmp_path)

    described = provider.describe("database")
    assert {key: item.source for key, item in described.items()} == {
        "url": "config/.secrets.toml [database]",
        "pool_size": "env STRUCTUM_DATABASE__POOL_SIZE",
        "pool_timeout": "config/app/database.toml [production]",
        "pool_recycle": "config/app/database.toml [production]",
        "echo": "config/app/database.toml [production]",
        "options.pool_pre_ping": "config/app/database.toml [production]",
        "options.pool_use_lifo": "config/app/database.toml [production]",
        "options.connect_args.connect_timeout": "config/app/database.toml [default]",
    }
    assert described["pool_size"].value == 25
    assert described["pool_size"].raw == "25"
    assert described["url"].value == SECRET_URL
    assert described["url"].raw is None
    assert described["options.connect_args.connect_timeout"].value == 10
