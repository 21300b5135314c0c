"""Subprocesses of the benchmark: environment, start, wait for a log line, stop."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from devtools.procs import stop_group

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


class Proc:
    """A subprocess in its own process group, its output in a log file."""

    def __init__(self, name: str, args: list[str], log_dir: Path, env: dict[str, str], stdin=None, stdout=None):
        self.name = name
        self.log_path = Path(log_dir) / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdin=stdin or subprocess.DEVNULL,
                                     stdout=stdout or self._log, stderr=self._log, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not log {text!r} within {timeout:.0f}s:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> int | None:
        stop_group(self.proc, timeout)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream:
                stream.close()
        self._log.close()
        return self.proc.returncode


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
