"""SQLAlchemy's QueuePool lets a thread that returns a connection take it straight back
ahead of the threads waiting for it; the engine queues checkouts first come, first served
on such a pool (``features.fair_checkout`` is False), so no caller starves. Observed
through the order in which waiters get the connection, not through timings."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from structum_lab.plugins.database import connect


def test_waiters_get_the_connection_in_arrival_order_before_a_returning_holder(tmp_path: Path) -> None:
    db = connect(f"sqlite:///{tmp_path / 'fair.db'}", pool_size=1, max_overflow=0, pool_timeout=10)
    assert not db.features.fair_checkout
    order: list[str] = []
    try:

        def waiter(name: str) -> None:
            with db.transaction() as conn:
                order.append(name)
                conn.execute("SELECT 1")

        with db.transaction():
            threads = []
            for number, name in enumerate(("first", "second", "third"), start=1):
                thread = threading.Thread(target=waiter, args=(name,))
                thread.start()
                threads.append(thread)
                deadline = time.monotonic() + 5
                while db.get_pool_info()["requests_waiting"] < number:
                    assert time.monotonic() < deadline, "the waiter did not queue"
                    time.sleep(0.005)
        with db.transaction():  # the holder comes straight back: it queues behind them
            order.append("holder")
        for thread in threads:
            thread.join()
        assert order == ["first", "second", "third", "holder"]
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()
