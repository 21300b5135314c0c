"""``python -m bench``: run the rows, print the table, write the results."""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import tempfile
import threading
import time
import urllib.request
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from devtools.procs import WORKER_PROCESSES
from devtools.redis_server import RedisServer, free_port

from . import events, realtime, report
from .db import PostgresDatabase, SqliteDatabase
from .naive import READY as PUBSUB_BRIDGE_READY
from .observe import QueueDrainer
from .procs import REPO, Proc, clean_env, peak_rss_mb, python

# "topology" is not one row but one e2e-sqlite row per --layouts entry,
# named "e2e-sqlite@<layout>".
ROWS = ("publisher", "old", "naive", "bridge", "celery-plain", "dramatiq", "e2e-sqlite", "e2e-sqlite-noevents",
        "e2e-postgres", "topology")
SELECTABLE = ROWS[1:]
# The rows fed by bench/naive.py, each with its own target.
PUBSUB_BRIDGED = ("naive", "celery-plain", "dramatiq")
BRIDGE_READY = "Event bridge ready, listening to topics:"
PLAIN_CELERY_READY = "Plain Celery worker ready"  # bench/plain_celery.py prints it
DRAMATIQ_READY = "Worker process is ready for action."  # one per dramatiq worker process
# The worker layout of the e2e rows (see layout_workers): what `make run` and
# compose run, WORKER_PROCESSES workers of one pool process per core each.
E2E_LAYOUT = f"{WORKER_PROCESSES}x-c{os.cpu_count() or 2}"
DEFAULT_LAYOUTS = "prefork-c2,2x-c1,3x-c1,4x-c1,3x-c1-warning,solo-x2"
# The "half" phase: half the row's full-speed rate, within these bounds.
HALF_RATE_BOUNDS = (20.0, 10_000.0)
HALF_SECONDS = 6.0  # and at most this long: a slow row publishes fewer of the phase's events
# Commands the harness itself sends (buffer sampler, INFO) and, in the rows
# without a worker, the queue drainer's pops: not counted as the row's.
OWN_COMMANDS = {"info", "client", "client|list"}
DRAINER_COMMANDS = {"rpop", "brpop"}


def layout_workers(layout: str) -> list[tuple[list[str], dict[str, str]]]:
    """The worker processes of a layout: (celery worker arguments, extra env) each.

    ``prefork-cN`` one worker ``-c N``; ``prefork-cN-prefetchM`` the same with
    ``CELERY_WORKER_PREFETCH_MULTIPLIER=M``; ``Kx-cN`` K workers ``-c N``;
    ``solo-xK`` K workers ``-P solo``. Several workers get node names ``wI@%h``.
    Workers log at INFO as the Procfile's do (a line per task received, done
    and handled); a ``-warning`` suffix runs them at ``-l WARNING``: the cost of
    those lines."""
    level = "INFO"
    if layout.endswith("-warning"):
        layout, level = layout.removesuffix("-warning"), "WARNING"
    return [([*args, "-l", level], env) for args, env in _layout_workers(layout)]


def _layout_workers(layout: str) -> list[tuple[list[str], dict[str, str]]]:
    if m := re.fullmatch(r"prefork-c(\d+)(?:-prefetch(\d+))?", layout):
        env = {"CELERY_WORKER_PREFETCH_MULTIPLIER": m[2]} if m[2] else {}
        return [(["-c", m[1]], env)]
    if m := re.fullmatch(r"(\d+)x-c(\d+)", layout):
        return [(["-c", m[2], "-n", f"w{i}@%h"], {}) for i in range(1, int(m[1]) + 1)]
    if m := re.fullmatch(r"solo-x(\d+)", layout):
        return [(["-P", "solo", "-n", f"w{i}@%h"], {}) for i in range(1, int(m[1]) + 1)]
    raise ValueError(f"unknown worker layout {layout!r} (prefork-cN[-prefetchM], Kx-cN, solo-xK; "
                     "each with an optional -warning)")


def commits(row: str) -> bool:
    """Rows whose figures are effects committed to a database."""
    return row in ("old", "celery-plain", "dramatiq") or row.startswith("e2e")


@dataclass
class Sizes:
    warmup: int
    lat: int
    paced: int
    full: dict[str, int]
    idle_timeout: float
    lat200: int = 1000
    half: int = 1500
    lat_rate: float = 500.0
    paced_rate: float = 20_000.0
    full_batch: int = 250


# Sized so the full default run (3 runs of every row) stays under 10 minutes
# on 2 cores: the bridge rows get the 100,000-event burst the issue names;
# the rows that commit to a database get what they drain in seconds.
DEFAULT = Sizes(warmup=200, lat=1500, paced=40_000, idle_timeout=5.0, lat200=1000, half=1500,
                full={"publisher": 100_000, "old": 4_000, "naive": 20_000, "bridge": 100_000,
                      "celery-plain": 2_000, "dramatiq": 2_000, "e2e-sqlite": 2_000, "e2e-postgres": 2_000})
QUICK = Sizes(warmup=20, lat=100, paced=2_000, idle_timeout=3.0, lat200=40, half=60,
              full={"publisher": 2_000, "old": 200, "naive": 1_000, "bridge": 2_000,
                    "celery-plain": 200, "dramatiq": 200, "e2e-sqlite": 200, "e2e-postgres": 200})


@dataclass
class Phase:
    name: str
    start: int
    stop: int
    rate: float | None
    batch: int

    @property
    def count(self) -> int:
        return self.stop - self.start

    def spec(self) -> dict:
        return {"name": self.name, "start": self.start, "stop": self.stop, "rate": self.rate, "batch": self.batch}


def full_size(row: str, sizes: Sizes) -> int:
    base = row.partition("@")[0]
    return sizes.full.get(base, sizes.full["e2e-sqlite"])


def plan(row: str, sizes: Sizes, events_override: int | None, burst: int = 0) -> list[Phase]:
    """The phases of one row; every row walks the same event stream from index 0.

    ``burst``: the burst run instead (a warm-up, then ``burst`` events at full speed).
    The rate of "half" is set when it starts: half of this run's full-speed rate."""
    phases: list[Phase] = []
    pos = 0

    def add(name, n, rate, batch):
        nonlocal pos
        phases.append(Phase(name, pos, pos + n, rate, batch))
        pos += n

    if burst:
        add("warmup", sizes.warmup, sizes.lat_rate, 1)
        add("burst", burst, None, sizes.full_batch)
        return phases
    if row != "publisher":
        add("warmup", sizes.warmup, sizes.lat_rate, 1)
        if "@" not in row:  # the topology rows skip the 500/s phase
            add("lat500", sizes.lat, sizes.lat_rate, 1)
        if commits(row):
            add("lat200", sizes.lat200, 200.0, 1)
    if row == "bridge":
        add("paced20k", sizes.paced, sizes.paced_rate, max(1, int(sizes.paced_rate // 1000)))
    add("full", events_override or full_size(row, sizes), None, sizes.full_batch)
    if commits(row):
        add("half", sizes.half, None, 1)
    return phases


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    ordered = sorted(values)

    def at(q):
        return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))] * 1000

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99)}


class BufferSampler(threading.Thread):
    """Samples Redis' output buffer of every pub/sub connection (CLIENT LIST
    TYPE pubsub, ``omem``): how close a burst comes to the
    ``client-output-buffer-limit pubsub`` that makes Redis drop the subscriber."""

    def __init__(self, url: str, interval: float = 0.05):
        super().__init__(name="pubsub-buffer", daemon=True)
        self.url, self.interval = url, interval
        self.peak_bytes = 0
        self._halt = threading.Event()

    def run(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        try:
            while not self._halt.wait(self.interval):
                try:
                    for c in client.client_list(_type="pubsub"):
                        self.peak_bytes = max(self.peak_bytes, int(c.get("omem", 0)))
                except redis.RedisError:
                    pass
        finally:
            client.close()

    def stop(self) -> None:
        self._halt.set()
        if self.ident is not None:  # a row that failed before its observers started
            self.join(5)


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
        except Exception:  # noqa: BLE001 - a process that is gone used no more
            pass
    return total


@dataclass
class Context:
    args: argparse.Namespace
    sizes: Sizes
    workdir: Path
    keys: list[str]
    events_file: str
    sqlite: SqliteDatabase | None = None
    postgres: PostgresDatabase | None = None
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(40))
    started: float = field(default_factory=time.monotonic)
    redis_info: dict = field(default_factory=dict)

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[bench {int(elapsed // 60)}:{int(elapsed % 60):02d}] {text}", flush=True)

    def env(self, redis_url: str, database_url: str, **extra: str) -> dict[str, str]:
        return clean_env(REDIS_URL=redis_url, DATABASE_URL=database_url, DJANGO_SECRET_KEY=self.secret,
                         DJANGO_SETTINGS_MODULE="e_clean_backend.settings", **extra)


def _scrape(port: int) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("eclean_bridge_") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            metric = name.split("{")[0]
            try:
                out[metric] = out.get(metric, 0.0) + float(value)
            except ValueError:
                pass
    return out


@dataclass
class Run:
    """The state of one run of one row, handed from phase to phase of :func:`run_row`."""

    ctx: Context
    row: str
    run_no: int
    rundir: Path
    server: RedisServer
    env: dict[str, str]
    database: SqliteDatabase | PostgresDatabase | None
    sampler: BufferSampler
    out: dict = field(default_factory=lambda: {"published": 0, "delivered": 0, "duplicates": 0, "unheard": 0})
    procs: list[Proc] = field(default_factory=list)
    target: Proc | None = None
    observer: object | None = None
    metrics_port: int | None = None
    spy: subprocess.Popen | None = None
    pub: Proc | None = None
    all_lost: int = 0
    stats_client: object | None = None


def run_row(ctx: Context, row: str, run_no: int, profile: bool = False, burst: int = 0) -> dict:
    """One run of one row, every process and Redis fresh. Returns flat figures.

    The phases: start the processes under test, start the observers, start the
    publisher, then each publishing phase, the figures read after the last,
    stop everything, and the figures read from the logs."""
    phases = plan(row, ctx.sizes, ctx.args.events, burst)
    rundir = Path(tempfile.mkdtemp(prefix=f"{row}-{run_no}-", dir=ctx.workdir))
    database = ctx.postgres if row == "e2e-postgres" else ctx.sqlite
    with RedisServer() as server:
        _record_redis_info(ctx, server)
        env = ctx.env(server.url, database.url if database else "sqlite:///" + str(rundir / "unused.sqlite3"))
        run = Run(ctx, row, run_no, rundir, server, env, database, BufferSampler(server.url))
        try:
            if database and row != "publisher":
                database.reset()
            _start_processes(run)
            _start_observers(run, profile)
            _start_publisher(run)
            for phase in phases:
                _run_phase(run, phase)
            _collect_after_phases(run, phases)
            run.pub.proc.stdin.write(b'{"quit": true}\n')
            run.pub.proc.stdin.flush()
        finally:
            if run.stats_client is not None:
                run.stats_client.close()
            _stop(run)
        _collect_from_logs(run)
    return run.out


def _record_redis_info(ctx: Context, server: RedisServer) -> None:
    if ctx.redis_info:
        return
    import redis

    client = redis.Redis.from_url(server.url)
    ctx.redis_info = {"version": client.info("server")["redis_version"],
                      "client-output-buffer-limit": client.config_get("client-output-buffer-limit")[
                          "client-output-buffer-limit"]}
    client.close()


def _start_processes(run: Run) -> None:
    """The process under test (old loop, a pub/sub bridge of bench/naive.py or
    our bridge) and, in the rows that commit effects, the workers."""
    row, rundir, env = run.row, run.rundir, run.env
    stats_file = str(rundir / "stats.json")
    if row == "old":
        run.target = Proc("oldloop", python("-m", "bench.oldloop", stats_file), rundir, env)
        run.procs.append(run.target)
        run.target.wait_log("Event subscriber ready")
    elif row in PUBSUB_BRIDGED:
        run.target = Proc("naive", python("-m", "bench.naive", stats_file, row), rundir, env)
        run.procs.append(run.target)
        run.target.wait_log(PUBSUB_BRIDGE_READY, timeout=60)
    elif row == "bridge" or row.startswith("e2e"):
        run.metrics_port = free_port()
        run.target = Proc("bridge", python("-m", "workers.bridge"), rundir,
                          {**env, "BRIDGE_METRICS_PORT": str(run.metrics_port)})
        run.procs.append(run.target)
        run.target.wait_log(BRIDGE_READY)
    fast_stop = {"REMAP_SIGTERM": "SIGQUIT", "CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT": "1"}
    workers: list[tuple[Proc, str, int]] = []
    if row.startswith("e2e"):
        layout = row.partition("@")[2] or E2E_LAYOUT
        events_off = {"CELERY_WORKER_SEND_TASK_EVENTS": "False"} if row == "e2e-sqlite-noevents" else {}
        for i, (args, extra) in enumerate(layout_workers(layout), 1):
            cmd = python("-m", "celery", "-A", "workers", "worker", *args)
            # At -l WARNING a worker does not log "ready.": it is ready when it waits in BRPOP.
            ready = None if args[-2:] == ["-l", "WARNING"] else "ready."
            workers.append((Proc(f"worker-{i}", cmd, rundir, {**env, **fast_stop, **events_off, **extra}),
                            ready, 1))
    elif row == "celery-plain":
        cmd = python("-m", "celery", "-A", "bench.plain_celery", "worker", "-c", "2", "-l", "WARNING")
        workers.append((Proc("worker-1", cmd, rundir, {**env, **fast_stop}), PLAIN_CELERY_READY, 1))
    elif row == "dramatiq":
        cmd = python("-m", "dramatiq", "bench.dramatiq_app", "-p", "2", "-t", "1")
        workers.append((Proc("worker-1", cmd, rundir, env), DRAMATIQ_READY, 2))
    for worker, ready, count in workers:
        run.procs.append(worker)
    for worker, ready, count in workers:
        if ready is not None:
            worker.wait_log(ready, timeout=90, count=count)
    quiet = [worker for worker, ready, _ in workers if ready is None]
    if quiet:
        _wait_consuming(run, quiet)


def _wait_consuming(run: Run, workers: list[Proc], timeout: float = 90.0) -> None:
    """Wait until each of ``workers`` blocks in BRPOP on the queues (Redis'
    CLIENT LIST): workers that log nothing at INFO are ready then."""
    import redis

    client = redis.Redis.from_url(run.server.url)
    deadline = time.monotonic() + timeout
    try:
        while sum(c.get("cmd") == "brpop" for c in client.client_list()) < len(workers):
            for worker in workers:
                if worker.proc.poll() is not None:
                    raise RuntimeError(f"{worker.name} exited ({worker.proc.returncode}):\n{worker.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(workers)} worker(s) not consuming within {timeout:.0f}s")
            time.sleep(0.1)
    finally:
        client.close()


def _start_observers(run: Run, profile: bool) -> None:
    """What sees the events arrive (the queues, or the database), the pub/sub
    buffer sampler, and py-spy when profiling."""
    row = run.row
    if row in ("naive", "bridge"):
        run.observer = QueueDrainer(run.server.url)
    elif row != "publisher":
        run.observer = run.database.observer()
    if run.observer:
        run.observer.start()
    run.sampler.start()
    if profile:
        # our bridge in the bridge row; the worker's whole process tree in end-to-end rows
        spied = run.procs[-1] if row.startswith("e2e") else run.target
        run.spy = subprocess.Popen(
            ["py-spy", "record", "--pid", str(spied.pid), "--rate", "250", "--format", "raw",
             "--output", str(run.ctx.args.out / f"profile-{row}.txt"),
             *(["--subprocesses"] if row.startswith("e2e") else [])],
            stdout=subprocess.DEVNULL, stderr=open(run.rundir / "py-spy.log", "wb"), env=clean_env())
        time.sleep(1.0)


def _start_publisher(run: Run) -> None:
    run.pub = Proc("publisher", python("-m", "bench.publisher", run.server.url, run.ctx.events_file,
                                       str(run.rundir)), run.rundir, run.env, stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE)
    run.procs.append(run.pub)
    _read_pub(run)  # ready


def _read_pub(run: Run) -> dict:
    line = run.pub.proc.stdout.readline()
    if not line:
        raise RuntimeError(f"publisher exited ({run.pub.proc.poll()}):\n{run.pub.log()[-3000:]}")
    return json.loads(line)


def _publish_times(run: Run, phase: Phase) -> array:
    times = array("d")
    with open(run.rundir / f"pub-{phase.name}.bin", "rb") as f:
        times.frombytes(f.read())
    return times


def _redis_calls(run: Run) -> Counter:
    """Redis' ``INFO commandstats``: calls per command since it started."""
    if run.stats_client is None:
        import redis

        run.stats_client = redis.Redis.from_url(run.server.url)
    stats = run.stats_client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


def _pace_half(run: Run, phase: Phase) -> Phase:
    """The "half" phase runs at half this run's full-speed rate, within HALF_RATE_BOUNDS."""
    low, high = HALF_RATE_BOUNDS
    rate = max(low, min(high, 0.5 * (run.out.get("events_per_s") or 0.0)))
    run.out["half_rate"] = rate
    count = min(phase.count, max(50, int(rate * HALF_SECONDS)))
    return Phase(phase.name, phase.start, phase.start + count, rate, phase.batch)


def _run_phase(run: Run, phase: Phase) -> None:
    """Publish one phase, wait for its events to arrive, record its figures."""
    ctx, row, out, target, observer = run.ctx, run.row, run.out, run.target, run.observer
    if phase.name == "half":
        phase = _pace_half(run, phase)
    cpu_pids = {"target": [target.pid] if target else [], "redis": [run.server.proc.pid],
                "publisher": [run.pub.pid], "workers": [p.pid for p in run.procs if p.name.startswith("worker")]}
    cpu_before = {k: cpu_seconds(v) for k, v in cpu_pids.items()}
    cpu_before["harness"] = _own_cpu()
    calls_before = _redis_calls(run) if phase.name in ("full", "burst") else None
    wall_before = time.monotonic()
    run.pub.proc.stdin.write((json.dumps(phase.spec()) + "\n").encode())
    run.pub.proc.stdin.flush()
    done = _read_pub(run)
    times = _publish_times(run, phase)
    out["published"] += phase.count
    out["unheard"] += done["unheard"] if row != "publisher" else 0
    if observer is None:  # the publisher alone
        out["events_per_s"] = done["rate"]
        out["publisher_events_per_s"] = done["rate"]
        out["delivered"] += phase.count
        _full_costs(run, phase.count, cpu_pids, cpu_before, calls_before)
        ctx.say(f"run {run.run_no} · {report.label(row)} · {phase.count:,} events: {done['rate']:,.0f}/s")
        return
    keys = ctx.keys[phase.start:phase.stop]
    progress = None
    if phase.name == "burst":
        progress = _progress_printer(run, phase.count)
    observer.wait_for(keys, ctx.sizes.idle_timeout, progress)
    wall = time.monotonic() - wall_before
    cpu_after = {k: cpu_seconds(v) for k, v in cpu_pids.items()}
    cpu_after["harness"] = _own_cpu()
    seen = observer.seen
    lat, last = [], 0.0
    for i, k in enumerate(keys):
        t = seen.get(k)
        if t is not None:
            lat.append(t - times[i])
            if t > last:
                last = t
    delivered = len(lat)
    lost = phase.count - delivered
    run.all_lost += lost
    out["delivered"] += delivered
    rate = delivered / (last - times[0]) if delivered and last > times[0] else 0.0
    pct = percentiles(lat)
    rss = peak_rss_mb(target.pid) if target else None
    prefix = "enqueue" if row in ("naive", "bridge") else "effect"
    if phase.name == "lat500":
        for q, v in pct.items():
            out[f"{prefix}_{q}_ms"] = v
        out["lat_events"] = delivered
    elif phase.name in ("lat200", "half"):
        for q, v in pct.items():
            out[f"{phase.name}_{q}_ms"] = v
        out[f"{phase.name}_events"] = delivered
    elif phase.name == "paced20k":
        out["at20k_events_per_s"] = rate
        out["at20k_publisher_events_per_s"] = done["rate"]
        for q, v in pct.items():
            out[f"at20k_{q}_ms"] = v
        out["at20k_rss_mb"] = rss
    elif phase.name == "burst":
        out["burst_events"] = phase.count
        out["burst_delivered"] = delivered
        out["burst_lost"] = lost
        out["burst_s"] = last - times[0] if delivered else None
        out["burst_publish_s"] = phase.count / done["rate"] if done["rate"] else None
        _full_costs(run, delivered, cpu_pids, cpu_before, calls_before)
    elif phase.name == "full":
        out["events_per_s"] = rate
        out["publisher_events_per_s"] = done["rate"]
        out["full_events"] = phase.count
        for q, v in pct.items():
            out[f"full_{q}_ms"] = v
        for k in [*cpu_pids, "harness"]:
            if k == "harness" or cpu_pids[k]:
                out[f"cpu_{k}"] = (cpu_after[k] - cpu_before[k]) / wall if wall else None
        _full_costs(run, delivered, cpu_pids, cpu_before, calls_before, cpu_after)
    if phase.name != "warmup":
        detail = f"{rate:,.0f}/s" if phase.rate is None or phase.name in ("paced20k", "half") else ""
        ctx.say(f"run {run.run_no} · {report.label(row)} · {phase.name} {phase.count:,} events "
                f"(publisher {done['rate']:,.0f}/s): delivered {delivered:,} {detail}"
                f" p50 {_ms(pct['p50'])} p99 {_ms(pct['p99'])}"
                + (f" · RSS {rss:.0f} MB" if rss else "") + (f" · LOST {lost:,}" if lost else ""))


def _full_costs(run: Run, events: int, cpu_pids: dict, cpu_before: dict, calls_before: Counter | None,
                cpu_after: dict | None = None) -> None:
    """CPU ms per event (every process of the row: target, workers with their
    pool children, redis-server, publisher) and Redis commands per event."""
    out = run.out
    if cpu_after is None:
        cpu_after = {k: cpu_seconds(v) for k, v in cpu_pids.items()}
    if not events:
        return
    cpu = sum(cpu_after[k] - cpu_before[k] for k in cpu_pids if cpu_pids[k])
    out["cpu_ms_per_event"] = cpu * 1000 / events
    if calls_before is None:
        return
    calls = _redis_calls(run) - calls_before
    skip = OWN_COMMANDS | (DRAINER_COMMANDS if isinstance(run.observer, QueueDrainer) else set())
    for name in list(calls):
        if name in skip:
            del calls[name]
    out["redis_calls_per_event"] = sum(calls.values()) / events
    out["redis_top"] = {name: n / events for name, n in calls.most_common(5)}


def _progress_printer(run: Run, total: int):
    """A progress callback for a long drain: one line every ~5 s."""
    last = [time.monotonic()]

    def progress(committed: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 5.0:
            last[0] = now
            run.ctx.say(f"burst · {report.label(run.row)} · {committed:,}/{total:,} events committed")

    return progress


def _collect_after_phases(run: Run, phases: list[Phase]) -> None:
    """Figures read once every phase is done, while the processes still run."""
    out, observer, database = run.out, run.observer, run.database
    out["lost"] = run.all_lost if observer else 0
    if observer is not None:
        out["duplicates"] = observer.duplicates
    if run.target is not None:
        out["rss_mb"] = peak_rss_mb(run.target.pid)
    if database is not None and commits(run.row):
        handled = database.handled_at()
        for phase in phases:
            if phase.name != "lat500":
                continue
            times = _publish_times(run, phase)
            lb = [handled[k] - times[i] for i, k in enumerate(run.ctx.keys[phase.start:phase.stop])
                  if k in handled]
            for q, v in percentiles(lb).items():
                out[f"effect_insert_{q}_ms"] = v
    if run.metrics_port:
        scraped = _scrape(run.metrics_port)
        out["metrics_reconnects"] = scraped.get("eclean_bridge_reconnects_total")
        out["metrics_enqueued"] = scraped.get("eclean_bridge_events_enqueued_total")


def _stop(run: Run) -> None:
    if run.spy is not None:
        run.spy.send_signal(2)
        try:
            run.spy.wait(30)
        except subprocess.TimeoutExpired:
            run.spy.kill()
    import signal

    for proc in run.procs:  # every worker told at once; each stop() below then waits for its own
        if proc.name.startswith("worker") and proc.proc.poll() is None:
            try:
                proc.signal(signal.SIGTERM, group=True)
            except ProcessLookupError:
                pass
    for proc in reversed(run.procs):
        proc.stop()
    run.sampler.stop()
    if run.observer is not None:
        run.observer.stop()


def _collect_from_logs(run: Run) -> None:
    """Figures read once every process has stopped: reconnects, exit codes, errors."""
    out, target = run.out, run.target
    if run.row != "publisher":
        out["pubsub_buffer_peak_mb"] = run.sampler.peak_bytes / 1024 / 1024
    if target is not None and target.name == "bridge":
        log = target.log()
        out["reconnects"] = log.count("Lost Redis")
        out["bridge_exit"] = target.proc.returncode
    elif target is not None:
        try:
            stats = json.loads((run.rundir / "stats.json").read_text())
            out["reconnects"] = stats.get("reconnects", 0)
            out["loop_stats"] = stats
        except (OSError, ValueError):
            out["reconnects"] = None
    workers = [proc.log() for proc in run.procs if proc.name.startswith("worker")]
    if workers:
        out["worker_errors"] = sum(t.count(" ERROR ") + t.count("[ERROR]") + t.count("Traceback") for t in workers)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=None,
                        help="events in each row's full-speed phase (default: per row, see bench/harness.py)")
    parser.add_argument("--runs", type=int, default=None, help="runs per row; figures are medians (default 3)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run: the smoke mode")
    parser.add_argument("--rows", default=",".join(SELECTABLE),
                        help=f"comma-separated subset of {','.join(SELECTABLE)} (the publisher row always runs; "
                             "topology = one e2e-sqlite row per --layouts entry)")
    parser.add_argument("--layouts", default=DEFAULT_LAYOUTS,
                        help=f"worker layouts of the topology rows (default {DEFAULT_LAYOUTS}); "
                             "prefork-cN[-prefetchM], Kx-cN, solo-xK")
    parser.add_argument("--burst", type=int, default=0,
                        help="after the rows, N events at full speed into a fresh run of old, e2e-sqlite "
                             "(and celery-plain, dramatiq if selected): seconds to the last effect (default 0: off)")
    # bench/out/ is git-ignored: a run never dirties the committed bench/results/
    # (`make bench-record` writes there on purpose).
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out", help="results directory (default bench/out/, ignored by git)")
    parser.add_argument("--no-realtime", action="store_true",
                        help="skip the real-time phase (WebSocket clients, bench/realtime.py)")
    parser.add_argument("--profile", action="store_true",
                        help="after the measured runs, one more run of our bridge under py-spy (not counted)")
    args = parser.parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in SELECTABLE]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(SELECTABLE)}")
    args.layouts = [x.strip() for x in args.layouts.split(",") if x.strip()]
    for layout in args.layouts:
        try:
            layout_workers(layout)
        except ValueError as exc:
            parser.error(str(exc))
    args.selected = [r for r in SELECTABLE if r in rows]
    args.rows = ["publisher", *[r for r in args.selected if r != "topology"]]
    if "topology" in rows:
        args.rows += [f"e2e-sqlite@{layout}" for layout in args.layouts]
    if args.burst < 0:
        parser.error("--burst must be 0 (off) or positive")
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.runs < 1 or (args.events is not None and args.events < 1):
        parser.error("--runs and --events must be positive")
    args.out = args.out.resolve()
    return args


def _terminate(signum, _frame):
    # SIGTERM runs the same clean-up as Ctrl-C: stop every process, drop the database.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    sizes = QUICK if args.quick else DEFAULT
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="eclean-bench-"))
    burst_rows = [r for r in ("old", "celery-plain", "dramatiq", "e2e-sqlite") if args.burst and
                  (r in ("old", "e2e-sqlite") or r in args.rows)]
    total = max(ph.stop for row in args.rows for ph in plan(row, sizes, args.events))
    total = max([total, *[ph.stop for ph in plan("old", sizes, None, args.burst) if burst_rows]])
    ctx = Context(args=args, sizes=sizes, workdir=workdir, keys=[], events_file=str(workdir / "events.bin"))
    ctx.say(f"rows {', '.join(args.rows)} · {args.runs} run(s) · generating {total:,} events")
    ids, topics, payloads = events.generate(total)
    events.write(ctx.events_file, topics, payloads)
    ctx.keys = [events.key(i) for i in ids]
    del ids, topics, payloads
    skipped: dict[str, str] = {}
    results: dict[str, list[dict]] = {r: [] for r in args.rows}
    try:
        base_env = ctx.env("redis://:unused@127.0.0.1:1/0", "")
        if any(r != "e2e-postgres" for r in args.rows):
            ctx.sqlite = SqliteDatabase()
            ctx.say("SQLite (WAL): migrate + seed")
            ctx.sqlite.prepare(base_env)
        if "e2e-postgres" in args.rows:
            admin = os.environ.get("BENCH_POSTGRES_URL") or os.environ.get(
                "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
            why = PostgresDatabase.unavailable(admin)
            if why:
                skipped["e2e-postgres"] = f"PostgreSQL at {admin} not reachable: {why}"
                ctx.say(f"skipping e2e-postgres: {skipped['e2e-postgres']}")
                args.rows.remove("e2e-postgres")
                results.pop("e2e-postgres")
            else:
                ctx.postgres = PostgresDatabase(admin)
                ctx.say(f"PostgreSQL database {ctx.postgres.name}: migrate + seed")
                ctx.postgres.prepare(base_env)
        for run_no in range(1, args.runs + 1):
            for row in args.rows:
                ctx.say(f"run {run_no}/{args.runs} · {report.label(row)} · starting")
                results[row].append(run_row(ctx, row, run_no))
        burst = None
        if burst_rows:
            burst = {}
            for row in burst_rows:
                ctx.say(f"burst · {report.label(row)} · {args.burst:,} events at full speed · starting")
                burst[row] = run_row(ctx, row, 0, burst=args.burst)
        profile = None
        if args.profile:
            profile = {}
            for row in args.rows:
                if row not in ("bridge", "e2e-sqlite", "e2e-postgres"):
                    continue
                ctx.say(f"profiling {report.label(row)} under py-spy (one extra run, not counted)")
                extra = run_row(ctx, row, 0, profile=True)
                profile[row] = report.summarize_profile(args.out / f"profile-{row}.txt")
                profile[row]["run"] = {k: extra.get(k) for k in ("events_per_s", "at20k_events_per_s", "lost")}
        realtime_result = None
        if not args.no_realtime:
            ctx.say("real-time phase (bench/realtime.py) · starting")
            realtime_result = realtime.run(args.quick, workdir)
        machine = report.machine_info(ctx)
    finally:
        for database in (ctx.sqlite, ctx.postgres):
            if database is not None:
                database.close()
        if not os.environ.get("BENCH_KEEP"):
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"[bench] kept {workdir}", flush=True)
    doc = report.build(args, sizes, results, skipped, machine, profile,
                       {row: [ph.spec() for ph in plan(row, sizes, args.events)] for row in args.rows}, E2E_LAYOUT)
    if burst is not None:
        doc["burst"] = report.burst_summary(burst, args.burst)
    if realtime_result is not None:
        doc["realtime"] = realtime_result
        doc["targets"] += realtime.targets(realtime_result)
    text = report.render_console(doc)
    print(text, flush=True)
    name = report.write(doc, args.out)
    ctx.say(f"wrote {args.out / (name + '.md')} and {args.out / (name + '.json')}")
    return 0
