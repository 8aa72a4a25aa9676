"""The documentation site covers every public name, and every page is in it.

The reference pages (docs/reference/*.md) hold ``::: module`` directives that mkdocstrings
renders from the docstrings. Checked here: every public module has one, none narrows the
members it shows, and, in the built site, every name of each module's ``__all__`` has its
own entry. The build needs the docs requirements (``pip install -r requirements/docs.txt``):
without them the site test is skipped, and ``.ci/run`` runs it on the site it builds
(``STRUCTUM_DOCS_SITE``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"

#: Every public module: the package, its integrations, and the backend packages.
PUBLIC_MODULES = [
    "structum_lab.plugins.database",
    "structum_lab.plugins.database.fastapi",
    "structum_lab.plugins.database.testing",
    "structum_lab.plugins.database.testing.conformance",
    "structum_lab.plugins.database.kit",
    "structum_lab.plugins.database.kit_psycopg",
    "structum_lab.plugins.database.hookspecs",
    "structum_lab.plugins.database.pytest_plugin",
    "structum_lab.plugins.database_sqlalchemy",
    "structum_lab.plugins.database_psycopg",
    "structum_lab.config",
    "structum_lab.plugins.dynaconf",
]

DIRECTIVE = re.compile(r"^:::\s+(?P<module>[\w.]+)\s*$", re.MULTILINE)


def _directives() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for page in sorted(REFERENCE.glob("*.md")):
        for match in DIRECTIVE.finditer(page.read_text(encoding="utf-8")):
            found[match["module"]] = page
    return found


def test_every_public_module_has_a_reference_page() -> None:
    directives = _directives()
    assert sorted(set(PUBLIC_MODULES) - set(directives)) == []


def test_no_directive_narrows_the_members() -> None:
    for page in REFERENCE.glob("*.md"):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"^\s+(members|filters):", text, re.MULTILINE), f"{page.name} hides members"


def test_every_page_is_in_the_nav() -> None:
    """mkdocs --strict fails on pages left out of the nav too; this says which, without mkdocs."""
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    pages = {p for p in pages if not p.startswith("_")}
    missing = sorted(p for p in pages if not re.search(rf"(^|[\s:]){re.escape(p)}\s*$", config, re.MULTILINE))
    assert missing == []


@pytest.fixture(scope="module")
def site() -> Path:
    given = os.environ.get("STRUCTUM_DOCS_SITE")
    if given:
        return Path(given)
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None:
        pytest.skip("mkdocs is not installed (pip install -r requirements/docs.txt); .ci/run checks its built site")
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="structum-site-"))
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.mark.slow
@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_name_renders(site: Path, module: str) -> None:
    page = _directives()[module]
    html = (site / "reference" / page.stem / "index.html").read_text(encoding="utf-8")
    ids = set(re.findall(r'id="([^"]+)"', html))
    names = list(importlib.import_module(module).__all__)
    missing = [name for name in names if f"{module}.{name}" not in ids]
    assert missing == [], f"{module}: names of __all__ without an entry on reference/{page.name}"


def test_the_benchmarks_page_embeds_its_chart() -> None:
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert "](benchmarks.svg)" in text
    svg = (ROOT / "docs" / "benchmarks.svg").read_text(encoding="utf-8")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
