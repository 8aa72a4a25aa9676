"""The benchmarks page's chart: bench/run.py writes it next to the report and embeds it."""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import run  # noqa: E402 - bench/ is not a package

REPORT = ROOT / "docs" / "benchmarks.md"
SVG_NS = "{http://www.w3.org/2000/svg}"


def test_the_committed_chart_is_the_reports_table() -> None:
    """docs/benchmarks.svg is what --chart-from makes of docs/benchmarks.md (a full run rewrites both)."""
    bars = run.bars_from_report(REPORT.read_text(encoding="utf-8"))
    measured = [
        line for line in REPORT.read_text(encoding="utf-8").splitlines() if line.startswith("| ") and "**" in line
    ]
    assert len(bars) == len(measured) > 10
    assert (ROOT / "docs" / "benchmarks.svg").read_text(encoding="utf-8") == run.render_svg(bars)


def test_the_chart_draws_a_bar_and_a_whisker_per_row() -> None:
    bars = [run.Bar("pooled_tx", "psycopg", 1.05, 0.6, 1.4), run.Bar("fetch <50k> & more", "sqlalchemy", 0.9, 0.8, 2.9)]
    svg = ET.fromstring(run.render_svg(bars))  # noqa: S314 - our own output; well-formed, names escaped
    labels = [t.text for t in svg.iter(f"{SVG_NS}text")]
    assert "pooled_tx [psycopg]" in labels and "fetch <50k> & more [sqlalchemy]" in labels
    assert "1.050" in labels and "1.0 = raw driver" in labels
    bar_rects = [r for r in svg.iter(f"{SVG_NS}rect") if r.find(f"{SVG_NS}title") is not None]
    assert len(bar_rects) == 2
    assert float(bar_rects[0].get("width", 0)) < float(bar_rects[1].get("width", 0)) * 1.2
    dashed = [line for line in svg.iter(f"{SVG_NS}line") if line.get("stroke-dasharray")]
    assert len(dashed) == 1  # the 1.0 line


def test_writing_the_report_writes_the_chart_and_embeds_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run.workloads, "server_version", lambda url: "PostgreSQL (test)")
    result = run.Result("pooled_tx", "psycopg", "psycopg_pool", "tx/s", raw=[1.0, 1.0], layer=[1.1, 0.9])
    result.raw_cpu, result.layer_cpu = [0.1, 0.1], [0.1, 0.1]
    target = tmp_path / "bench.md"
    args = argparse.Namespace(quick=True, only=None, reps=None, write=target)
    report = run.render([result], args, 1.0)
    assert "![" in report and "](bench.svg)" in report
    chart = run.write_chart(run.bars_from_results([result]), target)
    assert chart == tmp_path / "bench.svg"
    assert run.bars_from_report(report) == run.bars_from_results([result])
    without_file = run.render([result], argparse.Namespace(quick=True, only=None, reps=None, write=None), 1.0)
    assert ".svg)" not in without_file
