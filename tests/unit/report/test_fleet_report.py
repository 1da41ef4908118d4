"""The fleet's table (tasks/report/fleet.py): one row per release, a failure's error on one line."""

from __future__ import annotations

from tasks.report.fleet import FleetRelease, fleet_markdown


def test_the_table_has_a_row_per_release_with_the_failure_shown() -> None:
    releases = [
        FleetRelease("releases/a.yaml", "a", status="succeeded", action="created", duration_s=41.2),
        FleetRelease("releases/b.yaml", "b", status="failed", error="SmokeFailed: dim 384 | expected 385\nx"),
    ]
    text = fleet_markdown(releases)
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == 2
    assert "| `a` | succeeded | created | 41 s |" in rows[0]
    assert "**failed**" in rows[1] and "dim 384 \\| expected 385 x" in rows[1]
    assert "1 succeeded, 1 not" in text
