"""``make run``: the whole pipeline on this machine, embedded defaults.

Starts a private redis-server with a fresh password, migrates the SQLite
database, creates the demo users, then runs the Procfile (web, bridge, worker,
flower) with honcho. Ctrl-C stops all of it, Redis included.

Secrets are generated into ``.run/secrets.env`` (git-ignored, mode 600) on the
first run and reused after, so the admin login stays the same between runs.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from .redis_server import RedisServer, free_port

REPO = Path(__file__).resolve().parent.parent
# Where the generated secrets, the SQLite file and Redis's AOF live.
RUN_DIR = Path(os.environ.get("ECLEAN_RUN_DIR") or REPO / ".run")
SECRETS = RUN_DIR / "secrets.env"


def _port(preferred: int) -> int:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def load_secrets() -> dict[str, str]:
    values: dict[str, str] = {}
    if SECRETS.exists():
        for line in SECRETS.read_text().splitlines():
            key, _, value = line.partition("=")
            if key:
                values[key] = value
    wanted = {
        "REDIS_PASSWORD": lambda: secrets.token_urlsafe(24),
        "DJANGO_SECRET_KEY": lambda: secrets.token_urlsafe(50),
        "DEMO_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(12),
        "FLOWER_PASSWORD": lambda: secrets.token_urlsafe(12),
    }
    changed = False
    for key, make in wanted.items():
        if not values.get(key):
            values[key] = make()
            changed = True
    if changed:
        RUN_DIR.mkdir(exist_ok=True)
        SECRETS.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        SECRETS.chmod(0o600)
    return values


def main() -> int:
    RUN_DIR.mkdir(exist_ok=True)
    found = load_secrets()
    redis_port = _port(int(os.environ.get("RUN_REDIS_PORT", 6390)))
    web_port = _port(int(os.environ.get("WEB_PORT", 8000)))
    flower_port = _port(int(os.environ.get("FLOWER_PORT", 5555)))
    metrics_port = _port(int(os.environ.get("BRIDGE_METRICS_PORT", 9808)))
    redis_dir = RUN_DIR / "redis"
    redis_dir.mkdir(exist_ok=True)
    server = RedisServer(port=redis_port, password=found["REDIS_PASSWORD"], appendonly=True, directory=str(redis_dir))
    env = {
        **os.environ,
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_port),
        "REDIS_PASSWORD": found["REDIS_PASSWORD"],
        "DJANGO_SECRET_KEY": found["DJANGO_SECRET_KEY"],
        "DJANGO_DEBUG": os.environ.get("DJANGO_DEBUG", "1"),
        "DATABASE_URL": os.environ.get("DATABASE_URL", f"sqlite:///{RUN_DIR / 'db.sqlite3'}"),
        "DEMO_ADMIN_PASSWORD": found["DEMO_ADMIN_PASSWORD"],
        "FLOWER_BASIC_AUTH": f"admin:{found['FLOWER_PASSWORD']}",
        "WEB_PORT": str(web_port),
        "FLOWER_PORT": str(flower_port),
        "BRIDGE_METRICS_PORT": str(metrics_port),
        "PYTHONUNBUFFERED": "1",
    }
    for stale in ("REDIS_URL", "REDIS_PASSWORD_FILE", "REDIS_USERNAME", "CELERY_BROKER_URL"):
        env.pop(stale, None)
    server.start()
    try:
        manage = [sys.executable, str(REPO / "backend" / "manage.py")]
        subprocess.run([*manage, "migrate", "--no-input", "-v", "0"], env=env, check=True)
        subprocess.run([*manage, "seed_demo"], env=env, check=True)
        print(
            "\n"
            "E-Clean pipeline starting (Ctrl-C stops everything)\n"
            f"  admin     http://127.0.0.1:{web_port}/admin/   user admin / {found['DEMO_ADMIN_PASSWORD']}\n"
            f"  flower    http://127.0.0.1:{flower_port}/        user admin / {found['FLOWER_PASSWORD']}\n"
            f"  metrics   http://127.0.0.1:{metrics_port}/metrics (bridge)\n"
            f"  health    http://127.0.0.1:{web_port}/healthz\n"
            f"  redis     127.0.0.1:{redis_port}, password in .run/secrets.env (REDIS_PASSWORD)\n"
            f"  try:      .venv/bin/python backend/manage.py publish_event notifications notification.created "
            "'{\"user_id\": 2, \"title\": \"Hi\", \"message\": \"Hello\"}'\n"
            "  (or `source .run/secrets.env` and redis-cli -p PORT -a \"$REDIS_PASSWORD\" PUBLISH jobs '<json>')\n",
            flush=True,
        )
        honcho = subprocess.Popen([sys.executable, "-m", "honcho", "start", "-f", str(REPO / "Procfile")],
                                  env=env, cwd=REPO)
        # SIGINT reaches honcho too (same terminal process group); on SIGTERM
        # forward it, so `kill` on make run stops everything as well.
        signal.signal(signal.SIGTERM, lambda *_: honcho.send_signal(signal.SIGTERM))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return honcho.wait()
    finally:
        server.stop()
        print("redis stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
