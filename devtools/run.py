"""``make run``: the whole pipeline on this machine, embedded defaults.

Starts a private redis-server with a generated password, migrates the SQLite
database, creates the demo users, then runs the Procfile (web, bridge, worker
× WORKER_PROCESSES, flower) under ``devtools.procs.Supervisor``. Ctrl-C stops all of it, Redis
included, and exits 0.

Everything the running pipeline is configured with goes into ONE env file,
``.run/env`` (git-ignored, mode 600; ``ECLEAN_RUN_DIR`` moves the folder).
Django settings load it when present, so from a second terminal
``manage.py ...``, ``celery -A workers ...`` and the health checks reach this
pipeline with no exports; a variable set in the real environment wins over
the file. The generated secrets in it are reused by the next run, so the
logins stay the same.

A ``.env`` file at the repository root is compose's configuration: it is
ignored here (the banner says so when there is one).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from .procs import WORKER_PROCESSES, Supervisor, read_procfile, scale
from .redis_server import RedisServer, free_port

REPO = Path(__file__).resolve().parent.parent
# Where the env file, the lock, the SQLite file and Redis's AOF live.
RUN_DIR = Path(os.environ.get("ECLEAN_RUN_DIR") or REPO / ".run")
ENV_FILE = RUN_DIR / "env"
LEGACY_SECRETS = RUN_DIR / "secrets.env"  # older runs kept the secrets there
LOCK_FILE = RUN_DIR / "run.lock"
REDIS_PID = RUN_DIR / "redis.pid"  # the Redis of the running make run, on its AOF

# Generated once, then reused from the env file.
SECRETS = {
    "REDIS_PASSWORD": lambda: secrets.token_urlsafe(24),
    "DJANGO_SECRET_KEY": lambda: secrets.token_urlsafe(50),
    "DEMO_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(12),
    "DEMO_CLIENT_PASSWORD": lambda: secrets.token_urlsafe(12),
    "DEMO_CLEANER_PASSWORD": lambda: secrets.token_urlsafe(12),
    "FLOWER_BASIC_AUTH": lambda: f"admin:{secrets.token_urlsafe(12)}",
}
# Variables of the developer's shell that would point the processes at
# another Redis than the one started here.
STALE = ("REDIS_URL", "REDIS_PASSWORD_FILE", "REDIS_USERNAME", "REDIS_SSL", "REDIS_DB", "CELERY_BROKER_URL",
         "DJANGO_SECRET_KEY_FILE", "ECLEAN_ENV_FILE")


class AlreadyRunning(Exception):
    pass


def _port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def _read(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            words = shlex.split(line, comments=True)
            if words:
                key, _, value = words[0].partition("=")
                values[key] = value
    return values


def load_secrets() -> dict[str, str]:
    """The generated secrets of earlier runs, completed with new ones."""
    old = {**_read(LEGACY_SECRETS), **_read(ENV_FILE)}
    if "FLOWER_BASIC_AUTH" not in old and old.get("FLOWER_PASSWORD"):
        old["FLOWER_BASIC_AUTH"] = f"admin:{old['FLOWER_PASSWORD']}"
    return {key: old.get(key) or make() for key, make in SECRETS.items()}


def private_run_dir() -> None:
    """Create ``.run/`` readable by its owner only: it holds the env file, the
    SQLite database (sessions, password hashes) and Redis's AOF."""
    RUN_DIR.mkdir(mode=0o700, exist_ok=True)
    RUN_DIR.chmod(0o700)


def write_env_file(values: dict[str, str]) -> None:
    """Write ``.run/env`` atomically, mode 600 from the start (never readable
    by others, not even for a moment)."""
    private_run_dir()
    tmp = ENV_FILE.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# Written by `make run` for the pipeline it runs; Django settings load it when\n"
                 "# present (variables set in the environment win). Secrets: keep it private.\n")
        fh.writelines(f"{key}={shlex.quote(value)}\n" for key, value in values.items())
    os.chmod(tmp, 0o600)
    tmp.replace(ENV_FILE)
    LEGACY_SECRETS.unlink(missing_ok=True)


def take_lock():
    """Hold ``.run/run.lock`` for the life of this process, or raise
    AlreadyRunning naming the one that holds it. An flock dies with its
    process, so a crashed run never leaves a stale lock behind."""
    private_run_dir()
    fh = open(LOCK_FILE, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise AlreadyRunning(holder) from None
    fh.seek(0)
    fh.truncate()
    return fh


@contextmanager
def terminal_foreground():
    """Make this process group the terminal's foreground group while we run.

    Ctrl-C goes to the whole foreground group, ``make`` included, and make
    reports "Interrupt" and exits 130 whatever its recipe returns. In a group
    of our own, the Ctrl-C reaches only us: we stop everything cleanly and
    return 0, which make passes on. No terminal (CI, tests): nothing to do.
    """
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        yield
        return
    previous = None
    try:
        previous = os.tcgetpgrp(tty)
        if os.getpid() != os.getsid(0):
            os.setpgid(0, 0)
        # A background group changing the terminal gets SIGTTOU: ignore it.
        old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            os.tcsetpgrp(tty, os.getpgrp())
        finally:
            signal.signal(signal.SIGTTOU, old)
    except OSError:
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            try:
                os.tcsetpgrp(tty, previous)
            except OSError:
                pass
            finally:
                signal.signal(signal.SIGTTOU, old)
        os.close(tty)


def banner(ports: dict[str, int], found: dict[str, str], env_file_shown: str) -> str:
    web, flower = f"http://127.0.0.1:{ports['web']}", f"http://127.0.0.1:{ports['flower']}"
    flower_user, _, flower_pw = found["FLOWER_BASIC_AUTH"].partition(":")
    lines = [
        "",
        "E-Clean pipeline starting (Ctrl-C stops everything)",
        f"  site      {web}/   (links to the admin, the notifications page and the health check)",
        f"  admin     {web}/admin/   user admin / {found['DEMO_ADMIN_PASSWORD']}",
        f"  demo      user client / {found['DEMO_CLIENT_PASSWORD']}   user cleaner / {found['DEMO_CLEANER_PASSWORD']}",
        f"  flower    {flower}/   user {flower_user} / {flower_pw}",
        f"  metrics   http://127.0.0.1:{ports['metrics']}/metrics (bridge)",
        f"  health    {web}/healthz",
        f"  redis     127.0.0.1:{ports['redis']}, password in {env_file_shown} (never printed)",
        f"  settings  {env_file_shown}: every command in another terminal reads it, e.g.",
        "              .venv/bin/python backend/manage.py publish_event notifications notification.created "
        "'{\"user_id\": 2, \"title\": \"Hi\", \"message\": \"Hello\"}'",
        "              make shell · make manage ARGS=\"...\" · make redis-cli",
    ]
    if found.get("DJANGO_DEBUG", "0").lower() not in ("1", "true", "yes", "on"):
        lines.append("  debug     off, as in production (DJANGO_DEBUG=1 make run for Django's debug pages)")
    if (REPO / ".env").exists():
        lines.append("  note      .env is docker compose's configuration: make run ignores it")
    return "\n".join(lines) + "\n"


def leftover_redis() -> int | None:
    """The pid of a Redis an earlier make run left running (it was killed
    before it could stop it), or None. A second Redis on the same AOF
    directory would corrupt it."""
    try:
        pid = int(REDIS_PID.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"redis-server" in cmdline else None


def _interrupt(*_):
    raise KeyboardInterrupt


def worker_processes() -> int:
    """How many ``worker`` processes to run: WORKER_PROCESSES, default
    devtools.procs.WORKER_PROCESSES (why that many: see there)."""
    given = os.environ.get("WORKER_PROCESSES", "").strip()
    if not given:
        return WORKER_PROCESSES
    if not given.isdigit() or int(given) < 1:
        raise ValueError(f"WORKER_PROCESSES={given!r}: set it to a whole number of worker processes, "
                         f"1 or more (default {WORKER_PROCESSES})")
    return int(given)


def main() -> int:
    # A SIGTERM during start-up ends like a Ctrl-C: Redis stopped, not orphaned.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        worker_processes()
    except ValueError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 2
    try:
        lock = take_lock()
    except AlreadyRunning as exc:
        print(f"make run is already running: {exc}.\nStop it first (Ctrl-C in its terminal), "
              "or use that one: other terminals reach it through its env file.", file=sys.stderr)
        return 1
    orphan = leftover_redis()
    if orphan:
        print(f"make run: the Redis of an earlier make run still runs on {RUN_DIR / 'redis'} (pid {orphan}); "
              f"stop it first: kill {orphan}", file=sys.stderr)
        return 1
    found = load_secrets()
    ports = {
        "redis": _port(int(os.environ.get("RUN_REDIS_PORT", 6390))),
        "web": _port(int(os.environ.get("WEB_PORT", 8000))),
        "flower": _port(int(os.environ.get("FLOWER_PORT", 5555))),
        "metrics": _port(int(os.environ.get("BRIDGE_METRICS_PORT", 9808))),
    }
    shown = os.path.relpath(ENV_FILE, Path.cwd()) if ENV_FILE.is_relative_to(Path.cwd()) else str(ENV_FILE)
    lock.write(f"pid {os.getpid()}, web http://127.0.0.1:{ports['web']}/, settings in {shown}")
    lock.flush()
    # What a second terminal needs to reach this pipeline. Not the bridge's
    # metrics port: a second bridge started from there would fight for it.
    settings = {
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(ports["redis"]),
        "REDIS_PASSWORD": found["REDIS_PASSWORD"],
        "DATABASE_URL": os.environ.get("DATABASE_URL", f"sqlite:///{RUN_DIR.resolve() / 'db.sqlite3'}"),
        "DJANGO_SECRET_KEY": found["DJANGO_SECRET_KEY"],
        # Production's setting by default, so what works here works there
        # (no debug pages listing the URLs, static files served as in production).
        "DJANGO_DEBUG": os.environ.get("DJANGO_DEBUG", "0"),
        "FLOWER_BASIC_AUTH": found["FLOWER_BASIC_AUTH"],
        # Local tasks take milliseconds: 3 s for running ones to finish keeps
        # every Ctrl-C short (an idle worker waits it out too).
        "CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT": os.environ.get("CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT", "3"),
        "WEB_PORT": str(ports["web"]),
        "FLOWER_PORT": str(ports["flower"]),
        "DEMO_ADMIN_PASSWORD": found["DEMO_ADMIN_PASSWORD"],
        "DEMO_CLIENT_PASSWORD": found["DEMO_CLIENT_PASSWORD"],
        "DEMO_CLEANER_PASSWORD": found["DEMO_CLEANER_PASSWORD"],
    }
    write_env_file(settings)
    env = {key: value for key, value in os.environ.items() if key not in STALE}
    env.update(settings, BRIDGE_METRICS_PORT=str(ports["metrics"]), PYTHONUNBUFFERED="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    redis_dir = RUN_DIR / "redis"
    redis_dir.mkdir(exist_ok=True)
    server = RedisServer(port=ports["redis"], password=found["REDIS_PASSWORD"], appendonly=True,
                         directory=str(redis_dir))
    server.start()
    REDIS_PID.write_text(f"{server.proc.pid}\n")
    try:
        with terminal_foreground():
            return _start(env, ports, found, shown)
    except KeyboardInterrupt:
        print("make run: interrupted during start-up", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave Redis running
        server.stop()
        REDIS_PID.unlink(missing_ok=True)
        print("redis stopped", flush=True)
        lock.close()


def _start(env: dict[str, str], ports: dict[str, int], found: dict[str, str], shown: str) -> int:
    try:
        manage = [sys.executable, str(REPO / "backend" / "manage.py")]
        subprocess.run([*manage, "migrate", "--no-input", "-v", "0"], env=env, check=True)
        subprocess.run([*manage, "seed_demo"], env=env, check=True, stdout=subprocess.DEVNULL)
        print(banner(ports, {**found, "DJANGO_DEBUG": env["DJANGO_DEBUG"]}, shown), flush=True)
        soft = float(env.get("CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT") or 10)
        entries = scale(read_procfile(REPO / "Procfile"), {"worker": worker_processes()})
        supervisor = Supervisor(entries, env, REPO, grace=soft + 20)
        # Signal handlers only set a flag; the supervisor does the stopping.
        signal.signal(signal.SIGINT, lambda *_: supervisor.stop())
        signal.signal(signal.SIGTERM, lambda *_: supervisor.stop())
        return supervisor.run()
    except subprocess.CalledProcessError as exc:
        print(f"make run: manage.py {exc.cmd[2]} failed with exit code {exc.returncode}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
