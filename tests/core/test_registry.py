"""Backend discovery and selection, with real distribution metadata on disk."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import EntryPoint, distributions, entry_points
from pathlib import Path

import pytest

from structum_lab.plugins.database import (
    BackendConflictError,
    BackendLoadError,
    BackendNotFoundError,
    BackendNotInstalledError,
    ConfigurationError,
    DatabaseURL,
    SQLAlchemyDatabase,
    available_backends,
    connect,
    connect_async,
)
from structum_lab.plugins.database._config.registry import BACKEND_GROUP, SCHEME_GROUP, Registry, get_registry
from structum_lab.plugins.database.kit import CONTRACT_ATTRIBUTE, CONTRACT_VERSION

FAKE_PLUGIN = """
from structum_lab.plugins.database import Option, hookimpl


@hookimpl
def structum_database_options(is_async):
    return {"flavour": Option("flavour", "str", "plain", "A third-party option")}


@hookimpl
def structum_database_connect(url, options, is_async):
    from structum_lab.plugins.database import SQLAlchemyDatabase

    db = SQLAlchemyDatabase(url.with_scheme("sqlite"), name=options.get("name"))
    db.flavour = options.get("flavour", "plain")
    return db
"""


def make_dist(site: Path, name: str, groups: dict[str, dict[str, str]], modules: dict[str, str] | None = None) -> None:
    """Write an installed distribution (dist-info + modules) into ``site``."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = []
    for group, items in groups.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in items.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in (modules or {}).items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


def registry_with(site: Path, *, keep_installed: bool = True, drop: tuple[str, ...] = ()) -> Registry:
    eps: list[EntryPoint] = []
    if keep_installed:
        found = entry_points()
        eps += [
            e
            for g in (BACKEND_GROUP, SCHEME_GROUP)
            for e in found.select(group=g)
            if e.dist is None or e.dist.metadata["Name"] not in drop
        ]
    for dist in distributions(path=[str(site)]):
        eps += list(dist.entry_points)
    return Registry(eps)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    yield path
    for module in [m for m in sys.modules if m.startswith("fake_")]:
        del sys.modules[module]
    get_registry().refresh()


def select(registry: Registry, url: str, backend: str | None = None) -> str:
    return registry.select(DatabaseURL.parse(url), backend).name


def test_first_party_selection_by_scheme() -> None:
    registry = Registry()
    assert select(registry, "sqlite:///app.db") == "sqlalchemy"
    assert select(registry, "mysql+pymysql://root@127.0.0.1/test") == "sqlalchemy"
    assert select(registry, "postgresql+psycopg://u@h/db") == "sqlalchemy"
    # The native driver wins a plain postgresql:// when both backends are installed.
    assert select(registry, "postgresql://u@h/db") == "psycopg"
    assert select(registry, "postgres://u@h/db") == "psycopg"


def test_backend_key_overrides_the_scheme_and_aliases_work() -> None:
    registry = Registry()
    assert select(registry, "postgresql://u@h/db", backend="sqlalchemy") == "sqlalchemy"
    assert select(registry, "postgresql://u@h/db", backend="postgres") == "psycopg"
    assert select(registry, "postgresql://u@h/db", backend=" SQLAlchemy ") == "sqlalchemy"


def test_backend_that_does_not_accept_the_scheme() -> None:
    with pytest.raises(ConfigurationError, match=r"backend 'psycopg' does not accept sqlite:// URLs"):
        Registry().select(DatabaseURL.parse("sqlite://"), "psycopg")


def test_unknown_scheme_lists_installed_and_suggests() -> None:
    with pytest.raises(BackendNotFoundError) as info:
        Registry().select(DatabaseURL.parse("postgressql://u:hunter22@h/db"))
    message = str(info.value)
    assert "unknown URL scheme 'postgressql'" in message
    assert "did you mean postgresql://" in message
    assert "installed backends: psycopg (postgresql://, postgres://); sqlalchemy (" in message
    assert "hunter22" not in message


def test_unknown_backend_name_suggests_the_closest() -> None:
    with pytest.raises(BackendNotFoundError, match=r"unknown backend 'sqlalchmy'; did you mean 'sqlalchemy'\?"):
        Registry().get("sqlalchmy")


def test_known_backend_not_installed_gives_the_pip_command(site: Path) -> None:
    registry = registry_with(site, drop=("structum-database-psycopg",))
    with pytest.raises(BackendNotInstalledError) as by_name:
        registry.get("psycopg")
    assert 'pip install "./core[postgres]" ./backends/psycopg' in str(by_name.value)
    registry = registry_with(site, drop=("structum-database-psycopg", "structum-database-sqlalchemy"))
    with pytest.raises(BackendNotInstalledError) as by_scheme:
        registry.select(DatabaseURL.parse("mysql+pymysql://root@localhost/test"))
    assert by_scheme.value.install.startswith('pip install "./core[sqlalchemy]" ./backends/sqlalchemy')
    assert "no installed backend accepts mysql+pymysql:// URLs" in str(by_scheme.value)


def test_listing_reads_metadata_without_importing(site: Path) -> None:
    make_dist(
        site,
        "fake-lazy",
        {BACKEND_GROUP: {"lazy": "fake_lazy"}, SCHEME_GROUP: {"lazydb": "fake_lazy"}},
        {"fake_lazy": "raise RuntimeError('imported too early')"},
    )
    registry = registry_with(site)
    names = {b.name: b for b in registry.backends()}
    assert names["lazy"].schemes == ("lazydb",)
    assert names["lazy"].distribution == "fake-lazy" and names["lazy"].version == "1.0"
    assert "fake_lazy" not in sys.modules
    assert select(registry, "sqlite://") == "sqlalchemy"  # the broken one is never imported


def test_broken_backend_names_its_distribution_and_chains_the_error(site: Path) -> None:
    make_dist(
        site,
        "fake-broken",
        {BACKEND_GROUP: {"broken": "fake_broken"}, SCHEME_GROUP: {"brokendb": "fake_broken"}},
        {"fake_broken": "import not_a_real_module_xyz"},
    )
    registry = registry_with(site)
    info = registry.select(DatabaseURL.parse("brokendb://x"))
    with pytest.raises(BackendLoadError) as error:
        info.load()
    assert "distribution fake-broken 1.0 failed to import" in str(error.value)
    assert isinstance(error.value.__cause__, ModuleNotFoundError)
    assert error.value.distribution == "fake-broken"
    assert info.describe()["error"] is not None
    # Other backends are unaffected.
    assert registry.get("sqlalchemy").load() is not None


def test_two_distributions_claiming_one_name_is_an_error_naming_both(site: Path) -> None:
    make_dist(site, "fake-one", {BACKEND_GROUP: {"dupe": "fake_one"}}, {"fake_one": FAKE_PLUGIN})
    make_dist(site, "fake-two", {BACKEND_GROUP: {"dupe": "fake_two"}}, {"fake_two": FAKE_PLUGIN})
    registry = registry_with(site)
    with pytest.raises(BackendConflictError, match=r"registered by several distributions: fake-one, fake-two"):
        registry.get("dupe").load()


def test_the_same_distribution_seen_twice_is_not_a_conflict(site: Path) -> None:
    make_dist(site, "fake-twice", {BACKEND_GROUP: {"twice": "fake_twice"}}, {"fake_twice": FAKE_PLUGIN})
    eps = list(registry_with(site)._entry_points()[0])
    twice = [e for e in eps if e.name == "twice"]
    registry = Registry([*eps, *twice])  # an editable and a regular install of one package
    assert registry.get("twice").load() is not None


def test_third_party_tie_on_a_scheme_asks_for_backend(site: Path) -> None:
    for name in ("fake_a", "fake_b"):
        make_dist(
            site,
            name.replace("_", "-"),
            {BACKEND_GROUP: {name: name}, SCHEME_GROUP: {"tiedb": name}},
            {name: FAKE_PLUGIN},
        )
    registry = registry_with(site)
    with pytest.raises(ConfigurationError, match=r"several backends accept tiedb:// URLs: fake_a, fake_b"):
        registry.select(DatabaseURL.parse("tiedb://x"))
    assert select(registry, "tiedb://x", backend="fake_b") == "fake_b"


def test_third_party_backend_end_to_end_through_connect(site: Path, tmp_path: Path) -> None:
    make_dist(
        site,
        "fake-thirdparty",
        {BACKEND_GROUP: {"thirdparty": "fake_thirdparty"}, SCHEME_GROUP: {"thirdparty": "fake_thirdparty"}},
        {"fake_thirdparty": FAKE_PLUGIN},
    )
    get_registry().refresh()
    assert "thirdparty" in {b.name for b in available_backends()}
    db = connect(f"thirdparty:///{tmp_path}/third.db", flavour="spicy")
    try:
        assert isinstance(db, SQLAlchemyDatabase)
        assert db.flavour == "spicy"  # type: ignore[attr-defined]
        with db.transaction() as conn:
            assert conn.execute("SELECT 1 AS one").scalar() == 1
    finally:
        db.shutdown()
    with pytest.raises(ConfigurationError, match=r"unknown option 'flavor'; did you mean 'flavour'\?"):
        connect(f"thirdparty:///{tmp_path}/third.db", flavor="spicy")


@pytest.mark.parametrize(
    ("plugin", "driver"),
    [
        ("structum_lab.plugins.database_sqlalchemy._plugin", "sqlalchemy"),
        ("structum_lab.plugins.database_psycopg._plugin", "psycopg"),
    ],
)
def test_loading_a_backend_plugin_does_not_import_its_driver(plugin: str, driver: str) -> None:
    import subprocess

    code = f"import sys, {plugin}; print({driver!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- the contract version ----------------------------------------------------------------------


def _contract_backend(site: Path, name: str, declared: str | None) -> Registry:
    line = "" if declared is None else f"STRUCTUM_DATABASE_CONTRACT = {declared!r}\n"
    module = f"fake_{name}"
    make_dist(
        site,
        f"fake-{name}",
        {BACKEND_GROUP: {name: module}, SCHEME_GROUP: {f"{name}db": module}},
        {module: line + FAKE_PLUGIN},
    )
    return registry_with(site)


def test_a_backend_built_for_another_major_contract_is_refused_by_name(site: Path) -> None:
    registry = _contract_backend(site, "future", "2.0")
    info = registry.get("future")
    with pytest.raises(BackendLoadError) as error:
        info.load()
    message = str(error.value)
    assert "backend 'future' from distribution fake-future 1.0" in message
    assert "built for backend contract 2.0" in message and f"implements contract {CONTRACT_VERSION}" in message
    assert error.value.distribution == "fake-future" and error.value.backend == "future"
    assert not info.loaded and info.describe()["error"] == message
    with pytest.raises(BackendLoadError):  # the same answer, without importing it again
        info.load()
    get_registry().refresh()
    with pytest.raises(BackendLoadError, match=r"contract 2\.0"):
        connect("futuredb://x")
    assert registry.get("sqlalchemy").load() is not None  # the others are unaffected


def test_a_malformed_contract_version_is_refused(site: Path) -> None:
    with pytest.raises(BackendLoadError, match=r"STRUCTUM_DATABASE_CONTRACT = 'one', which is not a contract version"):
        _contract_backend(site, "garbled", "one").get("garbled").load()


def test_older_and_newer_minor_versions_load(site: Path, caplog: pytest.LogCaptureFixture) -> None:
    major = CONTRACT_VERSION.split(".")[0]
    assert _contract_backend(site, "older", f"{major}.0").get("older").load() is not None
    assert "newer than" not in caplog.text
    assert _contract_backend(site, "newer", f"{major}.99").get("newer").load() is not None
    assert f"built for backend contract {major}.99, newer than the {CONTRACT_VERSION}" in caplog.text


def test_a_backend_that_declares_nothing_is_taken_as_built_for_1_0(site: Path) -> None:
    assert _contract_backend(site, "legacy", None).get("legacy").load() is not None


@pytest.mark.parametrize("backend", ["sqlalchemy", "psycopg", "sqlite3"])
def test_installed_backends_declare_the_contract_they_were_built_for(backend: str) -> None:
    plugin = Registry().get(backend).load()
    assert getattr(plugin, CONTRACT_ATTRIBUTE) == "1.0"


def test_the_worked_third_party_backend_serves_sqlite3_urls(tmp_path: Path) -> None:
    """examples/structum-database-sqlite3, installed: its scheme selects it, sqlite:// stays SQLAlchemy's."""
    registry = Registry()
    assert select(registry, "sqlite3:///app.db") == "sqlite3"
    assert select(registry, "sqlite3:///app.db", backend="sqlite3") == "sqlite3"
    assert select(registry, "sqlite:///app.db") == "sqlalchemy"
    db = connect(f"sqlite3:///{tmp_path}/example.db")
    try:
        assert db.backend == "sqlite3" and type(db).__module__.startswith("structum_database_sqlite3")
        with db.transaction() as conn:
            assert conn.execute("SELECT 1 AS one").scalar() == 1
    finally:
        db.shutdown()
    with pytest.raises(ConfigurationError, match="the sqlite3 backend is sync only"):
        connect_async(f"sqlite3:///{tmp_path}/example.db")
