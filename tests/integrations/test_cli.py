"""The structum-db command, run as a user would: a subprocess in a project directory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SECRET = "Sup3r-s3cret-pw"


def run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STRUCTUM_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "structum_lab.plugins.database._integrations.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def project(tmp_path: Path, pg_url: str) -> Path:
    (tmp_path / "config" / "app").mkdir(parents=True)
    (tmp_path / "config" / "app" / "database.toml").write_text(
        f'[default]\nurl = "{pg_url}"\npool_size = 2\n\n[default.options]\npool_pre_ping = true\n'
    )
    (tmp_path / "config" / "app" / "replica_db.toml").write_text(
        f'[default]\nurl = "postgresql://app:{SECRET}@127.0.0.1:{closed_port()}/nowhere"\nhealth_check_timeout = 2\n'
    )
    return tmp_path


def test_every_command_has_help(tmp_path: Path) -> None:
    for command in ([], ["demo"], ["backends"], ["check"], ["config"]):
        result = run(tmp_path, *command, "--help")
        assert result.returncode == 0, result.stderr
        assert "Usage:" in result.stdout


def test_demo_runs_the_quick_start(tmp_path: Path) -> None:
    result = run(tmp_path, "demo", "--dir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    assert "Found user: john_doe" in result.stdout
    assert "Health: healthy" in result.stdout
    assert (tmp_path / "demo" / "config" / "app" / "database.toml").is_file()


def test_backends_lists_both_loaded(tmp_path: Path) -> None:
    result = run(tmp_path, "backends", "--json")
    assert result.returncode == 0, result.stderr
    by_name = {b["name"]: b for b in json.loads(result.stdout)}
    assert by_name["psycopg"]["loaded"] and by_name["psycopg"]["aliases"] == ["postgres"]
    assert by_name["psycopg"]["schemes"][:2] == ["postgresql", "postgres"]
    assert by_name["sqlalchemy"]["distribution"] == "structum-database-sqlalchemy"
    table = run(tmp_path, "backends").stdout
    assert "psycopg (postgres)" in table and "structum-database-psycopg" in table and "loaded" in table


def test_backends_lists_the_worked_third_party_backend(tmp_path: Path) -> None:
    result = run(tmp_path, "backends", "--json")
    assert result.returncode == 0, result.stderr
    example = {b["name"]: b for b in json.loads(result.stdout)}["sqlite3"]
    assert example["distribution"] == "structum-database-sqlite3" and example["schemes"] == ["sqlite3"]
    assert not example["first_party"] and example["loaded"] and example["error"] is None


def test_check_healthy_and_unhealthy_exit_codes(project: Path) -> None:
    healthy = run(project, "check", "--namespace", "database", "--json")
    assert healthy.returncode == 0, healthy.stderr
    assert json.loads(healthy.stdout)["database"]["status"] == "healthy"

    both = run(project, "check")
    assert both.returncode == 2  # one database is unreachable
    assert "replica_db" in both.stdout and "unhealthy" in both.stdout
    assert SECRET not in both.stdout + both.stderr


def test_check_degraded_exit_code(project: Path, pg_url: str) -> None:
    result = run(project, "check", "-n", "database", env={"STRUCTUM_DATABASE__HEALTH_DEGRADED_MS": "0"})
    assert result.returncode == 1
    assert "degraded" in result.stdout


def test_config_shows_sources_and_masks_secrets(project: Path) -> None:
    result = run(project, "config", "--json", env={"STRUCTUM_DATABASE__POOL_SIZE": "7"})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["database"]["pool_size"] == {"value": 7, "source": "env STRUCTUM_DATABASE__POOL_SIZE"}
    assert data["database"]["options.pool_pre_ping"]["source"] == "config/app/database.toml [default]"
    assert SECRET not in result.stdout
    assert "app:***@" in data["replica_db"]["url"]["value"]


def test_bad_input_is_one_line_and_a_meaningful_exit_code(project: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (run(empty, "check"), "no database is configured"),
        (run(project, "check", "-n", "databse"), "Did you mean 'database'"),
        (run(project, "check", "-n", "database", env={"STRUCTUM_DATABASE__BACKEND": "sqlalchmy"}), "sqlalchemy"),
        (run(project, "check", "-n", "database", env={"STRUCTUM_DATABASE__POOL_SIZE": "ten"}), "pool_size"),
    ]
    for result, expected in cases:
        assert result.returncode == 3, (result.stdout, result.stderr)
        assert result.stderr.startswith("structum-db: error: ")
        assert expected in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    debug = run(project, "--debug", "check", "-n", "databse")
    assert "Traceback" in debug.stderr
