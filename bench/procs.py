"""Subprocesses of the benchmark: environment, start, wait for a log line, stop."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from devtools.procs import Proc  # noqa: F401 - the harness starts its processes with it

REPO = Path(__file__).resolve().parent.parent

# Anything from the caller's environment that would point a process elsewhere
# or change its behaviour (the test suite sets several of these).
_STRIP_PREFIXES = ("REDIS_", "DATABASE_", "CELERY_", "EVENTS_", "BRIDGE_", "DJANGO_", "SQLITE_", "LOG_",
                   "FLOWER_", "TEST_", "ECLEAN_")


def clean_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIP_PREFIXES)}
    venv_bin = str(Path(sys.executable).parent)
    if venv_bin not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    # Nor a running `make run`'s env file (.run/env): the bench sets its own.
    env["ECLEAN_ENV_FILE"] = "off"
    env.update(values)
    return env


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM: the kernel's record of the process' peak resident set."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def python(*args: str) -> list[str]:
    return [sys.executable, *args]
