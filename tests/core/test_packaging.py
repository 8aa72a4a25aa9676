"""Distribution metadata: names, extras, entry points, version, license, typing markers."""

from __future__ import annotations

from importlib.metadata import distribution, entry_points
from importlib.resources import files

import pytest

DISTRIBUTIONS = ["structum-database", "structum-database-sqlalchemy", "structum-database-psycopg"]


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_version_license_and_python(name: str) -> None:
    meta = distribution(name).metadata
    assert meta["Version"] == "0.1.0"
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Requires-Python"] == ">=3.11"
    assert any(f.name == "LICENSE" for f in distribution(name).files or [])


def test_extras_pull_in_the_backends() -> None:
    from packaging.requirements import Requirement

    by_extra: dict[str, set[str]] = {}
    for text in distribution("structum-database").requires or []:
        req = Requirement(text)
        for extra in ("sqlalchemy", "postgres", "all", "fastapi"):
            if req.marker is not None and req.marker.evaluate({"extra": extra}):
                by_extra.setdefault(extra, set()).add(f"{req.name}{req.specifier}")
    assert by_extra["sqlalchemy"] == {"structum-database-sqlalchemy==0.1.0"}
    assert by_extra["postgres"] == {"structum-database-psycopg==0.1.0"}
    assert by_extra["all"] == {"structum-database-sqlalchemy==0.1.0", "structum-database-psycopg==0.1.0"}
    assert any(r.startswith("fastapi") for r in by_extra["fastapi"])


def test_entry_points() -> None:
    found = entry_points()
    backends = {(e.name, e.value) for e in found.select(group="structum_database.backends")}
    assert ("sqlalchemy", "structum_lab.plugins.database_sqlalchemy._plugin") in backends
    assert ("psycopg", "structum_lab.plugins.database_psycopg._plugin") in backends
    assert ("postgres", "structum_lab.plugins.database_psycopg._plugin") in backends
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
