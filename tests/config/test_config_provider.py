"""DynaconfConfigProvider: layering, environments, env vars, errors and secrecy."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from structum_lab.config import ConfigError, SupportsSources
from structum_lab.plugins.dynaconf import DynaconfConfigProvider

PASSWORD = "s3cr3t-Pa55"


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STRUCTUM_* or Dynaconf variables from the outer environment."""
    for name in list(os.environ):
        if name.startswith(("STRUCTUM_", "DYNACONF")) or name.endswith("_FOR_DYNACONF"):
            monkeypatch.delenv(name)


def make_root(tmp_path: Path, files: dict[str, str] | None = None, secrets: str | None = None) -> Path:
    app = tmp_path / "config" / "app"
    app.mkdir(parents=True)
    for name, text in (files or {}).items():
        (app / name).write_text(text)
    if secrets is not None:
        (tmp_path / "config" / ".secrets.toml").write_text(secrets)
    return tmp_path


DATABASE = """\
[default]
url = "postgresql://localhost/dev"
pool_size = 5
hosts = ["a", "b"]

[default.options]
pool_pre_ping = true
connect_args = { connect_timeout = 10, sslMode = "prefer" }

[production]
pool_size = 20
hosts = ["c"]

[production.options]
pool_use_lifo = true
"""


def test_provider_satisfies_the_protocols(tmp_path: Path) -> None:
    provider = DynaconfConfigProvider(tmp_path)
    assert isinstance(provider, SupportsSources)
    assert provider.auto_discover() is provider


def test_environment_is_read_when_values_are_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = DynaconfConfigProvider.discover(make_root(tmp_path, {"database.toml": DATABASE}))
    assert provider.get("database.pool_size") == 5
    monkeypatch.setenv("STRUCTUM_ENV", "production")
    assert provider.environment == "production"
    assert provider.get("database.pool_size") == 20
    monkeypatch.setenv("STRUCTUM_ENV", "  Production ")  # case and blanks do not matter
    assert provider.get("database.pool_size") == 20


def test_constructor_environment_wins_over_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRUCTUM_ENV", "production")
    provider = DynaconfConfigProvider(make_root(tmp_path, {"database.toml": DATABASE}), environment="default")
    provider.auto_discover()
    assert provider.environment == "default"
    assert provider.get("database.pool_size") == 5


def test_custom_env_var_and_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYAPP_MODE", "production")
    monkeypatch.setenv("MYAPP_DATABASE__URL", "postgresql://override/db")
    monkeypatch.setenv("STRUCTUM_DATABASE__URL", "postgresql://ignored/db")
    root = make_root(tmp_path, {"database.toml": DATABASE})
    provider = DynaconfConfigProvider(root, env_var="MYAPP_MODE", env_prefix="MYAPP").auto_discover()
    assert provider.get("database.pool_size") == 20
    assert provider.get("database.url") == "postgresql://override/db"


def test_nested_tables_merge_and_lists_are_replaced(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"database.toml": DATABASE})
    provider = DynaconfConfigProvider(root, environment="production").auto_discover()
    assert provider.get("database.options") == {
        "pool_pre_ping": True,
        "connect_args": {"connect_timeout": 10, "sslMode": "prefer"},
        "pool_use_lifo": True,
    }
    # Dynaconf's own merge would give ["a", "b", "c"].
    assert provider.get("database.hosts") == ["c"]
    assert provider.describe("database")["hosts"].source == "config/app/database.toml [production]"


def test_top_level_keys_apply_to_every_environment_under_default(tmp_path: Path) -> None:
    text = 'echo = true\npool_size = 1\n\n[default]\npool_size = 5\n\n[production]\nurl = "postgresql://prod/db"\n'
    root = make_root(tmp_path, {"database.toml": text})
    for environment, url in (("development", None), ("production", "postgresql://prod/db")):
        provider = DynaconfConfigProvider(root, environment=environment).auto_discover()
        assert provider.get("database.echo") is True
        assert provider.get("database.pool_size") == 5
        assert provider.get("database.url") == url
    described = DynaconfConfigProvider(root).auto_discover().describe("database")
    assert described["echo"].source == "config/app/database.toml"
    assert described["pool_size"].source == "config/app/database.toml [default]"


def test_keys_dynaconf_reserves_for_itself_are_kept(tmp_path: Path) -> None:
    text = '[default]\nproject_root = "/srv"\nsettings_module = "app"\n[production]\nproject_root = "/prod"\n'
    root = make_root(tmp_path, {"app.toml": text})
    provider = DynaconfConfigProvider(root, environment="production").auto_discover()
    assert provider.get_namespace("app") == {"project_root": "/prod", "settings_module": "app"}
    assert provider.describe("app")["project_root"].source == "config/app/app.toml [production]"


def test_file_without_tables_is_plain_configuration(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"cache.toml": 'url = "redis://localhost"\nttl = 60\n'})
    provider = DynaconfConfigProvider(root, environment="production").auto_discover()
    assert provider.get_namespace("cache") == {"url": "redis://localhost", "ttl": 60}


def test_global_table_overrides_every_environment(tmp_path: Path) -> None:
    text = "[default]\necho = true\n[production]\necho = true\n[global]\necho = false\n"
    root = make_root(tmp_path, {"database.toml": text})
    for environment in ("development", "production"):
        provider = DynaconfConfigProvider(root, environment=environment).auto_discover()
        assert provider.get("database.echo") is False
        assert provider.describe("database")["echo"].source == "config/app/database.toml [global]"


def test_secrets_override_file_and_env_overrides_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = f'[database]\nurl = "postgresql://app:{PASSWORD}@db/prod"\n[database.options]\npool_pre_ping = false\n'
    provider = DynaconfConfigProvider.discover(make_root(tmp_path, {"database.toml": DATABASE}, secrets))
    assert provider.get("database.url") == f"postgresql://app:{PASSWORD}@db/prod"
    assert provider.get("database.options.pool_pre_ping") is False
    assert provider.get("database.options.connect_args.connect_timeout") == 10  # secrets merge, not replace

    monkeypatch.setenv("STRUCTUM_DATABASE__URL", "postgresql://env/db")
    assert provider.get("database.url") == "postgresql://env/db"
    assert provider.describe("database")["url"].source == "env STRUCTUM_DATABASE__URL"


def test_secrets_only_namespace(tmp_path: Path) -> None:
    secrets = '[cache]\npassword = "hunter22"\n[database]\nurl = "postgresql://x/y"\n'
    provider = DynaconfConfigProvider.discover(make_root(tmp_path, secrets=secrets))
    assert provider.get_namespace("cache") == {"password": "hunter22"}
    assert provider.namespaces() == ["cache", "database"]
    assert provider.describe("cache")["password"].source == "config/.secrets.toml [cache]"


def test_env_values_are_typed_and_keep_their_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = DynaconfConfigProvider.discover(make_root(tmp_path, {"database.toml": DATABASE}))
    monkeypatch.setenv("STRUCTUM_DATABASE__POOL_SIZE", "20")
    monkeypatch.setenv("STRUCTUM_DATABASE__ECHO", "true")
    monkeypatch.setenv("STRUCTUM_DATABASE__PASSWORD", "123456")
    monkeypatch.setenv("STRUCTUM_DATABASE__OPTIONS__POOL_PRE_PING", "false")
    monkeypatch.setenv("STRUCTUM_DATABASE__OPTIONS__CONNECT_ARGS__SSLMODE", "require")

    assert provider.get("database.pool_size") == 20
    assert provider.get("database.echo") is True
    assert provider.get("database.password") == 123456
    assert provider.get("database.options") == {
        "pool_pre_ping": False,
        # Env var names cannot carry case: SSLMODE lands on the file's sslMode.
        "connect_args": {"connect_timeout": 10, "sslMode": "require"},
    }
    described = provider.describe("database")
    assert described["password"].raw == "123456"
    assert described["pool_size"].raw == "20"
    assert described["options.pool_pre_ping"].source == "env STRUCTUM_DATABASE__OPTIONS__POOL_PRE_PING"
    assert described["options.pool_pre_ping"].raw == "false"
    assert described["options.connect_args.sslMode"].raw == "require"


def test_env_inline_table_and_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = DynaconfConfigProvider.discover(make_root(tmp_path, {"database.toml": DATABASE}))
    monkeypatch.setenv("STRUCTUM_DATABASE__OPTIONS", "{ pool_recycle = 60 }")
    monkeypatch.setenv("STRUCTUM_DATABASE__HOSTS", '["x"]')
    assert provider.get("database.options.pool_recycle") == 60
    assert provider.get("database.options.pool_pre_ping") is True  # the inline table merges
    assert provider.get("database.hosts") == ["x"]
    described = provider.describe("database")
    assert described["options.pool_recycle"].source == "env STRUCTUM_DATABASE__OPTIONS"
    assert described["options.pool_recycle"].raw is None  # the text is the whole table, not this value
    assert described["hosts"].raw == '["x"]'


def test_env_only_namespace_without_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRUCTUM_ENV", "production")
    monkeypatch.setenv("STRUCTUM_DEBUG", "1")  # no "__": not a namespace value
    monkeypatch.setenv("STRUCTUM_ANALYTICS__URL", "postgresql://analytics/db")
    monkeypatch.setenv("STRUCTUM_ANALYTICS__POOL__MAX", "7")
    provider = DynaconfConfigProvider.discover(tmp_path)
    assert provider.namespaces() == ["analytics"]
    assert provider.get_namespace("analytics") == {"url": "postgresql://analytics/db", "pool": {"max": 7}}
    assert provider.get_namespace("database") == {}
    assert provider.describe("database") == {}


def test_get_and_has(tmp_path: Path) -> None:
    provider = DynaconfConfigProvider.discover(make_root(tmp_path, {"database.toml": DATABASE}))
    assert provider.get("database.missing") is None
    assert provider.get("database.missing", 3) == 3
    assert provider.get("database.pool_size.deeper", "no") == "no"
    assert provider.get("nothing", {}) == {}
    assert provider.get("DATABASE.POOL_SIZE") == 5
    assert provider.get("database")["pool_size"] == 5
    assert provider.has("database")
    assert provider.has("database.options.connect_args.connect_timeout")
    assert not provider.has("database.options.nope")
    assert not provider.has("nothing")


def test_returned_values_are_copies(tmp_path: Path) -> None:
    provider = DynaconfConfigProvider.discover(make_root(tmp_path, {"database.toml": DATABASE}))
    provider.get_namespace("database")["options"]["pool_pre_ping"] = False
    provider.get("database.hosts").append("z")
    assert provider.get("database.options.pool_pre_ping") is True
    assert provider.get("database.hosts") == ["a", "b"]


def test_load_file_explicitly(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text("[default]\npool_size = 1\necho = true\n")
    (tmp_path / "more.toml").write_text("[default]\npool_size = 2\n")
    provider = DynaconfConfigProvider(tmp_path)
    assert provider.load_file("base.toml", namespace="reports") is provider
    provider.load_file(tmp_path / "more.toml", namespace="Reports")
    assert provider.get_namespace("reports") == {"pool_size": 2, "echo": True}
    assert provider.describe("reports")["pool_size"].source == "more.toml [default]"
    provider.load_file("base.toml")  # the stem as namespace; moves the file out of "reports"
    assert provider.namespaces() == ["base", "reports"]
    assert provider.get_namespace("reports") == {"pool_size": 2}
    with pytest.raises(ConfigError, match="does not exist"):
        provider.load_file("missing.toml")
    with pytest.raises(ConfigError, match="invalid namespace"):
        provider.load_file("base.toml", namespace="a.b")


def test_discovery_skips_hidden_and_dotted_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_root(
        tmp_path,
        {"database.toml": DATABASE, ".hidden.toml": "[default]\nx = 1\n", "database.local.toml": "[default]\nx=1\n"},
    )
    with caplog.at_level(logging.WARNING, logger="structum_lab.plugins.dynaconf"):
        provider = DynaconfConfigProvider.discover(root)
    assert provider.namespaces() == ["database"]
    assert "database.local.toml" in caplog.text


def test_invalid_toml_names_file_and_position(tmp_path: Path) -> None:
    root = make_root(
        tmp_path, {"database.toml": f'[default]\nurl = "postgresql://u:{PASSWORD}@h/db"\npool_size = = 5\n'}
    )
    with pytest.raises(ConfigError) as info:
        DynaconfConfigProvider.discover(root)
    message = str(info.value)
    assert str(root / "config" / "app" / "database.toml") in message
    assert "line 3, column 13" in message
    assert PASSWORD not in message


def test_invalid_secrets_file_does_not_echo_secrets(tmp_path: Path) -> None:
    root = make_root(tmp_path, secrets=f"[database]\npassword = {PASSWORD}\n")
    with pytest.raises(ConfigError) as info:
        DynaconfConfigProvider.discover(root)
    assert ".secrets.toml" in str(info.value)
    assert "line 2" in str(info.value)
    assert PASSWORD not in str(info.value)
    assert PASSWORD not in repr(info.value.__cause__)


def test_bad_root_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        DynaconfConfigProvider(tmp_path / "missing")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="not a directory"):
        DynaconfConfigProvider(tmp_path / "file")


def test_environment_table_that_is_not_a_table(tmp_path: Path) -> None:
    provider = DynaconfConfigProvider(
        make_root(tmp_path, {"database.toml": "production = 1\n"}), environment="production"
    )
    with pytest.raises(ConfigError, match="must be a table"):
        provider.auto_discover().get("database.url")


def test_unknown_environment_warns_once_with_closest_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    provider = DynaconfConfigProvider.discover(make_root(tmp_path, {"database.toml": DATABASE}))
    with caplog.at_level(logging.WARNING, logger="structum_lab.plugins.dynaconf"):
        provider.get("database.url")  # implicit "development": no warning
        assert caplog.records == []
        monkeypatch.setenv("STRUCTUM_ENV", "prodution")
        assert provider.get("database.pool_size") == 5  # [default] still applies
        provider.get("database.url")
        monkeypatch.setenv("STRUCTUM_ENV", "development")  # [default] alone is normal for it
        provider.get("database.url")
    [record] = caplog.records
    assert "'prodution'" in record.getMessage()
    assert "STRUCTUM_ENV" in record.getMessage()
    assert "Did you mean 'production'?" in record.getMessage()


def test_stray_dynaconf_settings_do_not_leak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_root(tmp_path, {"database.toml": DATABASE})
    (tmp_path / ".env").write_text("DYNACONF_URL=from-dotenv\nSTRUCTUM_DATABASE__ECHO=true\n")
    (tmp_path / "config" / "app" / "extra.toml").write_text("[default]\nleak = true\n")
    monkeypatch.chdir(tmp_path)
    stray = {
        "ENV_FOR_DYNACONF": "production",
        "FORCE_ENV_FOR_DYNACONF": "production",
        "DEFAULT_ENV_FOR_DYNACONF": "production",
        "ENVIRONMENTS_FOR_DYNACONF": "false",
        "MERGE_ENABLED_FOR_DYNACONF": "false",
        "NESTED_SEPARATOR_FOR_DYNACONF": "_",
        "INCLUDES_FOR_DYNACONF": str(tmp_path / "config" / "app" / "extra.toml"),
        "SETTINGS_FILE_FOR_DYNACONF": str(tmp_path / "config" / "app" / "extra.toml"),
        "LOAD_DOTENV_FOR_DYNACONF": "true",
        "DYNACONF_URL": "postgresql://leak/db",
        "DYNACONF_POOL_SIZE": "99",
    }
    for name, value in stray.items():
        monkeypatch.setenv(name, value)
    before = dict(os.environ)

    development = DynaconfConfigProvider.discover(tmp_path)
    assert development.get_namespace("database") == {
        "url": "postgresql://localhost/dev",
        "pool_size": 5,
        "hosts": ["a", "b"],
        "options": {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10, "sslMode": "prefer"}},
    }
    production = DynaconfConfigProvider(tmp_path, environment="production").auto_discover()
    assert production.get_namespace("database") == {
        "url": "postgresql://localhost/dev",
        "pool_size": 20,
        "hosts": ["c"],
        "options": {
            "pool_pre_ping": True,
            "connect_args": {"connect_timeout": 10, "sslMode": "prefer"},
            "pool_use_lifo": True,
        },
    }
    assert production.namespaces() == ["database", "extra"]
    assert production.get_namespace("extra") == {"leak": True}  # its own namespace, nothing more
    assert dict(os.environ) == before  # no .env file was loaded into the process


def test_secrets_stay_out_of_repr_and_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = f'[database]\npassword = "{PASSWORD}"\n'
    root = make_root(tmp_path, {"database.toml": DATABASE}, secrets)
    monkeypatch.setenv("STRUCTUM_DATABASE__URL", f"postgresql://app:{PASSWORD}@db/x")
    monkeypatch.setenv("STRUCTUM_ENV", "staging")
    with caplog.at_level(logging.DEBUG, logger="structum_lab.plugins.dynaconf"):
        provider = DynaconfConfigProvider(root).auto_discover()
        described = provider.describe("database")
        text = repr(provider)
    assert "database" in text
    assert "'staging'" in text
    assert str(root) in text
    assert PASSWORD not in text
    assert PASSWORD not in repr(described)
    assert "loaded secrets file config/.secrets.toml" in caplog.text
    assert "loaded config file config/app/database.toml" in caplog.text
    assert PASSWORD not in caplog.text
