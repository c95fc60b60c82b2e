"""The published-measurement data set and the accuracy benchmark over it.

The benchmark reports every entry, misses included (docs/accuracy.md quotes it). These tests hold the
data to its promises (a source and an exact place for every number; a scenario we can estimate) and
require at least ten entries within their stated tolerance, as the foundation issue asks.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import accuracy


def test_every_entry_has_a_source_and_a_metric() -> None:
    entries = accuracy.load_entries()
    assert len(entries) >= 10
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids))
    for e in entries:
        assert e["source"].startswith("http"), e["id"]
        assert e.get("where"), e["id"]
        assert e["metric"] in accuracy.METRIC_ATTR, e["id"]
        assert float(e["measured_gib"]) > 0, e["id"]


def test_every_entry_can_be_estimated() -> None:
    rows = accuracy.run()
    failed = [(r.id, r.error) for r in rows if r.error]
    assert not failed, failed


def test_at_least_ten_measurements_within_their_stated_tolerance() -> None:
    rows = accuracy.run()
    summary = accuracy.summarize(rows)
    assert summary["within_tolerance"] >= 10, summary
