"""The real-time phase of ``make bench``: commit → message on the client socket.

``python -m bench.realtime`` (the harness runs it as its own process, so its
Django set-up stays out of the harness) starts a password-protected Redis, an
SQLite database and the Procfile's web process (Daphne), opens ``--clients``
WebSocket clients, one user each, from a separate process
(``bench.wsclients``), then commits notifications at ``--rate`` per second
spread over those users, each pushed after its commit exactly as a worker's
handler does (``core.realtime.push`` from ``transaction.on_commit``).

* Latency: ``time.monotonic()`` in the ``on_commit`` callback (after the
  commit) to ``time.monotonic()`` when the client process has read and
  parsed the message (Linux's monotonic clock is shared by processes).
* RSS: the web process's VmRSS before any socket, with every socket open and
  idle (the difference ÷ clients is the cost of an idle connection), and its
  VmHWM at the end.
* Lost: committed − distinct ids received; duplicates are counted apart.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devtools.redis_server import RedisServer, free_port

from .procs import REPO, clean_env, python

FULL = {"clients": 1000, "rate": 200.0, "count": 3000}
QUICK = {"clients": 40, "rate": 100.0, "count": 200}
TARGETS = {"p99_ms": 50.0, "lost": 0, "kb_per_idle_connection": 60.0}


def _status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": ordered[-1]}


def server_command(server: str) -> list[str]:
    """The web process: the Procfile's line (Daphne), or uvicorn for comparison."""
    if server == "daphne":
        line = next(l.partition(":")[2].strip() for l in (REPO / "Procfile").read_text().splitlines()
                    if l.startswith("web:"))
        return ["sh", "-c", line]
    if server == "uvicorn":  # the comparison that chose Daphne (README); `pip install uvicorn` first
        return ["sh", "-c", "cd backend && exec uvicorn --host 127.0.0.1 --port $WEB_PORT --ws websockets "
                            "--ws-max-size 65536 --no-access-log --lifespan off e_clean_backend.asgi:application"]
    raise SystemExit(f"unknown server {server}")


def measure(clients: int, rate: float, count: int, server: str, workdir: Path) -> dict:
    """Run the phase in this process (Django is set up here); return its figures."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * clients + 256)), hard))
    redis_server = RedisServer(password=f"b:@/{secrets.token_hex(8)}").start()
    port = free_port()
    env = clean_env(
        REDIS_URL=redis_server.url, DATABASE_URL=f"sqlite:///{workdir / 'realtime.sqlite3'}",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(40), DJANGO_DEBUG="0", DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="WARNING", WEB_PORT=str(port),
    )
    os.environ.update({k: env[k] for k in ("REDIS_URL", "DATABASE_URL", "DJANGO_SECRET_KEY", "DJANGO_DEBUG",
                                           "DJANGO_ALLOWED_HOSTS", "LOG_LEVEL")})
    os.environ["DJANGO_SETTINGS_MODULE"] = "e_clean_backend.settings"
    from e_clean_backend.bootstrap import setup

    setup()
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command
    from django.db import transaction

    from core import realtime
    from core.models import Notification

    call_command("migrate", verbosity=0)
    User = get_user_model()
    User.objects.bulk_create([User(username=f"rt{i}", password="!") for i in range(clients)])
    users = list(User.objects.order_by("pk"))
    cookies = []
    for user in users:
        store = SessionStore()
        store.update({SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                      HASH_SESSION_KEY: user.get_session_auth_hash()})
        store.create()
        cookies.append(store.session_key)

    log = open(workdir / f"web-{server}.log", "ab")
    web = subprocess.Popen(server_command(server), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, start_new_session=True)
    ws_clients = None
    try:
        import urllib.request

        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if web.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"web did not start:\n{(workdir / f'web-{server}.log').read_text()[-3000:]}")
            time.sleep(0.2)
        time.sleep(0.5)
        rss_before = _status_kb(web.pid, "VmRSS")
        out = workdir / "clients.json"
        ws_clients = subprocess.Popen(
            python("-m", "bench.wsclients", "--url", f"ws://127.0.0.1:{port}/ws/notifications/",
                   "--origin", f"http://127.0.0.1:{port}", "--out", str(out)),
            cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        ws_clients.stdin.write(",".join(cookies) + "\n")
        ws_clients.stdin.flush()
        line = ws_clients.stdout.readline().strip()
        if not line.startswith("connected"):
            raise RuntimeError(f"clients did not connect: {line!r}\n{(workdir / f'web-{server}.log').read_text()[-3000:]}")
        retries = int(line.split("(")[1].split()[0])
        time.sleep(2.0)  # every resume answered, the sockets idle
        rss_idle = _status_kb(web.pid, "VmRSS")

        committed: dict[int, float] = {}

        def pushed(n):
            committed[n.pk] = time.monotonic()
            realtime.push([n])

        start = time.monotonic()
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with transaction.atomic():
                n = Notification.objects.create(user=users[i % clients], kind="bench", title=f"n{i}",
                                                message="m", event_id=f"00000000-0000-4000-8000-{i:012d}")
                transaction.on_commit(lambda n=n: pushed(n))
        elapsed = time.monotonic() - start
        realtime.pusher.flush(timeout=30)
        time.sleep(3.0)  # stragglers
        rss_end = _status_kb(web.pid, "VmRSS")
        ws_clients.stdin.write("stop\n")
        ws_clients.stdin.flush()
        ws_clients.wait(60)
        got = json.loads(out.read_text())
        received = {int(k): v for k, v in got["received"].items()}
        latencies = [(received[i] - t) * 1000 for i, t in committed.items() if i in received]
        return {
            "server": server,
            "clients": clients,
            "rate_target": rate,
            "rate_achieved": round(count / elapsed, 1),
            "committed": len(committed),
            "received": len(set(received) & set(committed)),
            "lost": len(set(committed) - set(received)),
            "lost_ids": sorted(set(committed) - set(received))[:20],
            "duplicates": got["duplicates"],
            "closed": got["closed"],
            "handshakes_retried": retries,
            "latency_ms": {k: (round(v, 2) if v is not None else None) for k, v in _percentiles(latencies).items()},
            "rss_mb": {"before": round(rss_before / 1024, 1), "idle_connected": round(rss_idle / 1024, 1),
                       "after": round(rss_end / 1024, 1),
                       "peak": round((_status_kb(web.pid, "VmHWM") or 0) / 1024, 1)},
            "kb_per_idle_connection": round((rss_idle - rss_before) / clients, 1),
            "push_failed": realtime.pusher.failed,
        }
    finally:
        from devtools.procs import stop_group

        if ws_clients is not None:
            stop_group(ws_clients, 10)
        stop_group(web, 20)
        log.close()
        redis_server.cleanup()


def run(quick: bool, workdir: Path, server: str = "daphne") -> dict:
    """From the harness: the phase in its own process, its figures back as JSON."""
    sizes = QUICK if quick else FULL
    out = workdir / "realtime.json"
    args = python("-m", "bench.realtime", "--clients", str(sizes["clients"]), "--rate", str(sizes["rate"]),
                  "--count", str(sizes["count"]), "--server", server, "--json", str(out))
    result = subprocess.run(args, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"realtime phase failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return json.loads(out.read_text())


def targets(result: dict) -> list[dict]:
    """The issue's targets, in the harness's format (bench/report.py)."""
    lat, kb, lost = result["latency_ms"], result["kb_per_idle_connection"], result["lost"]
    where = f"{result['clients']:,} clients, {result['rate_achieved']:g} commits/s, {result['server']}"
    return [
        {"target": "real-time: commit → client socket p99 ≤ 50 ms", "figure": lat["p99"],
         "met": lat["p99"] is not None and lat["p99"] <= TARGETS["p99_ms"],
         "detail": f"p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms ({where})"},
        {"target": "real-time: 0 notifications lost", "figure": lost, "met": lost == 0,
         "detail": f"{lost} lost, {result['duplicates']} duplicates of {result['committed']:,} committed"},
        {"target": "real-time: ≤ 60 KB RSS per idle connection", "figure": kb,
         "met": kb <= TARGETS["kb_per_idle_connection"],
         "detail": f"{kb} KB ({result['rss_mb']['before']} MB before, {result['rss_mb']['idle_connected']} MB "
                   f"with {result['clients']:,} idle sockets, peak {result['rss_mb']['peak']} MB)"},
    ]


def markdown(result: dict) -> str:
    """The phase's table and targets, for the console and latest.md."""
    lat = result["latency_ms"]
    rss = result["rss_mb"]
    lines = [
        "## Real-time notifications",
        "",
        f"{result['clients']:,} WebSocket clients (one user each, separate process), notifications committed at "
        f"{result['rate_achieved']:g}/s (target {result['rate_target']:g}/s) spread over them, pushed after commit.",
        "",
        "| server | clients | committed | p50 / p95 / p99 / max ms | RSS MB before / idle / peak "
        "| KB per idle connection | lost | duplicates |",
        "|---|---|---|---|---|---|---|---|",
        f"| {result['server']} | {result['clients']:,} | {result['committed']:,} | "
        f"{lat['p50']} / {lat['p95']} / {lat['p99']} / {lat['max']} | "
        f"{rss['before']} / {rss['idle_connected']} / {rss['peak']} | {result['kb_per_idle_connection']} | "
        f"{result['lost']} | {result['duplicates']} |",
        "",
        "| target | result | met |",
        "|---|---|---|",
        *[f"| {t['target']} | {t['detail']} | {'yes' if t['met'] else '**no**'} |" for t in targets(result)],
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.realtime", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=FULL["clients"])
    parser.add_argument("--rate", type=float, default=FULL["rate"])
    parser.add_argument("--count", type=int, default=FULL["count"])
    parser.add_argument("--server", choices=("daphne", "uvicorn"), default="daphne")
    parser.add_argument("--json", type=Path, help="write the figures here (default: print them)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="eclean-bench-rt-") as tmp:
        result = measure(args.clients, args.rate, args.count, args.server, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(markdown(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
