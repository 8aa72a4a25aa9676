"""Benchmarks: every workload through the layer and through the raw driver it wraps.

Both run in the same process, interleaved (raw, layer, layer, raw, ...) so that drift
of the machine hits both alike; each repetition gives one ratio layer/raw, and the
table reports the median and the min-max of those ratios.

    python bench/run.py              # full run, prints the table
    python bench/run.py --quick      # under a minute
    python bench/run.py --write docs/benchmarks.md
    python bench/run.py --only pooled_tx point_read

Needs PostgreSQL (``BENCH_PG_URL``, default postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import workloads

PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


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

    @property
    def ratios(self) -> list[float]:
        return [lay / raw for lay, raw in zip(self.layer, self.raw, strict=True)]

    @property
    def met(self) -> bool | None:
        """Whether the target is met (None without a target)."""
        if self.target is None:
            return None
        med = statistics.median(self.ratios)
        return 1 / med >= self.target if self.higher_is_better_ratio else med <= self.target

    def row(self) -> list[str]:
        ratios = self.ratios
        med = statistics.median(ratios)
        raw_rate = self.ops / statistics.median(self.raw)
        lay_rate = self.ops / statistics.median(self.layer)
        verdict = {None: "-", True: "met", False: "NOT met"}[self.met]
        target = (
            "-"
            if self.target is None
            else (f">= {self.target:g}x throughput" if self.higher_is_better_ratio else f"<= {self.target:g}")
        )
        return [
            self.workload,
            self.backend,
            self.raw_label,
            f"{raw_rate:,.0f} {self.unit}",
            f"{lay_rate:,.0f} {self.unit}",
            f"**{med:.3f}** ({min(ratios):.3f}-{max(ratios):.3f})",
            self._cpu(),
            target,
            verdict,
            "; ".join(f"{k}: {v}" for k, v in self.extra.items()),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and operations (< 1 minute)")
    parser.add_argument("--write", type=Path, help="write the markdown report to this file")
    parser.add_argument("--only", nargs="*", help="run only these workloads")
    args = parser.parse_args()

    scale = workloads.Scale.quick() if args.quick else workloads.Scale.full()
    started = time.perf_counter()
    stolen_before = _cpu_ticks()
    results: list[Result] = []
    for spec in workloads.all_workloads(PG_URL, scale):
        if args.only and spec.name not in args.only:
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
            interleave(result, raw, layer, scale.reps_for(spec.name))
        result.extra.update(spec.extra())
        results.append(result)
    elapsed = time.perf_counter() - started
    report = render(results, args, elapsed, _steal_share(stolen_before, _cpu_ticks()))
    print(report)
    if args.write:
        args.write.write_text(report)
        print(f"wrote {args.write}", file=sys.stderr)


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
        "target",
        "",
        "notes",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r.row()) + " |" for r in results]
    targeted = [r for r in results if r.met is not None]
    missed = [f"{r.workload} [{r.backend}]" for r in targeted if not r.met]
    lines += [
        "",
        f"Targets met in this run: {len(targeted) - len(missed)} of {len(targeted)}."
        + (f" Not met: {', '.join(missed)}; why: see below." if missed else ""),
    ]
    versions = ", ".join(
        f"{name} {version(name)}" for name in ("psycopg", "psycopg-pool", "sqlalchemy", "asyncpg") if _has(name)
    )
    command = (
        "python bench/run.py" + (" --quick" if args.quick else "") + (f" --write {args.write}" if args.write else "")
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
            *lines,
            "",
            workloads.NOTES,
        ]
    )


def _has(name: str) -> bool:
    try:
        version(name)
    except Exception:
        return False
    return True


if __name__ == "__main__":
    main()
