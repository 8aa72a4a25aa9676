"""Distribution metadata: names, extras, entry points, version, license, typing markers."""

from __future__ import annotations

from importlib.metadata import distribution, entry_points
from importlib.resources import files

import pytest

DISTRIBUTIONS = ["structum-database", "structum-database-sqlalchemy", "structum-database-psycopg"]
#: The worked third-party backend (examples/), packaged as a third party would package it.
EXAMPLE = "structum-database-sqlite3"


@pytest.mark.parametrize("name", [*DISTRIBUTIONS, EXAMPLE])
def test_version_license_and_python(name: str) -> None:
    meta = distribution(name).metadata
    assert meta["Version"] == "0.1.0"
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Requires-Python"] == ">=3.11"
    assert any(f.name == "LICENSE" for f in distribution(name).files or [])


def _requirements(dist: str) -> dict[str, set[str]]:
    from packaging.requirements import Requirement

    by_extra: dict[str, set[str]] = {}
    for text in distribution(dist).requires or []:
        req = Requirement(text)
        for extra in ("sqlalchemy", "postgres", "mysql", "asyncio", "all", "fastapi", "prometheus", "opentelemetry"):
            if req.marker is not None and req.marker.evaluate({"extra": extra}):
                shown = f"{req.name}[{','.join(sorted(req.extras))}]" if req.extras else req.name
                by_extra.setdefault(extra, set()).add(f"{shown}{req.specifier}")
    return by_extra


def test_extras_pull_in_the_backends_and_their_drivers() -> None:
    by_extra = _requirements("structum-database")
    # [sqlalchemy] opens the Quick Start's postgresql:// URL: the backend with its psycopg driver
    assert by_extra["sqlalchemy"] == {"structum-database-sqlalchemy[postgres]==0.1.0"}
    assert by_extra["postgres"] == {"structum-database-psycopg==0.1.0"}
    assert by_extra["mysql"] == {"structum-database-sqlalchemy[mysql]==0.1.0"}
    assert by_extra["asyncio"] == {"structum-database-sqlalchemy[asyncio,postgres]==0.1.0"}
    # [all] makes every example of the spec and docs/ work: both backends, async, MySQL, FastAPI
    # and the observers' libraries (docs/observability.md)
    assert by_extra["all"] == {
        "structum-database-sqlalchemy[asyncio,mysql,postgres]==0.1.0",
        "structum-database-psycopg==0.1.0",
        "fastapi>=0.121",
        "prometheus-client>=0.20",
        "opentelemetry-api>=1.27",
    }
    assert by_extra["prometheus"] == {"prometheus-client>=0.20"}
    assert by_extra["opentelemetry"] == {"opentelemetry-api>=1.27"}
    sqlalchemy = _requirements("structum-database-sqlalchemy")
    assert any(r.startswith("greenlet") or "sqlalchemy[asyncio]" in r for r in sqlalchemy["asyncio"])
    assert {"aiosqlite>=0.19", "psycopg[binary]>=3.1"} <= sqlalchemy["asyncio"]
    assert "aiomysql>=0.2" in sqlalchemy["mysql"]


def test_no_document_sends_users_to_the_public_index() -> None:
    """The name structum-database on PyPI is someone else's placeholder (docs/install.md)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    documents = [
        root / "README.md",
        *root.glob("docs/**/*.md"),
        *root.glob("*/README.md"),
        *root.glob("backends/*/README.md"),
    ]
    sources = [*root.glob("core/src/**/*.py"), *root.glob("backends/*/src/**/*.py")]
    for path in [p for p in documents + sources if p.name != "install.md"]:  # install.md says why not
        text = path.read_text(encoding="utf-8")
        assert "install structum-database" not in text and 'install "structum-database[' not in text, path
    assert "not on PyPI" in (root / "docs" / "install.md").read_text(encoding="utf-8")


def test_entry_points() -> None:
    found = entry_points()
    backends = {(e.name, e.value) for e in found.select(group="structum_database.backends")}
    assert ("sqlalchemy", "structum_lab.plugins.database_sqlalchemy._plugin") in backends
    assert ("psycopg", "structum_lab.plugins.database_psycopg._plugin") in backends
    assert ("postgres", "structum_lab.plugins.database_psycopg._plugin") in backends
    assert ("sqlite3", "structum_database_sqlite3._plugin") in backends
    schemes = {(e.name, e.value) for e in found.select(group="structum_database.schemes")}
    assert ("sqlite3", "structum_database_sqlite3._plugin") in schemes
    assert any(e.value == "structum_lab.plugins.database.pytest_plugin" for e in found.select(group="pytest11"))
    assert any(e.name == "structum-db" for e in found.select(group="console_scripts"))


@pytest.mark.parametrize(
    "package",
    [
        "structum_lab.plugins.database",
        "structum_lab.config",
        "structum_lab.plugins.dynaconf",
        "structum_lab.plugins.database_sqlalchemy",
        "structum_lab.plugins.database_psycopg",
        "structum_database_sqlite3",
    ],
)
def test_every_package_is_typed(package: str) -> None:
    assert files(package).joinpath("py.typed").is_file()


def test_namespace_packages_have_no_init() -> None:
    import structum_lab
    import structum_lab.plugins

    assert getattr(structum_lab, "__file__", None) is None
    assert getattr(structum_lab.plugins, "__file__", None) is None
    assert len(list(structum_lab.plugins.__path__)) >= 3  # one portion per distribution
