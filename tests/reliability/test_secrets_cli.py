"""Scenario 10, secrets in ``structum-db`` output: ``check``, ``config`` and their ``--json``
forms, run as a subprocess on a project directory whose databases carry the password in the
URL, in ``?password=``, in ``connect_args`` (from ``.secrets.toml``) and in an environment
variable - some reachable, some not. The password appears nowhere in stdout or stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ._workload import PG_URL
from .test_secrets_leaks import ENCODED, PASSWORD, assert_clean

CLI = [sys.executable, "-c", "from structum_lab.plugins.database._integrations.cli import main; main()"]


@pytest.fixture
def project(pg_url: str, tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    role = f"sdb_cli_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
    app = tmp_path / "config" / "app"
    app.mkdir(parents=True)
    (app / "database.toml").write_text(f'[default]\nurl = "postgresql://{role}:{ENCODED}@127.0.0.1:5432/test"\n')
    (app / "orm_db.toml").write_text(
        f'[default]\nurl = "postgresql+psycopg://{role}@127.0.0.1:5432/test?password={ENCODED}"\n'
        "[default.options]\necho = true\n"
    )
    (app / "down_db.toml").write_text(f'[default]\nurl = "postgresql://{role}:{ENCODED}@127.0.0.1:1/test"\n')
    (tmp_path / "config" / ".secrets.toml").write_text(
        f'[vault_db]\nurl = "postgresql://{role}@127.0.0.1:5432/test"\n'
        f"[vault_db.connect_args]\npassword = {json.dumps(PASSWORD)}\nconnect_timeout = 3\n"
    )
    env = {**os.environ, "STRUCTUM_ENV_DB__URL": f"postgresql+psycopg://{role}:{ENCODED}@127.0.0.1:1/test"}
    env.pop("STRUCTUM_DATABASE__URL", None)
    try:
        yield tmp_path, env
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def structum_db(project: tuple[Path, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    root, env = project
    return subprocess.run([*CLI, *args], cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["check"], 2),  # down_db and env_db are unreachable
        (["check", "--json"], 2),
        (["check", "-n", "database", "-n", "orm_db", "-n", "vault_db"], 0),
        (["--debug", "check", "-n", "down_db"], 2),
        (["config"], 0),
        (["config", "--json"], 0),
        (["check", "-n", "nosuch"], 3),
    ],
)
def test_cli_output_has_no_password(project: tuple[Path, dict[str, str]], args: list[str], code: int) -> None:
    done = structum_db(project, *args)
    assert_clean(done.stdout + done.stderr, f"structum-db {' '.join(args)}")
    assert done.returncode == code, done.stdout + done.stderr
    if "--json" in args:
        json.loads(done.stdout)
    if args == ["config"]:
        assert "***" in done.stdout  # shown, masked
