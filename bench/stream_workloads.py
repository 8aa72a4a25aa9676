"""Large results (issue 14): ``stream_1m`` and ``copy_out_1m`` on both psycopg-based backends.

``stream_1m``: ``conn.stream(sql, batch_size=1000)`` inside ``db.transaction()`` against
the raw driver's own server-side cursor (psycopg: a named cursor with ``dict_row`` and
``itersize`` 1000; SQLAlchemy: ``stream_results``/``yield_per`` 1000 and ``.mappings()``).
``copy_out_1m``: ``conn.copy_out(query)`` against psycopg's ``cursor.copy()`` of
``COPY (query) TO STDOUT`` with ``set_types`` and ``rows()`` (tuples of Python values).

The rows come from ``generate_series`` (no table to prepare); the raw COPY gives
``set_types`` the column types by name, the layer learns them from the server (one
``LIMIT 0`` round trip, as core's copy_out does). Besides the throughput, each timed run
of each side records the peak RSS growth of the process (Linux: the peak is reset through
``/proc/self/clear_refs`` before the run, after a GC and ``malloc_trim``; growth = ``VmHWM``
after - ``VmRSS`` before), in this process: the row's target adds "peak RSS growth <= 30 MB"
on the layer's worst run (``limits()``, which run.py reads) and its notes give the worst run
of each side. interleave()'s warm-up run of each side reads only ``WARM_ROWS`` rows.

Kept in its own module so that ``workloads.py`` does not grow further; ``workloads``
imports it lazily (it needs ``workloads``' types).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from workloads import Scale, Workload, _timed

from structum_lab.plugins.database import SQLAlchemyDatabase

try:
    from structum_lab.plugins.database import PostgresDatabase
except Exception:  # pragma: no cover - the psycopg backend is optional
    PostgresDatabase = None  # type: ignore[assignment,misc]

#: The rows: ~100 B each (a 4-byte int and 92 characters), made by the server as they are read.
QUERY = "SELECT g AS id, repeat('x', 92) AS pad FROM generate_series(1, {rows}) g"
COLUMN_TYPES = ["int4", "text"]  # what the raw side's set_types() gets (the layer asks the server)
BATCH = 1000
WARM_ROWS = 10_000  # rows of the warm-up run of each side
RSS_LIMIT_MB = 30.0

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_libc_name = ctypes.util.find_library("c")
_LIBC: Any = ctypes.CDLL(_libc_name) if _libc_name else None


def _status_kb(text: str, key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def _settle_heap() -> None:
    """Garbage collected and free heap handed back to the OS (glibc ``malloc_trim``), so that
    a run cannot hide its growth in memory an earlier run left resident."""
    gc.collect()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def peak_growth(fn: Callable[[], object]) -> tuple[float, float | None]:
    """Seconds ``fn`` took and the growth of the process's peak RSS meanwhile, in MB (None
    where ``/proc/self/clear_refs`` cannot reset the peak: not Linux)."""
    _settle_heap()
    try:
        _CLEAR_REFS.write_text("5")  # VmHWM := VmRSS
        before = _status_kb(_STATUS.read_text(), "VmRSS")
    except OSError:
        return _timed(fn), None
    elapsed = _timed(fn)
    return elapsed, (_status_kb(_STATUS.read_text(), "VmHWM") - before) / 1024


@dataclass
class Memory:
    """Peak RSS growth of every timed run of each side, in MB. The first run of each side is
    interleave()'s warm-up (connections opened, caches filled): it reads ``WARM_ROWS`` rows
    only, to keep the long workloads short, and its memory is not counted."""

    raw: list[float] = field(default_factory=list)
    layer: list[float] = field(default_factory=list)
    warmed: set[str] = field(default_factory=set)

    def run(self, side: str, fn: Callable[[int], object], rows: int) -> float:
        if side not in self.warmed:
            self.warmed.add(side)
            return _timed(lambda: fn(min(rows, WARM_ROWS)))
        elapsed, growth = peak_growth(lambda: fn(rows))
        if growth is not None:
            (self.raw if side == "raw" else self.layer).append(growth)
        return elapsed

    def met(self) -> bool | None:
        if not self.raw or not self.layer:
            return None
        return max(self.layer) <= RSS_LIMIT_MB


@dataclass
class MemoryWorkload(Workload):
    """A two-sided workload whose row also has a memory target (on the layer's worst run)."""

    memory: Memory = field(default_factory=Memory)

    def extra(self) -> dict[str, str]:
        notes = dict(self.notes)
        met = self.memory.met()
        if met is None:
            notes["peak RSS growth"] = "not measured (needs Linux /proc/self/clear_refs)"
            return notes
        raw, layer = max(self.memory.raw), max(self.memory.layer)
        notes["peak RSS growth"] = (
            f"raw {raw:.1f} MB, layer {layer:.1f} MB (worst of {len(self.memory.layer)} runs;"
            f" target <= {RSS_LIMIT_MB:g} MB: {'met' if met else 'NOT met'})"
        )
        return notes

    def limits(self) -> list[tuple[str, bool]]:
        """The row's targets besides throughput, each with whether it is met (run.py)."""
        met = self.memory.met()
        label = f"peak RSS growth <= {RSS_LIMIT_MB:g} MB" + ("" if met is not None else " (not measured)")
        return [(label, met is not False)]  # not measured: not held against the row, as run.py's vs


def _count(rows: Iterable[Any], expected: int) -> None:
    n = 0
    for _ in rows:
        n += 1
    if n != expected:
        raise AssertionError(f"read {n} rows, expected {expected}")


def _query(rows: int) -> str:
    return QUERY.format(rows=rows)


# --- the sides: each reads ``rows`` rows on a connection in a transaction ----------------------


def named_cursor(conn: Any, rows: int) -> None:
    with conn.cursor(name="bench_stream", row_factory=dict_row) as cur:
        cur.itersize = BATCH
        cur.execute(_query(rows))
        _count(cur, rows)


def yield_per(conn: sa.Connection, rows: int) -> None:
    result = conn.execution_options(stream_results=True, yield_per=BATCH).execute(sa.text(_query(rows)))
    _count(result.mappings(), rows)


def raw_copy(conn: Any, rows: int) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY ({_query(rows)}) TO STDOUT") as copy:
        copy.set_types(COLUMN_TYPES)
        _count(copy.rows(), rows)


def driver_copy(conn: sa.Connection, rows: int) -> None:
    raw_copy(conn.connection.driver_connection, rows)  # psycopg's own, in the engine's transaction


def layer_stream(conn: Any, rows: int) -> None:
    _count(conn.stream(_query(rows), batch_size=BATCH), rows)


def layer_copy(conn: Any, rows: int) -> None:
    _count(conn.copy_out(_query(rows)), rows)


Side = Callable[[Any, int], None]
Pair = Callable[[], contextlib.AbstractContextManager[tuple[Callable[[], float], Callable[[], float]]]]


def stream_workloads(url: str, scale: Scale) -> list[Workload]:
    rows = scale.stream_rows
    sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1)

    def sides(
        open_raw: Callable[[], tuple[Callable[[], Any], Callable[[], object]]],
        open_layer: Callable[[], Any],
    ) -> Callable[[Side, Side, Memory], Pair]:
        """A side pair from what opens each: ``open_raw`` gives (a context manager factory for a
        raw connection in a transaction, its closer); ``open_layer`` the layer's database."""

        def pair_of(raw_fn: Side, layer_fn: Side, memory: Memory) -> Pair:
            @contextlib.contextmanager
            def pair() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
                connection, close_raw = open_raw()
                db = open_layer()
                try:

                    def raw() -> float:
                        with connection() as conn:
                            return memory.run("raw", lambda n: raw_fn(conn, n), rows)

                    def layer() -> float:
                        with db.transaction() as conn:
                            return memory.run("layer", lambda n: layer_fn(conn, n), rows)

                    yield raw, layer
                finally:
                    close_raw()
                    db.shutdown()

            return pair

        return pair_of

    def psycopg_raw() -> tuple[Callable[[], Any], Callable[[], object]]:
        pool = ConnectionPool(url, min_size=1, max_size=1, open=True, kwargs={"row_factory": dict_row})
        pool.wait()
        return pool.connection, pool.close

    def sqlalchemy_raw() -> tuple[Callable[[], Any], Callable[[], object]]:
        engine = sa.create_engine(sa_url, pool_size=1, max_overflow=0, pool_pre_ping=True)
        return engine.begin, engine.dispose

    #: psycopg_pool against the psycopg backend; an engine on postgresql+psycopg against the
    #: SQLAlchemy backend; a pool of 1 each.
    psycopg_pair = sides(psycopg_raw, lambda: PostgresDatabase(url, pool_size=1, max_overflow=0))
    sqlalchemy_pair = sides(
        sqlalchemy_raw, lambda: SQLAlchemyDatabase(sa_url, pool_size=1, max_overflow=0, pool_pre_ping=True)
    )

    def workload(name: str, backend: str, label: str, pair: Callable[..., Pair], sides: tuple[Side, Side]) -> Workload:
        memory = Memory()
        target = 0.8 if name == "stream_1m" else 0.9
        notes = {"rows": f"{rows:,} of ~100 B (generate_series)"}
        context = pair(*sides, memory)
        return MemoryWorkload(
            name, backend, label, "rows/s", rows, context, target, throughput_target=True, notes=notes, memory=memory
        )

    work: list[Workload] = []
    if PostgresDatabase is not None:
        work.append(
            workload(
                "stream_1m",
                "psycopg",
                f"named cursor + dict_row, itersize {BATCH}",
                psycopg_pair,
                (named_cursor, layer_stream),
            )
        )
    work.append(
        workload(
            "stream_1m",
            "sqlalchemy",
            f"stream_results + yield_per {BATCH} + .mappings()",
            sqlalchemy_pair,
            (yield_per, layer_stream),
        )
    )
    if PostgresDatabase is not None:
        work.append(
            workload(
                "copy_out_1m",
                "psycopg",
                "cursor.copy + set_types + rows()",
                psycopg_pair,
                (raw_copy, layer_copy),
            )
        )
    work.append(
        workload(
            "copy_out_1m",
            "sqlalchemy",
            "psycopg cursor.copy + set_types + rows() (driver_connection)",
            sqlalchemy_pair,
            (driver_copy, layer_copy),
        )
    )
    return work
