"""Parsing environment variable values and tolerating JSON-style inline tables."""

from __future__ import annotations

import datetime
import tomllib
from pathlib import Path

import pytest

from structum_lab.config import ConfigError
from structum_lab.plugins.dynaconf._env import parse_env_value, scan_environ
from structum_lab.plugins.dynaconf._files import read_toml, relax_inline_table_colons


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("20", 20),
        ("-3", -3),
        ("1e5", 100000.0),
        ("0.5", 0.5),
        ("true", True),
        ("false", False),
        ("True", True),  # shell habit, as Dynaconf reads it
        ("False", False),
        ('"123456"', "123456"),
        ("'single'", "single"),
        ("[1, 2]", [1, 2]),
        ("{ a = 1, b = { c = true } }", {"a": 1, "b": {"c": True}}),
        ("2024-01-31", datetime.date(2024, 1, 31)),
        ("postgresql://u:p@h:5432/db", "postgresql://u:p@h:5432/db"),
        ("hello world", "hello world"),
        ("", ""),
        ("TRUE", "TRUE"),
        # A '#' would start a TOML comment and cut a password short.
        ("123#abc", "123#abc"),
        ("20 # pool", "20 # pool"),
        ('"a" # note', '"a" # note'),
        ("1\nextra = 2", "1\nextra = 2"),
    ],
)
def test_parse_env_value(text: str, value: object) -> None:
    assert parse_env_value(text) == value
    assert type(parse_env_value(text)) is type(value)


def test_scan_environ_names_and_order() -> None:
    environ = {
        "STRUCTUM_ENV": "production",
        "STRUCTUM_DEBUG": "1",
        "STRUCTUM_DATABASE__OPTIONS__POOL_SIZE": "3",
        "STRUCTUM_DATABASE__OPTIONS": "{}",
        "STRUCTUM_PRIMARY_DB__URL": "x",
        "STRUCTUM_BROKEN__": "x",
        "STRUCTUM___URL": "x",
        "structum_database__url": "lower-case prefix is not ours",
        "OTHER_DATABASE__URL": "x",
    }
    found = scan_environ("STRUCTUM", exclude=frozenset({"STRUCTUM_ENV"}), environ=environ)
    assert [(item.namespace, item.path, item.raw) for item in found] == [
        ("database", ("options",), "{}"),
        ("primary_db", ("url",), "x"),
        ("database", ("options", "pool_size"), "3"),
    ]
    assert found[2].value == 3


SPEC_INLINE_TABLE = 'connect_args = { "connect_timeout": 10 }\n'


def test_json_style_inline_table_is_relaxed() -> None:
    relaxed, positions = relax_inline_table_colons(SPEC_INLINE_TABLE)
    assert relaxed == 'connect_args = { "connect_timeout"= 10 }\n'
    assert positions == [SPEC_INLINE_TABLE.index(":")]
    assert tomllib.loads(relaxed) == {"connect_args": {"connect_timeout": 10}}


@pytest.mark.parametrize(
    "text",
    [
        "t = { at = 07:32:00, day = 1979-05-27T07:32:00Z }\n",
        'u = { url = "postgresql://u:p@h:5432/db" }\n',
        "s = { 'a:b' = 'c:d' }\n",
        'm = """x: {y: 1}"""\n',
        "c = 1  # { a: 1 }\n",
        "a = [{ x = 1 }, { y = 10:00:00 }]\n",
        '"top": 1\n',  # outside inline tables nothing is rewritten
    ],
)
def test_relaxing_leaves_other_colons_alone(text: str) -> None:
    assert relax_inline_table_colons(text) == (text, [])


def test_relaxing_nested_and_multiple() -> None:
    text = 'x = { a: 1, b: { c: "d:e" }, f: [1, 2], g = 2 }\n'
    relaxed, positions = relax_inline_table_colons(text)
    assert len(positions) == 4
    assert tomllib.loads(relaxed) == {"x": {"a": 1, "b": {"c": "d:e"}, "f": [1, 2], "g": 2}}


def test_read_toml_reports_the_error_as_written(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[default]\nopts = { a: 1 }\nurl = "unterminated\n')
    with pytest.raises(ConfigError, match=r"invalid TOML in .*bad\.toml: .*line 3"):
        read_toml(path, "bad.toml")


def test_read_toml_rejects_non_utf8_and_accepts_bom(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_toml(path, "latin1.toml")
    path.write_bytes(b'\xef\xbb\xbfname = "ok"\n')
    assert read_toml(path, "latin1.toml")[1] == {"name": "ok"}
