"""Placeholder translation end to end: arbitrary text in string literals, comments and
parameters reaches PostgreSQL unchanged through PostgresDatabase, in every style.

(Core's tests/core/test_params.py checks the translator itself with hypothesis; this
checks what the server receives on the psycopg path, where ``%`` is special.)
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from structum_lab.plugins.database import ParameterError, PostgresDatabase

TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=24)
TRICKY = st.sampled_from([":x", "%s", "%(a)s", "$1", "%%", "%", "::int", "' ", "--", "/*", "$$", "\\", "?", "100%"])
STYLES = ["named", "format", "pyformat", "numeric_dollar"]


def literal(text: str, style: str) -> str:
    """``text`` as a SQL string literal written for ``style`` (``%%`` is ``%`` in the % styles)."""
    body = text.replace("'", "''")
    if style in ("format", "pyformat"):
        body = body.replace("%", "%%")
    return f"'{body}'"


def statement(style: str) -> tuple[str, Any]:
    marks = {"named": (":v", ":w"), "format": ("%s", "%s"), "pyformat": ("%(v)s", "%(w)s")}
    marks["numeric_dollar"] = ("$1", "$2")
    first, second = marks[style]
    return first, second


@pytest.fixture
def db(open_pg: Any) -> PostgresDatabase:
    database: PostgresDatabase = open_pg(pool_size=1)
    return database


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lit=st.one_of(TEXT, st.lists(st.one_of(TRICKY, TEXT), max_size=4).map("".join)),
    value=st.one_of(TEXT, TRICKY),
    number=st.integers(-(2**31), 2**31 - 1),
    style=st.sampled_from(STYLES),
)
def test_text_round_trips_in_every_style(db: PostgresDatabase, lit: str, value: str, number: int, style: str) -> None:
    first, second = statement(style)
    sql = (
        f"SELECT {literal(lit, style)} AS lit, {first}::text AS val, {second}::int AS num "
        f"/* {first} {second} :z */ -- {first}\n"
    )
    params: Any = {"v": value, "w": number} if style in ("named", "pyformat") else (value, number)
    with db.transaction() as conn:
        row = conn.execute(sql, params).fetchone()
    assert row == {"lit": lit, "val": value, "num": number}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lit=TEXT)
def test_statements_without_parameters_are_sent_untouched(db: PostgresDatabase, lit: str) -> None:
    body = lit.replace("'", "''")
    with db.transaction() as conn:
        assert conn.execute(f"SELECT '{body}' AS lit").scalar() == lit
        # an unused dict is ignored, and the text still goes untouched (no % parsing)
        assert conn.execute(f"SELECT '{body}' AS lit", {"unused": 1}).scalar() == lit
        with pytest.raises(ParameterError, match="no placeholders"):
            conn.execute(f"SELECT '{body}' AS lit", (1,))
