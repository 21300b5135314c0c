"""Smoke test of the benchmark harness (``make bench``) in --quick mode.

Not a timed test: nothing here asserts on speed, only that every row runs,
delivers everything it published, and that the results are printed and written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow


def _postgres_reachable() -> bool:
    url = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001 - any failure means "not reachable"
        return False


# Two small worker layouts: the topology table with the least start-up.
LAYOUTS = ["prefork-c1-warning", "solo-x1"]


@pytest.mark.timeout(240)
def test_quick_run_prints_the_table_and_writes_every_row(tmp_path):
    rows = ["old", "naive", "bridge", "celery-plain", "dramatiq", "e2e-sqlite", "e2e-sqlite-noevents"]
    if _postgres_reachable():
        rows.append("e2e-postgres")
    # The suite's own Redis/database variables must not leak into the harness:
    # it starts its own Redis and databases (and strips these itself too).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_", "DATABASE_", "CELERY_", "EVENTS_", "BRIDGE_"))}
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--rows", ",".join([*rows, "topology"]),
         "--layouts", ",".join(LAYOUTS), "--out", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=220,
    )
    assert result.returncode == 0, f"bench failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    out = result.stdout
    assert "| row | events/s |" in out
    for label in ("old loop", "naive bridge", "our bridge", "plain Celery", "Dramatiq", "end to end, SQLite WAL",
                  "task events off"):
        assert label in out
    assert "Worker topology" in out and "| prefork-c1-warning |" in out and "| solo-x1 |" in out
    doc = json.loads((tmp_path / "latest.json").read_text())
    assert (tmp_path / "latest.md").read_text().startswith("# E-Clean events benchmark")
    layout_rows = [f"e2e-sqlite@{layout}" for layout in LAYOUTS]
    assert set(doc["rows"]) == {"publisher", *rows, *layout_rows}
    for row, data in doc["rows"].items():
        median = data["median"]
        assert median["events_per_s"] > 0, f"{row}: no throughput"
        assert median["lost"] == 0, f"{row}: {median['lost']} events lost"
        assert median["cpu_ms_per_event"] > 0, f"{row}: no CPU figure"
        assert median["redis_calls_per_event"] > 0, f"{row}: no Redis command count"
        if row not in ("publisher", "naive", "bridge"):  # the rows that commit effects: both paced phases
            assert median["lat200_events"] > 0 and median["half_events"] > 0, row
            assert median["lat200_p99_ms"] is not None and median["half_p99_ms"] is not None, row
    assert [t["layout"] for t in doc["topology"]] == LAYOUTS
    assert doc["runs_per_row"] == 1
    # the real-time phase: a few WebSocket clients, everything committed arrives once
    realtime = doc["realtime"]
    assert realtime["received"] == realtime["committed"] > 0 and realtime["lost"] == 0
    assert realtime["duplicates"] == 0 and realtime["latency_ms"]["p50"] is not None
    assert "## Real-time notifications" in out
    assert doc["machine"]["redis-server"]
    assert {t["target"] for t in doc["targets"]}, "targets are evaluated"
