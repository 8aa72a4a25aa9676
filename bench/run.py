"""Benchmarks: every workload through the layer and through the raw driver it wraps.

Both run in the same process, interleaved (raw, layer, layer, raw, ...) so that drift
of the machine hits both alike; each repetition gives one ratio layer/raw, and the
table reports the median and the min-max of those ratios.

    python bench/run.py              # full run, prints the table
    python bench/run.py --quick      # under a minute
    python bench/run.py --write docs/benchmarks.md
    python bench/run.py --only pooled_tx point_read
    python bench/run.py --only tpcb_like --reps 3

Round trips per operation of the transaction workloads are counted afterwards in a short
pass of their own, through the counting TCP proxy of tests/_roundtrips.py.

Needs PostgreSQL (``BENCH_PG_URL``, default postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import math
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).parent))

import workloads

PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROUND_TRIPS_MODULE = Path(__file__).resolve().parent.parent / "tests" / "_roundtrips.py"
#: Warm-up runs before a counted one: every pooled connection open and every statement past
#: psycopg's prepare_threshold (preparing costs a round trip once per statement and connection).
COUNT_WARMUPS = 3


@dataclass
class Result:
    workload: str
    backend: str
    raw_label: str
    unit: str
    raw: list[float] = field(default_factory=list)  # seconds per repetition
    layer: list[float] = field(default_factory=list)
    raw_cpu: list[float] = field(default_factory=list)  # this process's CPU seconds per repetition
    layer_cpu: list[float] = field(default_factory=list)
    ops: int = 1
    extra: dict[str, str] = field(default_factory=dict)
    target: float | None = None
    higher_is_better_ratio: bool = False  # COPY target is a throughput ratio
    #: A second target against another side of the same run: (its label, its seconds per
    #: repetition, at least this many times its throughput); e.g. tpcb_like against pgbench.
    vs: tuple[str, list[float], float] | None = None
    skipped: str | None = None  # the side did not run: why
    round_trips: tuple[float | None, float | None] | None = None  # per operation: raw, layer
    #: Further targets of the row, each with whether it is met (e.g. a peak RSS growth).
    limits: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [lay / raw for lay, raw in zip(self.layer, self.raw, strict=True)]

    @property
    def vs_ratios(self) -> list[float]:
        if self.vs is None or not self.vs[1]:
            return []
        return [lay / other for lay, other in zip(self.layer, self.vs[1], strict=True)]

    @property
    def met(self) -> bool | None:
        """Whether the targets are met (None without a target or when the side did not run)."""
        if self.target is None or self.skipped:
            return None
        med = statistics.median(self.ratios)
        met = 1 / med >= self.target if self.higher_is_better_ratio else med <= self.target
        if self.vs is not None and self.vs_ratios:
            met = met and 1 / statistics.median(self.vs_ratios) >= self.vs[2]
        return met and all(ok for _, ok in self.limits)

    def _target(self) -> str:
        if self.target is None:
            return "-"
        text = f">= {self.target:g}x throughput" if self.higher_is_better_ratio else f"<= {self.target:g}"
        if self.vs is not None:
            text += f"; >= {self.vs[2]:g}x {self.vs[0]}" + ("" if self.vs[1] else " (not measured)")
        return text + "".join(f"; {label}" for label, _ in self.limits)

    def _round_trips(self) -> str:
        if self.round_trips is None:
            return "-"
        return " / ".join("-" if n is None else f"{n:.1f}" for n in self.round_trips)

    def row(self) -> list[str]:
        notes = "; ".join(f"{k}: {v}" for k, v in self.extra.items())
        if self.skipped or not self.layer:
            notes = "; ".join(filter(None, [self.skipped or "not measured", notes]))
            return [
                self.workload,
                self.backend,
                self.raw_label,
                "-",
                "-",
                "-",
                "-",
                self._round_trips(),
                self._target(),
                "-",
                notes,
            ]
        ratios = self.ratios
        med = statistics.median(ratios)
        raw_rate = self.ops / statistics.median(self.raw)
        lay_rate = self.ops / statistics.median(self.layer)
        verdict = {None: "-", True: "met", False: "NOT met"}[self.met]
        vs = self.vs_ratios
        if self.vs is not None and vs:
            against = f"vs {self.vs[0]}: {statistics.median(vs):.3f} ({min(vs):.3f}-{max(vs):.3f})"
            notes = "; ".join(filter(None, [against, notes]))
        return [
            self.workload,
            self.backend,
            self.raw_label,
            f"{raw_rate:,.0f} {self.unit}",
            f"{lay_rate:,.0f} {self.unit}",
            f"**{med:.3f}** ({min(ratios):.3f}-{max(ratios):.3f})",
            self._cpu(),
            self._round_trips(),
            self._target(),
            verdict,
            notes,
        ]

    def _cpu(self) -> str:
        """Client CPU per operation, raw and layer: what the layer costs in absolute terms,
        unaffected by time stolen by other tenants of the machine (which widens the wall ratios)."""
        raw = statistics.median(self.raw_cpu) / self.ops * 1e6
        layer = statistics.median(self.layer_cpu) / self.ops * 1e6
        if raw >= 1000:
            return f"{raw / 1000:,.1f} / {layer / 1000:,.1f} ms"
        return f"{raw:,.1f} / {layer:,.1f} us ({layer - raw:+,.1f})"


def interleave(result: Result, raw: Callable[[], float], layer: Callable[[], float], reps: int) -> Result:
    raw()  # warm-up: connections opened, statements prepared, caches filled
    layer()
    for rep in range(reps):
        order = (raw, layer) if rep % 2 == 0 else (layer, raw)
        for fn in order:
            cpu = time.process_time()
            elapsed = fn()
            cpu = time.process_time() - cpu
            if fn is raw:
                result.raw.append(elapsed)
                result.raw_cpu.append(cpu)
            else:
                result.layer.append(elapsed)
                result.layer_cpu.append(cpu)
    return result


def interleave_sides(
    spec: workloads.MultiWorkload, raw: Callable[[], workloads.Measured], sides: list[workloads.Side], reps: int
) -> list[Result]:
    """The baseline and every side that runs, in an order that rotates by one each repetition;
    one Result (one row) per side, each against the baseline's repetitions."""
    results = {
        side.backend: Result(
            spec.name,
            side.backend,
            spec.raw_label,
            spec.unit,
            ops=spec.ops,
            target=side.target,
            higher_is_better_ratio=True,
            skipped=side.skipped,
        )
        for side in sides
    }
    runs: list[tuple[str | None, Callable[[], workloads.Measured]]] = [(None, raw)]
    runs += [(side.backend, side.run) for side in sides if side.run is not None]
    raw_times: list[float] = []
    raw_cpu: list[float] = []

    def one(fn: Callable[[], workloads.Measured]) -> workloads.Measured:
        if spec.reset is not None:
            spec.reset()
        return fn()

    for _, fn in runs:  # warm-up
        one(fn)
    for rep in range(reps):
        shift = rep % len(runs)
        for backend, fn in runs[shift:] + runs[:shift]:
            elapsed, cpu = one(fn)
            times, cpus = (
                (raw_times, raw_cpu) if backend is None else (results[backend].layer, results[backend].layer_cpu)
            )
            times.append(elapsed)
            cpus.append(cpu)
    for side in sides:
        result = results[side.backend]
        result.raw, result.raw_cpu = list(raw_times), list(raw_cpu)
        result.extra.update(side.notes)
        if side.vs is not None:
            other = results.get(side.vs[0])
            result.vs = (side.vs[0], other.layer if other is not None and other.layer else [], side.vs[1])
        if side.baseline is not None:
            result.extra.update(against(result, results.get(side.baseline), side.baseline))
    return list(results.values())


def against(result: Result, other: Result | None, label: str) -> dict[str, str]:
    """A side against another side of the same run (no target): the wall ratio, repetition
    by repetition, and the client CPU per operation (what the difference costs, unaffected
    by time stolen from the VM)."""
    if other is None or not other.layer or not result.layer:
        return {}
    ratios = [mine / theirs for mine, theirs in zip(result.layer, other.layer, strict=True)]
    mine = statistics.median(result.layer_cpu) / result.ops * 1e6
    theirs = statistics.median(other.layer_cpu) / other.ops * 1e6
    return {
        f"vs {label}": (
            f"wall {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}), "
            f"CPU {mine:,.1f} vs {theirs:,.1f} us/op ({mine - theirs:+,.1f} us, x{mine / theirs:.3f})"
        )
    }


def _selected(name: str, only: list[str] | None) -> bool:
    return not only or name in only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and operations (< 1 minute)")
    parser.add_argument(
        "--write", type=Path, help="write the markdown report to this file (and its chart next to it, as .svg)"
    )
    parser.add_argument(
        "--chart-from", type=Path, metavar="REPORT", help="only (re)write the chart of an existing report, then exit"
    )
    parser.add_argument("--only", nargs="*", help="run only these workloads")
    parser.add_argument("--reps", type=int, help="repetitions of every workload (default: by scale and workload)")
    parser.add_argument(
        "--no-round-trips", action="store_true", help="skip the pass that counts round trips per operation"
    )
    args = parser.parse_args()
    if args.chart_from:
        chart = write_chart(bars_from_report(args.chart_from.read_text(encoding="utf-8")), args.chart_from)
        print(f"wrote {chart}", file=sys.stderr)
        return

    scale = workloads.Scale.quick() if args.quick else workloads.Scale.full()
    started = time.perf_counter()
    stolen_before = _cpu_ticks()
    results: list[Result] = []
    with workloads.prepared(PG_URL, scale, args.only):
        for spec in workloads.all_workloads(PG_URL, scale):
            if not _selected(spec.name, args.only):
                continue
            reps = args.reps or scale.reps_for(spec.name)
            if isinstance(spec, workloads.MultiWorkload):
                print(f"running {spec.name} ...", file=sys.stderr, flush=True)
                with spec.context() as (raw_sides, sides):
                    results += interleave_sides(spec, raw_sides, sides, reps)
                continue
            print(f"running {spec.name} [{spec.backend}] ...", file=sys.stderr, flush=True)
            result = Result(
                spec.name,
                spec.backend,
                spec.raw_label,
                spec.unit,
                ops=spec.ops,
                target=spec.target,
                higher_is_better_ratio=spec.throughput_target,
            )
            with spec.context() as (raw, layer):
                interleave(result, raw, layer, reps)
            result.extra.update(spec.extra())
            result.limits = getattr(spec, "limits", list)()  # e.g. stream_workloads' memory target
            results.append(result)
        if not args.no_round_trips:
            count_round_trips(results, args.only)
    elapsed = time.perf_counter() - started
    report = render(results, args, elapsed, _steal_share(stolen_before, _cpu_ticks()))
    print(report)
    if args.write:
        args.write.write_text(report)
        chart = write_chart(bars_from_results(results), args.write)
        print(f"wrote {args.write} and {chart}", file=sys.stderr)


def _round_trip_proxy(url: str) -> Any:
    """The counting proxy of tests/_roundtrips.py (imported by path: one copy of it), in front
    of the server of ``url``."""
    spec = importlib.util.spec_from_file_location("_roundtrips", ROUND_TRIPS_MODULE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parts = urlsplit(url)
    return module.RoundTripProxy((parts.hostname or "127.0.0.1", parts.port or 5432))


def _through(url: str, port: int) -> str:
    """``url`` with its host and port replaced by the proxy's (user, database and query kept)."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=(f"{user}@" if user else "") + f"127.0.0.1:{port}"))


def count_round_trips(results: list[Result], only: list[str] | None) -> None:
    """Round trips per operation of the transaction workloads, both sides: the same code built
    again against the counting proxy at a tiny scale, each side run once as a warm-up and once
    counted. Not timed; after the timed runs, so it cannot disturb them."""
    names = {n for n in workloads.ROUND_TRIP_WORKLOADS if _selected(n, only)}
    if not names:
        return
    print("counting round trips ...", file=sys.stderr, flush=True)
    by_key = {(r.workload, r.backend): r for r in results}
    proxy = _round_trip_proxy(PG_URL)
    scale = workloads.Scale.counting()
    try:
        for spec in workloads.all_workloads(_through(PG_URL, proxy.port), scale):
            if spec.name not in names:
                continue
            if isinstance(spec, workloads.MultiWorkload):
                with spec.context() as (raw, sides):

                    def counted(fn: Callable[[], object], spec: workloads.MultiWorkload = spec) -> float:
                        for _ in range(COUNT_WARMUPS):
                            if spec.reset is not None:
                                spec.reset()
                            fn()
                        if spec.reset is not None:
                            spec.reset()
                        with proxy.counting() as trips:
                            fn()
                        return float(trips.count) / spec.ops

                    raw_trips = counted(raw)
                    for side in sides:
                        result = by_key.get((spec.name, side.backend))
                        if result is None:
                            continue
                        if side.count is not None:
                            if spec.reset is not None:
                                spec.reset()
                            layer_trips: float | None = side.count(proxy.counting)
                        else:
                            layer_trips = None if side.run is None else counted(side.run)
                        result.round_trips = (raw_trips, layer_trips)
                continue
            result = by_key.get((spec.name, spec.backend))
            if result is None:
                continue
            with spec.context() as (raw_fn, layer_fn):
                trips_per_op: list[float | None] = []
                for fn in (raw_fn, layer_fn):
                    for _ in range(COUNT_WARMUPS):
                        fn()
                    with proxy.counting() as trips:
                        fn()
                    trips_per_op.append(float(trips.count) / spec.ops)
                result.round_trips = (trips_per_op[0], trips_per_op[1])
    finally:
        proxy.close()


def _cpu_ticks() -> tuple[int, int] | None:
    """(steal, total) CPU ticks of the machine from /proc/stat (Linux), else None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(f) for f in fields]
    return (ticks[7] if len(ticks) > 7 else 0), sum(ticks[:8])


def _steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> str:
    """How much CPU time the hypervisor gave to other guests during the run: the noise floor."""
    if before is None or after is None or after[1] == before[1]:
        return "not measured"
    return f"{100 * (after[0] - before[0]) / (after[1] - before[1]):.1f} % of CPU time stolen by other guests"


def render(results: list[Result], args: argparse.Namespace, elapsed: float, steal: str = "not measured") -> str:
    headers = [
        "workload",
        "backend",
        "raw baseline",
        "raw",
        "layer",
        "ratio layer/raw: median (min-max)",
        "client CPU per op: raw / layer",
        "round trips per op: raw / layer",
        "target",
        "",
        "notes",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r.row()) + " |" for r in results]
    targeted = [r for r in results if r.met is not None]
    missed = [f"{r.workload} [{r.backend}]" for r in targeted if not r.met]
    unmeasured = [f"{r.workload} [{r.backend}]" for r in results if r.target is not None and r.met is None]
    lines += [
        "",
        f"Targets met in this run: {len(targeted) - len(missed)} of {len(targeted)}."
        + (f" Not met: {', '.join(missed)}; why: see below." if missed else "")
        + (f" Not measured: {', '.join(unmeasured)}." if unmeasured else ""),
    ]
    versions = ", ".join(
        f"{name} {version(name)}" for name in ("psycopg", "psycopg-pool", "sqlalchemy", "asyncpg") if _has(name)
    )
    command = (
        "python bench/run.py"
        + (" --quick" if args.quick else "")
        + (f" --only {' '.join(repr(n) if ' ' in n else n for n in args.only)}" if args.only else "")
        + (f" --reps {args.reps}" if args.reps else "")
        + (f" --write {args.write}" if args.write else "")
    )
    return "\n".join(
        [
            "# Benchmarks",
            "",
            "Regenerated by `bench/run.py`; do not edit by hand. Each ratio compares the layer with the raw",
            "driver it wraps, measured interleaved in the same process; lower is better (1.00 = no cost).",
            "",
            f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; run took {elapsed:.0f} s; {steal}",
            f"- command: `{command}`",
            f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}; "
            f"Python {platform.python_version()}; server: {workloads.server_version(PG_URL)} on loopback",
            f"- versions: {versions}",
            "",
            *([chart_embed(args.write), ""] if args.write else []),
            *lines,
            "",
            workloads.NOTES,
        ]
    )


# -- the chart beside the table -----------------------------------------------------------
#
# A hand-written SVG (no plotting library): one horizontal bar per workload and backend, its
# length the median ratio layer/raw, a whisker from the lowest to the highest repetition, and
# a line at 1.0 (no cost). Written next to the report (docs/benchmarks.md -> benchmarks.svg)
# and embedded in it; --chart-from rebuilds it from a report's table.


@dataclass(frozen=True)
class Bar:
    """One row of the chart: a workload on a backend, and its ratios layer/raw."""

    workload: str
    backend: str
    median: float
    low: float
    high: float

    @property
    def label(self) -> str:
        return f"{self.workload} [{self.backend}]"


def chart_path(report: Path) -> Path:
    return report.with_suffix(".svg")


def chart_embed(report: Path) -> str:
    return (
        "![The ratio layer/raw of each workload and backend: the median as a bar, the lowest and highest"
        f" repetition as a whisker, 1.0 = no cost]({chart_path(report).name})"
    )


def bars_from_results(results: list[Result]) -> list[Bar]:
    bars = []
    for r in results:
        if r.skipped or not r.layer or not r.raw:
            continue
        ratios = r.ratios
        # As the table prints them, so that --chart-from rebuilds the same chart from the report.
        median, low, high = (float(f"{v:.3f}") for v in (statistics.median(ratios), min(ratios), max(ratios)))
        bars.append(Bar(r.workload, r.backend, median, low, high))
    return bars


_RATIO_CELL = re.compile(r"\*\*(?P<median>\d+(?:\.\d+)?)\*\*\s*\((?P<low>\d+(?:\.\d+)?)-(?P<high>\d+(?:\.\d+)?)\)")


def bars_from_report(markdown: str) -> list[Bar]:
    """The bars of a report's table (the columns are found by their headers)."""
    bars: list[Bar] = []
    columns: list[str] | None = None
    for line in markdown.splitlines():
        if not line.startswith("|"):
            columns = None if columns is not None and bars else columns
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if columns is None:
            if cells[:2] == ["workload", "backend"]:
                columns = cells
            continue
        if set(line) <= set("|-: "):
            continue
        row = dict(zip(columns, cells, strict=False))
        ratio = next((v for k, v in row.items() if k.startswith("ratio layer/raw")), "")
        match = _RATIO_CELL.search(ratio)
        if match:
            bars.append(
                Bar(
                    row["workload"],
                    row["backend"],
                    float(match["median"]),
                    float(match["low"]),
                    float(match["high"]),
                )
            )
    return bars


_COLOURS = {"psycopg": "#2a6fb0", "sqlalchemy": "#8a4fb3"}


def _colour(backend: str) -> str:
    return next((c for name, c in _COLOURS.items() if backend.startswith(name)), "#6b7280")


def render_svg(bars: list[Bar]) -> str:
    """The chart as an SVG document (deterministic: the same bars give the same bytes)."""
    from html import escape

    row_h, top, left, width, right = 24, 58, 300, 460, 70
    height = top + row_h * max(len(bars), 1) + 44
    total = left + width + right
    span = max([1.25, *(b.high for b in bars)])
    span = math.ceil(span * 4) / 4  # the axis ends on a multiple of 0.25

    def x(value: float) -> float:
        return round(left + width * min(value, span) / span, 1)

    title = "Benchmarks: time through the layer / time through the raw driver (lower is better)"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="{height}" '
        f'viewBox="0 0 {total} {height}" role="img" aria-labelledby="chart-title" '
        'font-family="-apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="12">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<rect width="{total}" height="{height}" fill="#ffffff"/>',
        f'<text x="12" y="20" font-size="14" font-weight="bold" fill="#111827">{escape(title)}</text>',
        '<text x="12" y="38" fill="#4b5563">bar: median of the repetitions; whisker: lowest to highest;'
        " 1.0 = the layer costs nothing</text>",
    ]
    for index, (name, colour) in enumerate(_COLOURS.items()):
        lx = total - 190 + index * 85
        out.append(f'<rect x="{lx}" y="42" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{lx + 14}" y="51" fill="#374151">{name}</text>')
    step = 0.25 if span <= 2.5 else 0.5
    tick = 0.0
    while tick <= span + 1e-9:
        tx = x(tick)
        out.append(f'<line x1="{tx}" y1="{top - 4}" x2="{tx}" y2="{height - 36}" stroke="#e5e7eb"/>')
        out.append(f'<text x="{tx}" y="{height - 22}" text-anchor="middle" fill="#4b5563">{tick:g}</text>')
        tick = round(tick + step, 2)
    for index, bar in enumerate(bars):
        y = top + index * row_h
        mid = y + row_h / 2
        colour = _colour(bar.backend)
        out.append(f'<text x="{left - 8}" y="{mid + 4}" text-anchor="end" fill="#111827">{escape(bar.label)}</text>')
        out.append(
            f'<rect x="{left}" y="{y + 5}" width="{round(x(bar.median) - left, 1)}" height="{row_h - 10}" '
            f'fill="{colour}" fill-opacity="0.85"><title>{escape(bar.label)}: median {bar.median:.3f}, '
            f"min {bar.low:.3f}, max {bar.high:.3f}</title></rect>"
        )
        lo, hi = x(bar.low), x(bar.high)
        out.append(f'<line x1="{lo}" y1="{mid}" x2="{hi}" y2="{mid}" stroke="#111827" stroke-width="1.2"/>')
        for end in (lo, hi):
            out.append(f'<line x1="{end}" y1="{mid - 5}" x2="{end}" y2="{mid + 5}" stroke="#111827"/>')
        out.append(f'<text x="{max(hi, x(bar.median)) + 6}" y="{mid + 4}" fill="#111827">{bar.median:.3f}</text>')
    one = x(1.0)
    out.append(
        f'<line x1="{one}" y1="{top - 8}" x2="{one}" y2="{height - 36}" stroke="#dc2626" '
        'stroke-width="1.5" stroke-dasharray="4 3"/>'
    )
    out.append(f'<text x="{one}" y="{height - 8}" text-anchor="middle" fill="#dc2626">1.0 = raw driver</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_chart(bars: list[Bar], report: Path) -> Path:
    path = chart_path(report)
    path.write_text(render_svg(bars), encoding="utf-8")
    return path


def _has(name: str) -> bool:
    try:
        version(name)
    except Exception:
        return False
    return True


if __name__ == "__main__":
    main()
