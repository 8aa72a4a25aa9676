"""A real PgBouncer in transaction mode: psycopg's prepared statements break there, and
``prepare_threshold=None`` (``prepare_threshold = false`` in TOML) is the fix.

Skipped when the ``pgbouncer`` binary is not installed (Debian: ``apt-get install pgbouncer``),
except with STRUCTUM_REQUIRE_SERVERS=1 (CI), where that fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_servers import closed_port

from structum_lab.plugins.database import PostgresDatabase, ProgrammingError


@pytest.fixture
def pgbouncer_url(pg_url: str) -> Iterator[str]:
    binary = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)
    if binary is None:
        message = "pgbouncer is not installed (apt-get install pgbouncer)"
        if os.environ.get("STRUCTUM_REQUIRE_SERVERS") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    port = closed_port()
    workdir = Path(tempfile.mkdtemp(prefix="structum-pgbouncer-"))
    (workdir / "users.txt").write_text('"postgres" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        f"""[databases]
test = host=127.0.0.1 port=5432 dbname=test

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/users.txt
pool_mode = transaction
logfile = {workdir}/pgbouncer.log
ignore_startup_parameters = extra_float_digits, options
"""
    )
    user: dict[str, str] = {}
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        shutil.chown(workdir, "postgres")
        for child in workdir.iterdir():
            shutil.chown(child, "postgres")
        user = {"user": "postgres", "group": "postgres"}
    # In the foreground, as our own child: terminate() and wait() leave nothing behind.
    process = subprocess.Popen(
        [binary, str(workdir / "pgbouncer.ini")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **user
    )
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert process.poll() is None, "pgbouncer exited at start"
                assert time.monotonic() < deadline, "pgbouncer did not start listening"
                time.sleep(0.05)
        yield f"postgresql://postgres@127.0.0.1:{port}/test"
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            process.kill()
            process.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


def run_repeatedly(db: PostgresDatabase) -> None:
    for i in range(20):
        with db.transaction() as conn:
            assert conn.execute("SELECT :i::int AS i", {"i": i}).scalar() == i


def test_transaction_mode_needs_prepared_statements_off(pgbouncer_url: str) -> None:
    with PostgresDatabase(pgbouncer_url, pool_size=2) as default, pytest.raises(ProgrammingError, match="prepared"):
        run_repeatedly(default)
    with PostgresDatabase(pgbouncer_url, pool_size=2, prepare_threshold=None) as bouncer_safe:
        run_repeatedly(bouncer_safe)
        assert bouncer_safe.health_check().healthy
