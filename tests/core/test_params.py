"""Unit and property tests for placeholder translation (``_params``)."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from structum_lab.plugins.database._contract.errors import DatabaseError, ParameterError
from structum_lab.plugins.database._engine.params import (
    ASYNCPG,
    GENERIC,
    MYSQL,
    POSTGRESQL,
    PSYCOPG,
    PYMYSQL,
    SQLITE,
    SQLITE3,
    ParamTarget,
    SQLDialect,
    Statement,
    Translator,
)

PG = Translator(POSTGRESQL, PSYCOPG)


def tr(sql: str, dialect: SQLDialect = POSTGRESQL, target: ParamTarget = PSYCOPG) -> Statement:
    return Translator(dialect, target).prepare(sql)


def error(
    sql: str,
    params: object = None,
    dialect: SQLDialect = POSTGRESQL,
    target: ParamTarget = PSYCOPG,
    *,
    strict: bool = False,
) -> str:
    with pytest.raises(ParameterError) as info:
        Translator(dialect, target, strict=strict)(sql, params)
    return str(info.value)


# --- constants -----------------------------------------------------------------------------


def test_targets_match_driver_paramstyles() -> None:
    assert (PSYCOPG.named, PSYCOPG.positional, PSYCOPG.percent_escape) == ("pyformat", "format", True)
    assert (PYMYSQL.named, PYMYSQL.positional, PYMYSQL.percent_escape) == ("pyformat", "format", True)
    assert (SQLITE3.named, SQLITE3.positional, SQLITE3.percent_escape) == ("named", "qmark", False)
    assert (ASYNCPG.named, ASYNCPG.positional, ASYNCPG.percent_escape) == (None, "numeric_dollar", False)


def test_dialects() -> None:
    flags = [
        "backslash_escapes",
        "dollar_quotes",
        "backtick_identifiers",
        "hash_comments",
        "nested_comments",
        "escape_strings",
        "dash_comment_needs_space",
    ]
    on = {d.name: {f for f in flags if getattr(d, f)} for d in (POSTGRESQL, MYSQL, SQLITE, GENERIC)}
    assert on == {
        "postgresql": {"dollar_quotes", "nested_comments", "escape_strings"},
        "mysql": {"backslash_escapes", "backtick_identifiers", "hash_comments", "dash_comment_needs_space"},
        "sqlite": {"backtick_identifiers"},
        "generic": set(),
    }


def test_dataclasses_are_frozen() -> None:
    with pytest.raises(AttributeError):
        POSTGRESQL.name = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        PSYCOPG.name = "x"  # type: ignore[misc]


# --- recognising :name ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT :a", "SELECT %(a)s"),
        ("SELECT :a::int", "SELECT %(a)s::int"),
        ("SELECT x::int, :a", "SELECT x::int, %(a)s"),
        ("SELECT arr[1:2], :a", "SELECT arr[1:2], %(a)s"),
        ("SELECT arr[:a]", "SELECT arr[%(a)s]"),
        ("SELECT x:y, :a", "SELECT x:y, %(a)s"),
        ("SELECT f(b := 1), :a", "SELECT f(b := 1), %(a)s"),
        ("SELECT ':x', :a", "SELECT ':x', %(a)s"),
        ("SELECT 'it''s :x', :a", "SELECT 'it''s :x', %(a)s"),
        ('SELECT "col:x", :a', 'SELECT "col:x", %(a)s'),
        ('SELECT "a"":x", :a', 'SELECT "a"":x", %(a)s'),
        ("SELECT :a -- :x\n", "SELECT %(a)s -- :x\n"),
        ("SELECT /* :x */ :a", "SELECT /* :x */ %(a)s"),
        ("SELECT $$ :x $$, :a", "SELECT $$ :x $$, %(a)s"),
        ("SELECT $fn$ :x ' $fn$, :a", "SELECT $fn$ :x ' $fn$, %(a)s"),
        ("SELECT E'\\':x', :a", "SELECT E'\\':x', %(a)s"),
        ("SELECT e'\\\\', :a", "SELECT e'\\\\', %(a)s"),
        ("SELECT 'a\\', :a", "SELECT 'a\\', %(a)s"),
        ("SELECT /* a /* :x */ :y */ :a", "SELECT /* a /* :x */ :y */ %(a)s"),
        ("SELECT :a_1, :_b", "SELECT %(a_1)s, %(_b)s"),
        ("SELECT (:a)", "SELECT (%(a)s)"),
    ],
)
def test_named_recognition_postgresql(sql: str, expected: str) -> None:
    assert tr(sql).sql == expected


@pytest.mark.parametrize("sql", ["SELECT a::int", "SELECT x:y", "SELECT $x:y", "SELECT 1:2", "SELECT :1", "SELECT ::a"])
def test_colon_look_alikes_are_not_placeholders(sql: str) -> None:
    stmt = tr(sql)
    assert stmt.style == "none"
    assert stmt.sql is sql


def test_nested_comments_only_where_the_dialect_nests() -> None:
    sql = "SELECT /* a /* b */ :x */ 1"
    assert tr(sql, POSTGRESQL).style == "none"
    # Without nesting the comment ends at the first */ and :x is a placeholder.
    assert tr(sql, GENERIC).names == ("x",)


def test_dollar_quotes_only_in_postgresql() -> None:
    assert tr("SELECT $$ :x $$", POSTGRESQL).style == "none"
    assert tr("SELECT $$ :x $$", GENERIC).names == ("x",)


def test_dollar_quote_tag_must_match() -> None:
    stmt = tr("SELECT $a$ :x $b$ :y $a$, :z")
    assert stmt.names == ("z",)


def test_unterminated_constructs_swallow_the_rest() -> None:
    for sql in ["SELECT ':x", 'SELECT ":x', "SELECT /* :x", "SELECT $$ :x", "SELECT -- :x", "SELECT E'\\' :x"]:
        assert tr(sql).style == "none", sql


def test_e_string_only_with_escape_strings() -> None:
    sql = "SELECT E'\\':x' :a"
    assert tr(sql, POSTGRESQL).names == ("a",)
    # Standard strings: '\' ends at the second quote, so :x is outside and the rest is open.
    assert tr(sql, GENERIC).names == ("x",)


def test_identifier_ending_in_e_is_not_an_escape_string() -> None:
    # 'somee' followed by a quote: the quote opens a standard string, so \' does not escape.
    assert tr("SELECT somee'\\' :a", POSTGRESQL).names == ("a",)


def test_mysql_lexing() -> None:
    assert tr("SELECT `a:b`, :a", MYSQL, PYMYSQL).sql == "SELECT `a:b`, %(a)s"
    assert tr("SELECT `a``:b`, :a", MYSQL, PYMYSQL).names == ("a",)
    assert tr("SELECT 'it\\'s :x', :a", MYSQL, PYMYSQL).names == ("a",)
    assert tr('SELECT "dq \\" :x", :a', MYSQL, PYMYSQL).names == ("a",)
    assert tr("SELECT :a # :x\n, 1", MYSQL, PYMYSQL).names == ("a",)
    assert tr("SELECT :a -- :x\n, 1", MYSQL, PYMYSQL).names == ("a",)
    assert tr("SELECT :a --\t:x\n", MYSQL, PYMYSQL).names == ("a",)
    # MySQL needs whitespace after --: 1--:b is 1 - -:b.
    assert tr("SELECT 1--:b", MYSQL, PYMYSQL).sql == "SELECT 1--%(b)s"
    assert tr("SELECT 1--:b", POSTGRESQL).style == "none"


def test_hash_comments_only_in_mysql() -> None:
    assert tr("SELECT x # :a\n", POSTGRESQL).names == ("a",)
    assert tr("SELECT x # :a\n", MYSQL, PYMYSQL).style == "none"


def test_backticks_not_special_in_postgresql() -> None:
    assert tr("SELECT `:a`", POSTGRESQL).names == ("a",)
    assert tr("SELECT `:a`", SQLITE, SQLITE3).style == "none"


def test_backslash_does_not_escape_in_postgresql_standard_strings() -> None:
    assert tr("SELECT 'a\\', :a").names == ("a",)
    # In MySQL the same text is one unterminated string.
    assert tr("SELECT 'a\\', :a", MYSQL, PYMYSQL).style == "none"


# --- recognising $n and %s -----------------------------------------------------------------


def test_dollar_numbers() -> None:
    stmt = tr("SELECT $2, $1, $2")
    assert stmt.style == "numeric_dollar"
    assert stmt.sql == "SELECT %s, %s, %s"
    assert stmt.bind(("one", "two")) == ("two", "one", "two")
    assert stmt.names == ()


@pytest.mark.parametrize("sql", ["SELECT a$1", "SELECT '$1'", "SELECT $fn$ $1 $fn$", 'SELECT "$1"', "SELECT $$$1$$"])
def test_dollar_look_alikes(sql: str) -> None:
    assert tr(sql).style == "none"


def test_dollar_numbers_keep_order_when_sequential() -> None:
    stmt = tr("SELECT $1, $2")
    params = [1, 2]
    assert stmt.bind(params) is params


def test_dollar_numbers_to_qmark() -> None:
    stmt = tr("SELECT $2, '$1', $1", SQLITE, SQLITE3)
    assert stmt.sql == "SELECT ?, '$1', ?"
    assert stmt.bind([10, 20]) == (20, 10)


def test_dollar_numbers_unchanged_for_asyncpg() -> None:
    sql = "SELECT $2, $1, '100%'"
    stmt = tr(sql, POSTGRESQL, ASYNCPG)
    assert stmt.sql is sql
    params = (1, 2)
    assert stmt.bind(params) is params


def test_dollar_number_gaps_and_zero() -> None:
    assert "missing $2" in error("SELECT $1, $3")
    assert "$0" in error("SELECT $0")


def test_pyformat_identity_for_psycopg() -> None:
    sql = "SELECT %(a)s, %(b)s, %(a)s, '100%%'"
    stmt = tr(sql)
    assert stmt.sql is sql
    assert stmt.style == "pyformat"
    assert stmt.names == ("a", "b")


def test_format_identity_for_pymysql() -> None:
    sql = "SELECT %s, %s FROM t WHERE x LIKE 'a%%'"
    stmt = tr(sql, MYSQL, PYMYSQL)
    assert stmt.sql is sql
    assert stmt.style == "format"


def test_pyformat_to_sqlite() -> None:
    stmt = tr("SELECT %(a)s, '100%%', %(b)s, '%s'", SQLITE, SQLITE3)
    assert stmt.sql == "SELECT :a, '100%', :b, '%s'"
    assert stmt.bind({"a": 1, "b": 2}) == {"a": 1, "b": 2}


def test_format_to_sqlite() -> None:
    stmt = tr("SELECT %s, '%%', %s", SQLITE, SQLITE3)
    assert stmt.sql == "SELECT ?, '%', ?"
    assert stmt.bind((1, 2)) == (1, 2)


def test_pyformat_and_format_to_asyncpg() -> None:
    stmt = tr("SELECT %(b)s, %(a)s, %(b)s, '%%'", POSTGRESQL, ASYNCPG)
    assert stmt.sql == "SELECT $1, $2, $1, '%'"
    assert stmt.bind({"a": "A", "b": "B"}) == ("B", "A")
    stmt = tr("SELECT %s, %s", POSTGRESQL, ASYNCPG)
    assert stmt.sql == "SELECT $1, $2"


def test_percent_s_inside_a_literal_stays_text_in_pyformat_input() -> None:
    # psycopg would read '%s' as a placeholder; we keep it literal by escaping it.
    assert tr("SELECT %s, '%s', 'x%'").sql == "SELECT %s, '%%s', 'x%%'"


def test_lone_percent_is_literal() -> None:
    assert tr("SELECT %s, 5 % 2").sql == "SELECT %s, 5 %% 2"
    assert tr("SELECT %s, 5 % 2", SQLITE, SQLITE3).sql == "SELECT ?, 5 % 2"


def test_invalid_pyformat_name() -> None:
    assert "invalid parameter name 'a b'" in error("SELECT %(a b)s")


# --- named input to each target ------------------------------------------------------------


def test_named_to_pyformat() -> None:
    stmt = tr("SELECT :a, :b, :a")
    assert stmt.sql == "SELECT %(a)s, %(b)s, %(a)s"
    assert stmt.style == "named"
    assert stmt.names == ("a", "b")
    params = {"a": 1, "b": 2}
    assert stmt.bind(params) is params


def test_named_to_sqlite_is_identity() -> None:
    sql = "SELECT :a, '100%', :b"
    stmt = tr(sql, SQLITE, SQLITE3)
    assert stmt.sql is sql


def test_named_to_asyncpg_numbers_distinct_names() -> None:
    stmt = tr("SELECT :b, :a, :b, ':c', '%'", POSTGRESQL, ASYNCPG)
    assert stmt.sql == "SELECT $1, $2, $1, ':c', '%'"
    assert stmt.names == ("b", "a")
    assert stmt.bind({"a": "A", "b": "B"}) == ("B", "A")
    assert tr("SELECT :only", POSTGRESQL, ASYNCPG).bind({"only": 1}) == (1,)


def test_named_to_positional_only_target() -> None:
    # A driver with no named style and %s markers gets one value per occurrence.
    target = ParamTarget("odd", None, "format", True)
    stmt = tr("SELECT :b, :a, :b, '%'", POSTGRESQL, target)
    assert stmt.sql == "SELECT %s, %s, %s, '%%'"
    assert stmt.bind({"a": 1, "b": 2}) == (2, 1, 2)


def test_percent_doubling_for_named_input() -> None:
    stmt = tr("SELECT :a, 'x%' /* 5% */ -- 10%\n, $$%$$, '%s', 5 % 2, '%%'")
    assert stmt.sql == "SELECT %(a)s, 'x%%' /* 5%% */ -- 10%%\n, $$%%$$, '%%s', 5 %% 2, '%%%%'"


def test_percent_doubling_for_dollar_input() -> None:
    assert tr("SELECT $1, 'x%'").sql == "SELECT %s, 'x%%'"


def test_no_doubling_without_placeholders() -> None:
    sql = "SELECT 'x%', ':a', '%s'"
    stmt = tr(sql)
    assert stmt.style == "none"
    assert stmt.sql is sql
    assert stmt.names == ()


# --- mixed styles --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "styles"),
    [
        ("SELECT :a, %s", (":name", "%s")),
        ("SELECT :a, $1", (":name", "$n")),
        ("SELECT %(a)s, %s", ("%(name)s", "%s")),
        ("SELECT %s, $1", ("%s", "$n")),
    ],
)
def test_mixed_styles(sql: str, styles: tuple[str, str]) -> None:
    message = error(sql)
    assert "mixes placeholder styles" in message
    assert all(s in message for s in styles)
    assert "use one style" in message


def test_look_alike_does_not_count_as_mixing() -> None:
    assert tr("SELECT :a, '%s', '$1', %%s").names == ("a",)


# --- binding and validation ----------------------------------------------------------------


def test_no_placeholders_bind_empty() -> None:
    stmt = tr("SELECT 1")
    assert stmt.bind(None) is None
    assert stmt.bind({}) is None
    assert stmt.bind(()) is None
    assert stmt.bind([]) is None
    assert PG("SELECT 1") == ("SELECT 1", None)


@pytest.mark.parametrize(("params", "shown"), [({"a": 1}, "keys 'a'"), ((1, 2), "2 values"), (5, "a int")])
def test_no_placeholders_rejects_params(params: object, shown: str) -> None:
    message = error("SELECT 1", params, strict=True)
    assert message.startswith("the SQL has no placeholders but parameters were given: ")
    assert shown in message


@pytest.mark.parametrize(("params", "shown"), [((1, 2), "2 values"), (5, "a int")])
def test_no_placeholders_rejects_values_without_names(params: object, shown: str) -> None:
    assert shown in error("SELECT 1", params)  # a list or a scalar is a mistake, strict or not


def test_no_placeholders_ignores_a_mapping_by_default() -> None:
    assert PG("SELECT 1", {"a": 1}) == ("SELECT 1", None)


@pytest.mark.parametrize("target", [PSYCOPG, PYMYSQL, SQLITE3, ASYNCPG])
def test_extra_keys_are_ignored_by_default(target: ParamTarget) -> None:
    _, bound = Translator(POSTGRESQL, target)("SELECT :a, :b", {"b": 2, "unused": "x", "a": 1})
    # the driver gets exactly its own parameters, in its own shape
    assert bound in ({"a": 1, "b": 2}, (1, 2))
    assert "unused" not in str(bound)


def test_missing_name_suggests_close_key() -> None:
    message = error("SELECT :user_id", {"userid": "s3cret"}, strict=True)
    assert "missing parameter :user_id" in message
    assert "did you mean 'userid'?" in message
    assert "unexpected parameter 'userid'" in message
    assert "s3cret" not in message
    lenient = error("SELECT :user_id", {"userid": "s3cret"})
    assert "did you mean 'userid'?" in lenient and "unexpected" not in lenient and "s3cret" not in lenient


def test_missing_several_names() -> None:
    message = error("SELECT :a, :b, :c", {"b": 1})
    assert "missing parameters :a, :c" in message


def test_missing_in_pyformat_uses_pyformat_spelling() -> None:
    assert "missing parameter %(a)s" in error("SELECT %(a)s", {})


def test_extra_keys_are_errors_when_strict() -> None:
    message = error("SELECT :a", {"a": "secret-1", "b": "secret-2", "c": 3}, strict=True)
    assert "unexpected parameters 'b', 'c'" in message
    assert "secret" not in message


def test_none_for_named() -> None:
    message = error("SELECT :a, :b")
    assert "missing parameters :a, :b" in message


def test_sequence_for_named() -> None:
    message = error("SELECT :a", ["hunter2"])
    assert "must be a mapping" in message
    assert "got list" in message
    assert "'a'" in message
    assert "hunter2" not in message


def test_non_dict_mapping_is_copied_to_dict() -> None:
    from types import MappingProxyType

    bound = tr("SELECT :a").bind(MappingProxyType({"a": 1}))
    assert type(bound) is dict
    assert bound == {"a": 1}


def test_dict_subclass_accepted() -> None:
    class D(dict[str, Any]):
        pass

    params = D(a=1)
    assert tr("SELECT :a").bind(params) is params
    assert tr("SELECT :a", POSTGRESQL, ASYNCPG).bind(params) == (1,)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        (5, "must be a tuple or list, got int; for one value write (value,)"),
        ("ab", "got str; for one value write (value,)"),
        (b"ab", "got bytes"),
        ({"a": 1}, "got dict; a mapping needs named placeholders"),
    ],
)
def test_positional_type_errors(params: object, fragment: str) -> None:
    message = error("SELECT %s", params)
    assert "parameters for %s placeholders" in message
    assert fragment in message


def test_positional_count() -> None:
    assert "expected 2 parameters for %s placeholders, got 3" in error("SELECT %s, %s", (1, 2, 3))
    assert "expected 1 parameter for $n placeholders, got 0" in error("SELECT $1", [])
    assert "expected 2 values" in error("SELECT $2, $1", None)


def test_reordered_positional_errors() -> None:
    assert "got 1" in error("SELECT $2, $1", ("x",))


def test_tuple_subclass_accepted() -> None:
    from collections import namedtuple

    pair = namedtuple("pair", "x y")
    params = pair(1, 2)
    assert tr("SELECT %s, %s").bind(params) is params


def test_parameter_error_is_type_error_and_database_error() -> None:
    with pytest.raises(TypeError):
        PG("SELECT %s", 5)
    with pytest.raises(DatabaseError):
        PG("SELECT %s", 5)


def test_bind_many() -> None:
    stmt = tr("INSERT INTO t VALUES ($2, $1)")
    assert stmt.bind_many([(1, 2), [3, 4]]) == [(2, 1), (4, 3)]
    assert stmt.bind_many(iter([])) == []
    with pytest.raises(ParameterError, match=r"parameter set 1: expected 2 parameters .* got 1"):
        stmt.bind_many([(1, 2), (1,)])
    named = tr("INSERT INTO t VALUES (:a)")
    with pytest.raises(ParameterError, match=r"parameter set 2: missing parameter :a"):
        named.bind_many([{"a": 1}, {"a": 2}, {"b": 3}])


def test_bind_many_rejects_non_iterables() -> None:
    stmt = tr("SELECT :a")
    for bad in [5, "abc", {"a": 1}]:
        with pytest.raises(ParameterError, match="iterable of parameter sets"):
            stmt.bind_many(bad)  # type: ignore[arg-type]


def test_bind_many_without_placeholders_gives_none_per_set() -> None:
    assert tr("DELETE FROM t").bind_many([(), {}, None]) == [None, None, None]


# --- Statement and Translator --------------------------------------------------------------


def test_statement_is_immutable() -> None:
    stmt = tr("SELECT :a")
    with pytest.raises(AttributeError):
        stmt.sql = "x"
    with pytest.raises(AttributeError):
        del stmt.names
    assert not hasattr(stmt, "__dict__")
    assert "style='named'" in repr(stmt)


def test_translator_call_returns_sql_and_params() -> None:
    sql, params = PG("SELECT :a", {"a": 1})
    assert sql == "SELECT %(a)s"
    assert params == {"a": 1}


def test_prepare_is_cached() -> None:
    t = Translator(POSTGRESQL, PSYCOPG)
    assert t.prepare("SELECT :a") is t.prepare("SELECT :a")
    assert "1 cached" in repr(t)


def test_failed_translation_is_not_cached() -> None:
    t = Translator(POSTGRESQL, PSYCOPG)
    for _ in range(2):
        with pytest.raises(ParameterError):
            t.prepare("SELECT :a, %s")
    assert "0 cached" in repr(t)


def test_cache_is_bounded() -> None:
    t = Translator(POSTGRESQL, PSYCOPG, cache_size=8)
    first = t.prepare("SELECT 0")
    for i in range(1, 100):
        t.prepare(f"SELECT {i}")
        assert len(t._cache) <= 8
    assert t.prepare("SELECT 0") is not first
    assert t.prepare("SELECT 99") is t.prepare("SELECT 99")


def test_cache_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="cache_size"):
        Translator(POSTGRESQL, PSYCOPG, cache_size=0)


def test_sql_must_be_str() -> None:
    with pytest.raises(ParameterError, match="SQL must be a str, got bytes"):
        PG(b"SELECT 1")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="got list"):
        PG.prepare(["SELECT 1"])  # type: ignore[arg-type]


def test_concurrent_use_with_a_small_cache() -> None:
    t = Translator(POSTGRESQL, PSYCOPG, cache_size=16)
    failures: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(400):
                n = (seed * 7 + i) % 50
                sql, params = t(f"SELECT :a, {n}", {"a": n})
                assert sql == f"SELECT %(a)s, {n}"
                assert params == {"a": n}
        except BaseException as exc:  # collected and re-raised in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not failures
    assert len(t._cache) <= 16


# --- property tests ------------------------------------------------------------------------

_COMMON = [
    "col",
    "t.col",
    "a$1",
    "x_1",
    "arr[1:2]",
    "x::int",
    "42",
    "5 % 2",
    "%%",
    "''",
    "'it''s :x'",
    "':x'",
    "'%s'",
    "'$1'",
    "'100%'",
    "'%(n)s'",
    "'::a'",
    "'a:b %%'",
    '"col:x"',
    '"a""b:c"',
    "-- :x %s $1 '\n",
    "/* :x %s $1 ' */",
]
_FRAGMENTS = {
    POSTGRESQL: [
        *_COMMON,
        "E'\\':x'",
        "e'\\\\'",
        "'a\\'",
        "$$ :x %s $1 ' $$",
        "$fn$ :y $1 $$ $fn$",
        "/* a /* :x */ b :y */",
        "U&'a:b'",
        "`x",
    ],
    MYSQL: [*_COMMON, "`a:b`", "`a``:b`", "# :x '\n", "'it\\'s :x'", '"dq \\" :x"', "1--1", "--\t:x\n"],
    SQLITE: [*_COMMON, "`a:b`", "'a\\'"],
    GENERIC: [*_COMMON, "'a\\'", "$$"],
}
_SEPARATORS = [" ", "\n", ", ", " + ", "\t"]
_TARGETS = [PSYCOPG, PYMYSQL, SQLITE3, ASYNCPG]
_NAMES = ["a", "b", "user_id", "x1", "_y"]


def _expected_text(fragment: str, style: str, target: ParamTarget) -> str:
    if style in ("format", "pyformat"):
        fragment = fragment.replace("%%", "%")
    return fragment.replace("%", "%%") if target.percent_escape else fragment


@st.composite
def _cases(draw: st.DrawFn) -> tuple[str, list[tuple[str, Any]], SQLDialect, ParamTarget]:
    dialect = draw(st.sampled_from(list(_FRAGMENTS)))
    target = draw(st.sampled_from(_TARGETS))
    style = draw(st.sampled_from(["named", "pyformat", "format", "numeric_dollar"]))
    items: list[tuple[Any, ...]] = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("text"), st.sampled_from(_FRAGMENTS[dialect])),
                st.tuples(st.just("ph"), st.sampled_from(_NAMES), st.integers(1, 4), st.booleans()),
            ),
            max_size=12,
        )
    )
    separators = draw(st.lists(st.sampled_from(_SEPARATORS), min_size=len(items), max_size=len(items)))
    # Renumber $n by rank so the numbers used have no gaps.
    ranks = {n: i + 1 for i, n in enumerate(sorted({it[2] for it in items if it[0] == "ph"}))}
    pieces: list[tuple[str, Any]] = []
    for item, sep in zip(items, separators, strict=True):
        pieces.append(("text", sep))
        if item[0] == "text":
            pieces.append(("text", item[1]))
        else:
            _, name, number, cast = item
            pieces.append(("ph", name if style in ("named", "pyformat") else ranks[number]))
            if cast:
                pieces.append(("text", "::int"))
    return style, pieces, dialect, target


def _source(style: str, value: Any) -> str:
    return {"named": f":{value}", "pyformat": f"%({value})s", "format": "%s", "numeric_dollar": f"${value}"}[style]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_property_translation(case: tuple[str, list[tuple[str, Any]], SQLDialect, ParamTarget]) -> None:
    style, pieces, dialect, target = case
    sql = "".join(v if kind == "text" else _source(style, v) for kind, v in pieces)
    holders = [v for kind, v in pieces if kind == "ph"]
    stmt = Translator(dialect, target).prepare(sql)

    if not holders:
        assert stmt.style == "none"
        assert stmt.sql is sql
        assert stmt.bind(None) is None
        return

    assert stmt.style == style
    named = style in ("named", "pyformat")
    first_seen = tuple(dict.fromkeys(holders)) if named else ()
    assert stmt.names == first_seen  # (1) names and order

    # (2) every fragment survives in order, only % handled as documented.
    numbers = {n: i + 1 for i, n in enumerate(first_seen)}
    expected = []
    position = 0
    for kind, v in pieces:
        if kind == "text":
            expected.append(_expected_text(v, style, target))
            continue
        position += 1
        if named and target.named == "pyformat":
            expected.append(f"%({v})s")
        elif named and target.named == "named":
            expected.append(f":{v}")
        elif target.positional == "numeric_dollar":
            expected.append(f"${numbers[v]}" if named else f"${position if style == 'format' else v}")
        else:
            expected.append("%s" if target.positional == "format" else "?")
    assert stmt.sql == "".join(expected)
    if stmt.sql == sql:
        assert stmt.sql is sql

    # (3) binding all names/values succeeds and orders values for positional drivers.
    if named:
        params = {n: f"v_{n}" for n in first_seen}
        bound = stmt.bind(params)
        if target.named is not None:
            assert bound == params
        else:
            assert tuple(bound) == tuple(params[n] for n in first_seen)  # type: ignore[arg-type]
    else:
        count = len(holders) if style == "format" else max(holders)
        values = [f"v{i}" for i in range(count)]
        bound = stmt.bind(values)
        assert bound is not None
        if style == "format" or target.positional == "numeric_dollar":
            assert list(bound) == values
        else:
            assert list(bound) == [values[n - 1] for n in holders]


_FUZZ_ALPHABET = st.sampled_from(list(":%$'\"`-/*#\n\\()sEe ab_01;[]"))
_FUZZ_PARAMS = st.sampled_from([None, {}, (), [], {"a": 1}, {"b": 2}, (1,), [1, 2], 5, "x", b"y", {"a": 1, "b": 2}])


@settings(max_examples=600, deadline=None)
@given(
    st.lists(st.one_of(st.text(_FUZZ_ALPHABET, max_size=6), st.sampled_from(_FRAGMENTS[POSTGRESQL])), max_size=10),
    st.sampled_from(list(_FRAGMENTS)),
    st.sampled_from(_TARGETS),
    _FUZZ_PARAMS,
)
def test_property_only_parameter_errors(
    chunks: list[str], dialect: SQLDialect, target: ParamTarget, params: object
) -> None:
    sql = "".join(chunks)
    t = Translator(dialect, target)
    try:
        out, bound = t(sql, params)
    except ParameterError:
        return
    assert isinstance(out, str)
    stmt = t.prepare(sql)
    if stmt.style == "none":
        assert out is sql
        assert bound is None
    try:
        stmt.bind_many([params, params])
    except ParameterError:
        pytest.fail("bind_many failed where bind succeeded")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.sampled_from(list(_FRAGMENTS)))
def test_property_arbitrary_text_never_crashes(sql: str, dialect: SQLDialect) -> None:
    for target in _TARGETS:
        with contextlib.suppress(ParameterError):
            Translator(dialect, target).prepare(sql)
