"""Helpers for tests that need a tool besides the servers: the skip-or-fail rule, and a
PgBouncer started as the test's own child process."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["pgbouncer", "require_tool"]


def require_tool(available: bool, message: str) -> None:
    """Skip a test whose tool is not installed, or fail it in CI (STRUCTUM_REQUIRE_SERVERS=1),
    where a skipped test would pass for a proven one."""
    if available:
        return
    if os.environ.get("STRUCTUM_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{message} and STRUCTUM_REQUIRE_SERVERS=1", pytrace=False)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def pgbouncer(*, default_pool_size: int | None = None) -> Iterator[str]:
    """A PgBouncer in transaction mode in front of the shared server (127.0.0.1:5432, database
    ``test``); yields its ``postgresql://`` URL. It runs in the foreground as our child, so
    ``terminate()`` and ``wait()`` leave nothing behind."""
    binary = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)
    require_tool(binary is not None, "pgbouncer is not installed (apt-get install pgbouncer)")
    assert binary is not None
    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="structum-pgbouncer-"))
    (workdir / "users.txt").write_text('"postgres" ""\n')
    pool = f"default_pool_size = {default_pool_size}\n" if default_pool_size else ""
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
{pool}logfile = {workdir}/pgbouncer.log
ignore_startup_parameters = extra_float_digits, options
"""
    )
    user: dict[str, Any] = {}
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        for path in (workdir, *workdir.iterdir()):
            shutil.chown(path, "postgres")
        user = {"user": "postgres", "group": "postgres"}
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
