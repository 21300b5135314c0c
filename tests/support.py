"""Helpers for tests that run the real processes: the bridge and Celery workers."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

from devtools.procs import Proc

REPO = Path(__file__).resolve().parent.parent
READY = "Event bridge ready, listening to topics: ['jobs', 'notifications', 'chat', 'payments']"


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll until ``predicate()`` is truthy; return its value or fail with ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def start(name: str, args: list[str], log_dir: Path, env: dict | None = None) -> Proc:
    """Start ``args`` with the suite's environment plus ``env``, its output in
    ``log_dir/<name>.log``."""
    return Proc(name, args, log_dir, {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def bridge(log_dir: Path, name: str = "bridge", env: dict | None = None) -> Proc:
    return start(name, [sys.executable, "-m", "workers.bridge"], log_dir, env)


def worker(log_dir: Path, name: str = "worker", queues: str = "jobs,notifications,chat,payments",
           concurrency: int = 2, env: dict | None = None, extra: tuple[str, ...] = ()) -> Proc:
    args = [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", queues, "-c", str(concurrency),
            "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "INFO", *extra]
    return start(name, args, log_dir, {"REMAP_SIGTERM": "SIGQUIT", **(env or {})})


WORKER_READY = "ready."


def envelope(type: str, data: dict, event_id: str | None = None) -> dict:
    return {"id": event_id or str(uuid.uuid4()), "type": type, "data": data,
            "occurred_at": "2026-11-26T10:00:00+00:00", "version": 1}


def publish_raw(client, topic: str, message) -> int:
    """PUBLISH as another program would: no journal, no project code."""
    payload = message if isinstance(message, (bytes, str)) else json.dumps(message)
    return client.publish(topic, payload)


def scrape(port: int) -> dict[str, float]:
    """A Prometheus endpoint on this host as {sample: value}."""
    import requests

    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values
