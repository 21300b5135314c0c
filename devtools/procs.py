"""Process helpers shared by the test suite, the benchmark, `make test` and `make run`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class ProcFailed(AssertionError):
    """A process exited, or did not log what was awaited, in time."""


class Proc:
    """A subprocess in its own process group, its output in
    ``<log_dir>/<name>.log``: what the tests and the benchmark start.

    ``env`` is the whole environment (nothing is inherited); ``stdout`` may be
    a pipe for a process that answers on it, stderr always goes to the log.
    """

    def __init__(self, name: str, args: list[str], log_dir, env: dict[str, str], *, stdin=None, stdout=None):
        self.name = name
        self.args = args
        self.log_path = Path(log_dir) / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdin=stdin or subprocess.DEVNULL,
                                     stdout=stdout or self._log, stderr=self._log, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 30.0, count: int = 1) -> None:
        """Wait until the log holds ``text`` ``count`` times; raise
        :class:`ProcFailed`, with the log's tail, if the process exits first
        or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            if self.proc.poll() is not None and self.log().count(text) < count:
                raise ProcFailed(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise ProcFailed(f"{self.name} did not log {text!r} within {timeout:.0f}s:\n"
                                 f"--- {self.name} log ---\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def signal(self, sig: int, group: bool = False) -> None:
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM the group, SIGKILL what is left after ``timeout``; the exit code."""
        code = stop_group(self.proc, timeout)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream:
                stream.close()
        self._log.close()
        return code


def stop_group(proc: subprocess.Popen, timeout: float = 20.0) -> int | None:
    """Stop a process started with ``start_new_session=True`` and everything in
    its group (a Celery worker's pool processes): SIGTERM, then SIGKILL after
    ``timeout``, then SIGKILL to whatever is left in the group."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return proc.returncode


def postgres_unavailable(url: str) -> str | None:
    """None when a PostgreSQL server answers at ``url``, else why not."""
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=5):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {first}"


def read_procfile(path) -> list[tuple[str, str]]:
    """``name: command`` lines of a Procfile, in order (``#`` lines skipped)."""
    entries = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip().isidentifier() or not command.strip():
            raise ValueError(f"{path}, line {number}: expected 'name: command'")
        entries.append((name.strip(), command.strip()))
    return entries


# How many `worker` processes `make run` starts (WORKER_PROCESSES overrides),
# each `celery -A workers worker` with one pool process per core
# (CELERY_WORKER_CONCURRENCY). One: `make bench`'s worker-topology table found
# no layout of 2-4 processes faster on 2 cores, and one worker -c 2 used the
# least CPU per event (README, Performance). More are for more cores or hosts.
# docker-compose.yml runs as many replicas of the worker service.
WORKER_PROCESSES = 1


def scale(entries: list[tuple[str, str]], counts: dict[str, int]) -> list[tuple[str, str]]:
    """Each entry ``counts[name]`` times (default once), as ``honcho start -c
    worker=3`` does: the copies of a scaled entry are named ``worker.1`` …
    ``worker.3``. Unlike honcho (``web.1``), an entry run once keeps its plain
    name (``web``), as the log prefixes always had it."""
    unknown = set(counts) - {name for name, _ in entries}
    if unknown:
        raise ValueError(f"no Procfile entry named {', '.join(sorted(unknown))}")
    scaled = []
    for name, command in entries:
        n = counts.get(name, 1)
        if n < 1:
            raise ValueError(f"{name}: at least one process, not {n}")
        scaled += [(name, command)] if n == 1 else [(f"{name}.{i}", command) for i in range(1, n + 1)]
    return scaled


class Supervisor:
    """Runs the Procfile's processes side by side, each in its own process
    group, their output interleaved with a ``name |`` prefix; stops them all
    when one exits or on :meth:`stop` (SIGINT/SIGTERM in ``make run``).

    Why not honcho: honcho reads ``.env`` over the environment it is given
    (compose's ``.env`` then breaks ``make run``), gives processes a fixed 5 s
    before SIGKILL (the worker's soft shutdown alone takes longer), and
    exits 130 on a Ctrl-C that stopped everything cleanly.
    """

    def __init__(self, entries: list[tuple[str, str]], env: dict[str, str], cwd, grace: float,
                 out=None):
        self.entries = entries
        self.env = env
        self.cwd = cwd
        # How long stopped processes get before SIGKILL: above the worker's
        # soft shutdown, so a clean stop never needs it.
        self.grace = grace
        self.out = out or sys.stdout
        self.procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop_requested = threading.Event()
        self._force = threading.Event()
        self.width = max(len(name) for name, _ in entries)

    def say(self, name: str, line: str) -> None:
        with self._lock:
            self.out.write(f"{time.strftime('%H:%M:%S')} {name.ljust(self.width)} | {line}\n")
            self.out.flush()

    def _pump(self, name: str, stream) -> None:
        for raw in iter(stream.readline, b""):
            self.say(name, raw.decode("utf-8", "replace").rstrip("\n"))
        stream.close()

    def start(self) -> None:
        for name, command in self.entries:
            # The variable honcho sets, so a Procfile line can tell its copies
            # apart (the worker's node name) under either runner.
            env = {**self.env, "HONCHO_PROCESS_NAME": name}
            proc = subprocess.Popen(["/bin/sh", "-c", exec_form(command)], env=env, cwd=self.cwd,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            self.procs[name] = proc
            self.say("run", f"{name} started (pid={proc.pid})")
            thread = threading.Thread(target=self._pump, args=(name, proc.stdout), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Ask for a stop; safe from a signal handler (only sets flags). A
        second request while stopping means "now": SIGKILL what is left."""
        if self._stop_requested.is_set():
            self._force.set()
        self._stop_requested.set()

    def run(self) -> int:
        """Start everything and wait. 0 when stopped on request and every
        process ended within the grace period; otherwise the exit code of the
        process that ended first (1 if it was 0, since nothing should end)."""
        self.start()
        first: tuple[str, int] | None = None
        while not self._stop_requested.wait(0.2):
            ended = [(n, p.returncode) for n, p in self.procs.items() if p.poll() is not None]
            if ended:
                first = ended[0]
                self.say("run", f"{first[0]} exited with code {first[1]}; stopping the others")
                break
        else:
            self.say("run", f"stopping (processes get up to {self.grace:g} s to finish their work; "
                            "Ctrl-C again to kill them now)")
        killed = self._terminate_all()
        for thread in self._threads:
            thread.join(5)
        if first is not None:
            return first[1] or 1
        return 1 if killed else 0

    def _terminate_all(self) -> list[str]:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        # Wait for each whole group, not only the shell we started: the shell
        # may die of the SIGTERM at once while its command (a Celery worker in
        # its soft shutdown) is still finishing.
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline and not self._force.is_set():
            for proc in self.procs.values():
                proc.poll()  # reap, so a finished shell does not keep its group alive
            if not any(_group_alive(proc.pid) for proc in self.procs.values()):
                break
            time.sleep(0.1)
        killed = []
        for name, proc in self.procs.items():
            if _group_alive(proc.pid):
                why = "asked twice" if self._force.is_set() else f"did not stop within {self.grace:g} s"
                self.say("run", f"{name} {why}: SIGKILL")
                killed.append(name)
            # The whole group: a worker's pool processes, a shell's child.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
        return killed


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs. Zombies do not count:
    an orphan's zombie lingers where PID 1 does not reap (some containers)."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():  # no procfs (macOS): zombies count
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after ")".
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


_ASSIGNMENTS = re.compile(r"^((?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*)(.*)$", re.S)


def exec_form(command: str) -> str:
    """``NAME=v cmd args`` -> ``NAME=v exec cmd args``: the shell becomes the
    command, so the pid we signal and wait for is the process itself. A line
    with shell operators is left as it is."""
    if any(op in command for op in (";", "&", "|", "\n", "(", "`")):
        return command
    assignments, rest = _ASSIGNMENTS.match(command.strip()).groups()
    return f"{assignments}exec {rest}"
