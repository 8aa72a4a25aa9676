"""The conformance kit catches broken backends: run with pytester against deliberately
broken variants of the worked sqlite3 backend (examples/structum-database-sqlite3), it fails
on each, on the tests that see the breakage; on the backend itself it passes."""

from __future__ import annotations

import re
import textwrap

import pytest

pytest_plugins = ["pytester"]

BROKEN_BACKENDS = textwrap.dedent(
    """
    import sqlite3

    import pytest
    from structum_database_sqlite3 import Sqlite3Database, Sqlite3Driver

    from structum_lab.plugins.database.testing.conformance import ConformanceTests


    class CommitDoesNothing(Sqlite3Driver):
        def commit(self, raw):
            pass  # the transaction stays open; returning the connection rolls it back


    class SavepointIsNotOne(Sqlite3Driver):
        def savepoint(self, raw, name):
            pass

        def release_savepoint(self, raw, name):
            pass

        def rollback_to_savepoint(self, raw, name):
            pass  # the nested block's work stays in the transaction


    class HealthCheckRaises(Sqlite3Driver):
        def acquire(self, *, ping):
            if ping:
                raise sqlite3.OperationalError("the ping is broken")
            return super().acquire(ping=ping)


    class PoolCountLies(Sqlite3Driver):
        def pool_figures(self, checked_out):
            figures = super().pool_figures(checked_out)
            figures["available"] = figures["size"]  # claims idle connections it does not have
            return figures


    class Honest(Sqlite3Driver):
        pass


    def kit_for(driver):
        database = type(f"{driver.__name__}Database", (Sqlite3Database,), {"driver_class": driver})

        class Kit(ConformanceTests):
            backend = "sqlite3"
            locking_isolation = True
            impatient_options = {"busy_timeout": 0.2}

            @pytest.fixture
            def database_url(self, tmp_path):
                return f"sqlite3:///{tmp_path}/kit.db"

            @pytest.fixture
            def unreachable_url(self, tmp_path):
                return f"sqlite3:///{tmp_path}/missing/kit.db"

            @pytest.fixture
            def database_factory(self):
                return database

        return Kit


    TestCommitDoesNothing = kit_for(CommitDoesNothing)
    TestSavepointIsNotOne = kit_for(SavepointIsNotOne)
    TestHealthCheckRaises = kit_for(HealthCheckRaises)
    TestPoolCountLies = kit_for(PoolCountLies)
    TestHonest = kit_for(Honest)
    """
)

#: For each broken variant, kit tests that must fail on it (more may).
MUST_FAIL = {
    "TestCommitDoesNothing": {
        "test_commit_on_success_visible_only_after",
        "test_get_connection_explicit_commit_rollback_close",
        "test_no_leak_after_1000_mixed_transactions",
    },
    "TestSavepointIsNotOne": {
        "test_nested_transaction_is_a_savepoint",
        "test_savepoint_api_rolls_back_only_the_inner_block",
    },
    "TestHealthCheckRaises": {
        "test_health_check_healthy_with_latency",
        "test_health_check_example",
        "test_health_check_reports_degraded_when_pool_is_exhausted",
    },
    "TestPoolCountLies": {
        "test_pool_info_before_during_after",
        "test_no_leak_after_1000_mixed_transactions",
    },
}


def test_the_kit_fails_on_each_broken_backend_and_passes_on_the_real_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_broken_backends=BROKEN_BACKENDS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-rf", "--tb=no")
    output = result.stdout.str()
    failed: dict[str, set[str]] = {}
    for match in re.finditer(r"^FAILED test_broken_backends\.py::(\w+)::(\w+)", output, re.MULTILINE):
        failed.setdefault(match[1], set()).add(match[2])
    assert result.parseoutcomes().get("passed", 0) > 100, output  # the kit ran
    assert "TestHonest" not in failed, failed["TestHonest"]
    for variant, expected in MUST_FAIL.items():
        missing = expected - failed.get(variant, set())
        assert not missing, f"{variant}: the kit did not catch it in {sorted(missing)}; it failed {failed.get(variant)}"
