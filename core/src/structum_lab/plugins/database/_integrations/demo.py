"""``structum-db demo``: the spec's Quick Start, for real, on an embedded SQLite file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["run_demo"]

CONFIG = """\
[default]
url = "sqlite:///{db}"
pool_size = 10
pool_timeout = 30
echo = false  # Set true to log SQL queries
"""


def run_demo(directory: Path, say: Callable[[str], None]) -> None:
    """Lay out a project in ``directory`` and run the Quick Start in it."""
    from structum_lab.config import get_config_provider, set_config_provider
    from structum_lab.plugins.database import SQLAlchemyDatabase
    from structum_lab.plugins.dynaconf import DynaconfConfigProvider

    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / "config" / "app" / "database.toml"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(CONFIG.format(db=(directory / "demo.db").as_posix()))
    say(f"1. Wrote {config_file} (SQLite database {directory / 'demo.db'})")

    previous_dir, previous_provider = Path.cwd(), get_config_provider()
    os.chdir(directory)
    try:
        provider = DynaconfConfigProvider(root_path=".")
        provider.auto_discover()
        set_config_provider(provider)
        say("2. Config provider set: DynaconfConfigProvider(root_path='.').auto_discover()")

        db = SQLAlchemyDatabase.from_config()
        say(f"3. db = SQLAlchemyDatabase.from_config() -> {db!r}")
        with db.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, username TEXT UNIQUE, email TEXT)")
            conn.execute(
                "INSERT OR IGNORE INTO users (id, username, email) VALUES (:id, :username, :email)",
                {"id": 1, "username": "john_doe", "email": "john@example.com"},
            )
        say("4. Created table users and inserted john_doe in one transaction (committed)")

        with db.transaction() as conn:
            result = conn.execute("SELECT * FROM users WHERE id = :user_id", {"user_id": 1})
            user = result.fetchone()
            if user:
                say(f"5. Found user: {user['username']}")

        health = db.health_check()
        say(f"6. Health: {health.status.value}, {health.message}, {health.latency_ms:.2f} ms")
        info = db.get_pool_info()
        say(f"7. Pool: checked_out={info['checked_out']} available={info['available']} total={info['total']}")
        db.shutdown()
        say("8. db.shutdown(): pool closed. Done.")
    finally:
        set_config_provider(previous_provider)
        os.chdir(previous_dir)
