"""The backend's test suite: core's conformance kit, and nothing else."""

from pathlib import Path

import pytest

from structum_lab.plugins.database.testing.conformance import ConformanceTests


class TestSqlite3Conformance(ConformanceTests):
    backend = "sqlite3"
    locking_isolation = True  # SQLite isolates with locks: a second writer waits
    impatient_options = {"busy_timeout": 0.2}  # ... and with these, gives up at once

    @pytest.fixture
    def database_url(self, tmp_path: Path) -> str:
        return f"sqlite3:///{tmp_path}/conformance.db"

    @pytest.fixture
    def unreachable_url(self, tmp_path: Path) -> str:
        return f"sqlite3:///{tmp_path}/no-such-directory/conformance.db"
