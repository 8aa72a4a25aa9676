"""Scenario 11, TLS: a throwaway cluster that accepts only TLS connections (``hostssl``), with a
server certificate for ``localhost``/``127.0.0.1`` signed by a CA made here (``openssl``).
``sslmode=verify-full`` with the right ``sslrootcert`` connects, over TLS, on both backends,
sync and async, whether the options come in the URL query or in ``connect_args``; with the
wrong CA the connection fails with a ``ConnectionFailedError`` that says why (the certificate)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from structum_lab.plugins.database import (
    AsyncPostgresDatabase,
    AsyncSQLAlchemyDatabase,
    ConnectionFailedError,
    PostgresDatabase,
    SQLAlchemyDatabase,
)

from ._infra import Cluster, pg_bin, require_tool

KINDS = ["psycopg", "psycopg-async", "sqlalchemy", "sqlalchemy-async"]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(directory: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip


def _make_server_cert(directory: Path, ca: str) -> None:
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "server.key", "-out", "server.csr", cwd=directory,
    )  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path]]:
    require_tool(
        pg_bin() is not None and shutil.which("openssl") is not None,
        "the TLS scenario needs the PostgreSQL server binaries and openssl",
    )
    certs = tmp_path_factory.mktemp("certs")
    _make_ca(certs, "right-ca")
    _make_ca(certs, "wrong-ca")
    _make_server_cert(certs, "right-ca")
    cluster = Cluster(settings={"ssl": "on", "ssl_cert_file": "'server.crt'", "ssl_key_file": "'server.key'"})
    for name in ("server.crt", "server.key"):
        shutil.copy(certs / name, cluster.datadir / name)
        if os.geteuid() == 0:
            shutil.chown(cluster.datadir / name, "postgres", "postgres")
    (cluster.datadir / "server.key").chmod(0o600)  # PostgreSQL refuses a key others can read
    # TLS or nothing: a plain connection would be refused, so success proves TLS.
    (cluster.datadir / "pg_hba.conf").write_text("local all all trust\nhostssl all all 127.0.0.1/32 trust\n")
    cluster.start()
    try:
        yield cluster, certs
    finally:
        cluster.destroy()


def _open(kind: str, url: str, connect_args: dict[str, Any] | None) -> Any:
    options: dict[str, Any] = {"connect_args": connect_args, "pool_size": 1, "max_overflow": 0, "pool_timeout": 5}
    if kind.startswith("sqlalchemy"):
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        return (AsyncSQLAlchemyDatabase if "async" in kind else SQLAlchemyDatabase)(url, **options)
    return (AsyncPostgresDatabase if "async" in kind else PostgresDatabase)(url, **options)


def _targets(cluster: Cluster, ca: Path, via: str) -> tuple[str, dict[str, Any] | None]:
    # verify-full checks the host name: connect to the name in the certificate.
    base = f"postgresql://postgres@localhost:{cluster.port}/postgres"
    if via == "url":
        return f"{base}?sslmode=verify-full&sslrootcert={ca}", None
    return base, {"sslmode": "verify-full", "sslrootcert": str(ca)}


def _ssl_in_use(kind: str, db: Any) -> Any:
    sql = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    if "async" in kind:

        async def run() -> Any:
            try:
                async with db.transaction() as conn:
                    return await (await conn.execute(sql)).fetchone()
            finally:
                await db.shutdown()

        return asyncio.run(run())
    try:
        with db.transaction() as conn:
            return conn.execute(sql).fetchone()
    finally:
        db.shutdown()


@pytest.mark.parametrize("via", ["url", "connect_args"])
@pytest.mark.parametrize("kind", KINDS)
def test_verify_full_with_the_right_ca(kind: str, via: str, tls_cluster: tuple[Cluster, Path]) -> None:
    cluster, certs = tls_cluster
    url, connect_args = _targets(cluster, certs / "right-ca.crt", via)
    row = _ssl_in_use(kind, _open(kind, url, connect_args))
    assert row["ssl"] is True
    assert str(row["version"]).startswith("TLS")


@pytest.mark.parametrize("via", ["url", "connect_args"])
@pytest.mark.parametrize("kind", KINDS)
def test_verify_full_with_the_wrong_ca(kind: str, via: str, tls_cluster: tuple[Cluster, Path]) -> None:
    cluster, certs = tls_cluster
    url, connect_args = _targets(cluster, certs / "wrong-ca.crt", via)
    with pytest.raises(ConnectionFailedError, match="certificate verify failed"):
        _ssl_in_use(kind, _open(kind, url, connect_args))


def test_plain_connections_are_refused(tls_cluster: tuple[Cluster, Path]) -> None:
    """The cluster really insists on TLS (so the successes above were TLS)."""
    cluster, _ = tls_cluster
    db = PostgresDatabase(f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres?sslmode=disable", pool_timeout=5)
    with pytest.raises(ConnectionFailedError, match="no encryption"):
        _ssl_in_use("psycopg", db)
