"""Helpers for tests that run the real processes: the bridge and Celery workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from devtools.procs import stop_group

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


class Proc:
    """A subprocess in its own process group, output to a log file."""

    def __init__(self, name: str, args: list[str], log_dir: Path, env: dict | None = None):
        self.name = name
        self.args = args
        self.log_path = log_dir / f"{name}.log"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, cwd=REPO, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 30.0, count: int = 1) -> None:
        def seen():
            if self.proc.poll() is not None and self.log().count(text) < count:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            return self.log().count(text) >= count

        try:
            wait_for(seen, timeout, what=f"{self.name} to log {text!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {self.name} log ---\n{self.log()[-3000:]}") from None

    def signal(self, sig: int, group: bool = False) -> None:
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 20.0) -> int | None:
        code = stop_group(self.proc, timeout)
        self._log.close()
        return code


def bridge(log_dir: Path, name: str = "bridge", env: dict | None = None) -> Proc:
    return Proc(name, [sys.executable, "-m", "workers.bridge"], log_dir, env)


def worker(log_dir: Path, name: str = "worker", queues: str = "jobs,notifications,chat,payments",
           concurrency: int = 2, env: dict | None = None, extra: tuple[str, ...] = ()) -> Proc:
    args = [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", queues, "-c", str(concurrency),
            "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "INFO", *extra]
    return Proc(name, args, log_dir, {"REMAP_SIGTERM": "SIGQUIT", **(env or {})})


WORKER_READY = "ready."


def envelope(type: str, data: dict, event_id: str | None = None) -> dict:
    return {"id": event_id or str(uuid.uuid4()), "type": type, "data": data,
            "occurred_at": "2026-11-26T10:00:00+00:00", "version": 1}


def publish_raw(client, topic: str, message) -> int:
    """PUBLISH as another program would: no journal, no project code."""
    payload = message if isinstance(message, (bytes, str)) else json.dumps(message)
    return client.publish(topic, payload)
