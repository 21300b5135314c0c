"""`make run` as a person uses it: in a terminal (a real pseudo-terminal here),
with every command the README shows for a second terminal, a compose `.env`
lying in the checkout, a second `make run` by mistake, and Ctrl-C at the end."""

from __future__ import annotations

import os
import pty
import re
import select
import shlex
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from devtools.redis_server import free_port

from .support import REPO, wait_for

pytestmark = pytest.mark.slow

# The README block a person copies into a second terminal while `make run` runs.
README_BLOCK = "<!-- second-terminal commands: tests/test_run_commands.py runs each line -->"


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    start = text.index(README_BLOCK)
    block = text[start:].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def clean_env(run_dir: Path) -> dict[str, str]:
    """A new terminal: the system's PATH and locale, none of the suite's
    settings. ECLEAN_RUN_DIR only says where this test's `make run` keeps its
    files (the default, .run/, may belong to a developer's own `make run`)."""
    env = {k: os.environ[k] for k in ("HOME", "LANG", "LC_ALL", "TERM") if k in os.environ}
    env["PATH"] = os.defpath if "PATH" not in os.environ else ":".join(
        p for p in os.environ["PATH"].split(":") if ".venv" not in p)
    env["ECLEAN_RUN_DIR"] = str(run_dir)
    return env


class Terminal:
    """A command in a new session whose controlling terminal is a pty, as in
    an interactive shell: Ctrl-C is the byte 0x03 typed into it."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log_path = log
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: exec, never return into pytest
            try:
                os.chdir(REPO)
                os.execvpe(args[0], args, env)
            finally:
                os._exit(127)
        self._out = open(log, "wb")
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()
        self.returncode: int | None = None

    def _drain(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.5)
                if ready:
                    data = os.read(self.fd, 65536)
                    if not data:
                        break
                    self._out.write(data)
                    self._out.flush()
            except OSError:  # EIO: the session ended
                break

    def text(self) -> str:
        return self.log_path.read_text(errors="replace").replace("\r\n", "\n")

    def type(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                self._thread.join(5)
                self._out.close()
                return self.returncode
            time.sleep(0.2)
        raise TimeoutError

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _kill_leftovers(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.fixture
def compose_env_file():
    """A compose `.env` in the checkout, as `cp .env.example .env` leaves it,
    with another Redis password and ports than `make run` uses."""
    path = REPO / ".env"
    if path.exists():
        pytest.skip("this checkout has its own .env; the test does not touch it")
    path.write_text("REDIS_PASSWORD=from-compose-env\nREDIS_PORT=6379\nWEB_PORT=8000\nFLOWER_PORT=5555\n"
                    "DJANGO_SECRET_KEY=compose\nDATABASE_URL=postgresql://eclean@postgres/eclean\n")
    yield path
    path.unlink(missing_ok=True)


@pytest.mark.timeout(420)
def test_make_run_in_a_terminal_with_every_readme_command(tmp_path, compose_env_file):
    run_dir = tmp_path / "run"
    ports = {"RUN_REDIS_PORT": free_port(), "WEB_PORT": free_port(), "FLOWER_PORT": free_port(),
             "BRIDGE_METRICS_PORT": free_port()}
    env = clean_env(run_dir)
    # Two worker copies (the default is one): each gets its own node name.
    scaled = {"WORKER_PROCESSES": "2", "CELERY_WORKER_CONCURRENCY": "1"}
    term = Terminal(["make", "run"], {**env, **scaled, **{k: str(v) for k, v in ports.items()}},
                    tmp_path / "make-run.log")
    try:
        nodes = ["worker.1@", "worker.2@"]
        wait_for(lambda: "Event bridge ready" in term.text()
                 and all(re.search(rf" {re.escape(n)}\S+ ready\.", term.text()) for n in nodes), timeout=180,
                 what=f"the pipeline up, with two workers:\n{term.text()[-3000:]}")
        banner = term.text()
        assert "worker.3@" not in banner and "Traceback" not in banner
        # Item 2: the compose .env is said to be ignored, and it is: every process
        # got make run's password and ports (the bridge and worker are connected).
        assert ".env is docker compose's configuration: make run ignores it" in banner
        settings = dict(line.split("=", 1) for line in (run_dir / "env").read_text().splitlines()
                        if line and not line.startswith("#"))
        assert settings["REDIS_PORT"] == str(ports["RUN_REDIS_PORT"])
        assert settings["REDIS_PASSWORD"] != "from-compose-env"
        assert settings["REDIS_PASSWORD"] not in banner, "the Redis password is never printed"
        assert (run_dir / "env").stat().st_mode & 0o777 == 0o600
        web = f"http://127.0.0.1:{ports['WEB_PORT']}"
        assert requests.get(f"{web}/healthz", timeout=10).json()["status"] == "ok"

        # Item 1: each README command, from a clean environment, while make run runs.
        commands = readme_commands()
        assert len(commands) >= 6, commands
        outputs = {}
        for command in commands:
            result = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True,
                                    timeout=120, stdin=subprocess.DEVNULL)
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
            assert settings["REDIS_PASSWORD"] not in result.stdout + result.stderr
            outputs[command] = result.stdout
        joined = "\n".join(outputs.values())
        assert "pong" in joined  # celery -A workers inspect ping
        assert all(n in joined for n in nodes), "every worker answers the README's inspect ping"
        assert "healthy: subscribed" in joined  # python -m workers.bridge --check
        assert "answered ping" in joined  # python -m workers.healthcheck
        assert re.search(r"^1$", joined, re.M), "redis-cli PUBLISH reached the bridge (1 subscriber)"
        published = re.findall(r"^[0-9a-f-]{36}$", joined, re.M)
        assert published, "manage.py publish_event printed the event id"
        database = sqlite3.connect(run_dir / "db.sqlite3")
        raw_id = re.search(r'"id":"([0-9a-f-]{36})"', "\n".join(commands)).group(1)
        wait_for(lambda: database.execute(
            "SELECT count(*) FROM core_notification WHERE event_id IN (?, ?)",
            (published[0].replace("-", ""), raw_id.replace("-", ""))).fetchone()[0] == 2,
            timeout=60, what="both README events handled into the database make run uses")
        database.close()

        # The demo users log in with the printed passwords (checked by Django's
        # own authentication, against the database make run uses).
        for user in ("client", "cleaner", "admin"):
            password = re.search(rf"user {user} / (\S+)", banner).group(1)
            check = subprocess.run(
                [".venv/bin/python", "backend/manage.py", "shell", "-c",
                 "import os; from django.contrib.auth import authenticate; "
                 "print(authenticate(username=os.environ['U'], password=os.environ['P']))"],
                cwd=REPO, env={**env, "U": user, "P": password}, capture_output=True, text=True, timeout=60)
            assert check.stdout.strip().endswith(user), f"{user} cannot log in: {check.stdout}{check.stderr}"

        # Item 6 under make run: a landing page, and no debug page listing the URLs.
        landing = requests.get(f"{web}/", timeout=10)
        assert landing.status_code == 200 and "/admin/" in landing.text
        missing = requests.get(f"{web}/no-such-page", timeout=10)
        assert missing.status_code == 404 and "URLconf" not in missing.text and "api/jobs" not in missing.text

        # Item 3: a second make run refuses, naming the running one, and starts nothing.
        second = subprocess.run(["make", "-s", "run"], cwd=REPO, env={**env, "RUN_REDIS_PORT": str(free_port())},
                                capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert second.returncode != 0
        lock_holder = re.search(r"pid (\d+)", second.stderr)
        assert "already running" in second.stderr and lock_holder, second.stderr
        assert Path(f"/proc/{lock_holder.group(1)}").exists()
        assert settings == dict(line.split("=", 1) for line in (run_dir / "env").read_text().splitlines()
                                if line and not line.startswith("#")), "the running one's settings untouched"

        # Item 4: Ctrl-C on the idle pipeline: quiet, exit 0.
        time.sleep(2)
        term.type(b"\x03")
        code = term.wait(120)
        out = term.text()
        assert code == 0, out[-3000:]
        assert "SIGKILL" not in out and "Error" not in out and "Interrupt" not in out, out[-3000:]
        assert "redis stopped" in out
    finally:
        if term.returncode is None:
            # A failed run: kill what it left (its processes' groups, its
            # Redis) while they still run, so no pid can have been reused.
            started = [int(p) for p in re.findall(r"\(pid=(\d+)\)", term.text())]
            redis_pid = run_dir / "redis.pid"
            _kill_leftovers(started + ([int(redis_pid.read_text())] if redis_pid.exists() else []))
            term.kill()
            try:
                term.wait(30)
            except TimeoutError:
                pass
    for port in ports.values():
        assert not _port_open(port), f"port {port} still open after Ctrl-C"
    assert not (run_dir / "run.lock").exists() or _lock_free(run_dir / "run.lock")


def _lock_free(path: Path) -> bool:
    import fcntl

    with open(path) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False


def test_readme_has_no_command_that_shows_a_password():
    text = (REPO / "README.md").read_text()
    assert "source .run/secrets.env" not in text
    assert not re.search(r"redis-cli[^\n]*(-a |--pass)", text), "redis-cli passwords go in REDISCLI_AUTH"
    for command in readme_commands():
        shlex.split(command)  # each line is one complete shell command
