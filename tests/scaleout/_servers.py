"""Throwaway PostgreSQL servers for the scale-out suite: a primary on a free port and
streaming replicas of it (``pg_basebackup -R -X stream``), owned by the test, so it may
stop, delay, restart and promote them. Never touches the shared server on 5432.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from reliability._infra import Cluster, free_port, pg_bin, require_tool

__all__ = ["Pair", "Primary", "Replica", "SlowProxy", "require_binaries", "wait_until"]


def require_binaries() -> None:
    require_tool(pg_bin() is not None, "PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) are not installed")


def wait_until(check: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:g} s")
        time.sleep(0.02)


class Primary(Cluster):
    """A primary that accepts streaming replicas (initdb's trust rules allow replication)."""

    def __init__(self) -> None:
        super().__init__(settings={"wal_level": "replica", "max_wal_senders": "10", "fsync": "off"})

    def sql(self, query: str) -> object:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(query)
            row = cursor.fetchone() if cursor.description else None
            return None if row is None else row[0]


class Replica:
    """A hot standby streaming from ``primary``; ``delay`` sets ``recovery_min_apply_delay``."""

    def __init__(self, primary: Cluster, *, delay: str = "0") -> None:
        bindir = pg_bin()
        assert bindir is not None
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(os.path.realpath(primary.root.parent)) / f"{primary.root.name}-replica-{self.port}"
        self.root.mkdir()
        self.datadir = self.root / "data"
        self.logfile = self.root / "server.log"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            [
                str(bindir / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(primary.port),
                "-U",
                "postgres",
                "-D",
                str(self.datadir),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ]
        )
        with open(self.datadir / "postgresql.conf", "a") as f:
            f.write(
                f"port = {self.port}\nunix_socket_directories = '{self.root}'\nhot_standby = on\n"
                f"recovery_min_apply_delay = '{delay}'\nhot_standby_feedback = on\n"
            )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def _ctl(self, *args: str, check: bool = True) -> None:
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-w", "-t", "60", *args], check=check)

    def running(self) -> bool:
        done = self._run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "status"], check=False)
        return done.returncode == 0

    def start(self) -> None:
        self._ctl("-l", str(self.logfile), "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop", check=False)

    def promote(self) -> None:
        self._ctl("promote")

    def set_delay(self, delay: str) -> None:
        """Change ``recovery_min_apply_delay`` at once (a reload, no restart)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"ALTER SYSTEM SET recovery_min_apply_delay = '{delay}'")
            conn.execute("SELECT pg_reload_conf()")

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class SlowProxy:
    """A TCP proxy to ``port`` that holds every answer of the server ``delay`` seconds: a replica
    far away."""

    def __init__(self, port: int, delay: float) -> None:
        self.target = ("127.0.0.1", port)
        self.delay = delay
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = int(self._server.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                return
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, 0.0), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.delay), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, delay: float) -> None:
        while True:
            try:
                data = src.recv(65536)
                if not data:
                    break
                time.sleep(delay)
                dst.sendall(data)
            except OSError:
                break
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.close()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.close()


@dataclass
class Pair:
    primary: Primary
    replica: Replica

    def multi_host_url(self) -> str:
        """The primary's URL listing both servers, as an application configures a failover pair."""
        return f"postgresql://postgres@127.0.0.1:{self.primary.port},127.0.0.1:{self.replica.port}/postgres"
