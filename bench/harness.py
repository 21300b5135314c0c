"""``python -m bench``: run the rows, print the table, write the results."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import tempfile
import threading
import time
import urllib.request
from array import array
from dataclasses import dataclass, field
from pathlib import Path

from devtools.redis_server import RedisServer, free_port

from . import events, realtime, report
from .db import PostgresDatabase, SqliteDatabase
from .observe import QueueDrainer
from .procs import REPO, Proc, clean_env, peak_rss_mb, python

ROWS = ("publisher", "old", "naive", "bridge", "e2e-sqlite", "e2e-postgres")
SELECTABLE = ROWS[1:]
BRIDGE_READY = "Event bridge ready, listening to topics:"


@dataclass
class Sizes:
    warmup: int
    lat: int
    paced: int
    full: dict[str, int]
    idle_timeout: float
    lat_rate: float = 500.0
    paced_rate: float = 20_000.0
    full_batch: int = 250


# Sized so the full default run (3 runs of every row) stays under 10 minutes
# on 2 cores: the bridge rows get the 100,000-event burst the issue names;
# the rows that commit to a database get what they drain in seconds.
DEFAULT = Sizes(warmup=200, lat=1500, paced=40_000, idle_timeout=5.0,
                full={"publisher": 100_000, "old": 4_000, "naive": 20_000, "bridge": 100_000,
                      "e2e-sqlite": 2_000, "e2e-postgres": 2_000})
QUICK = Sizes(warmup=20, lat=100, paced=2_000, idle_timeout=3.0,
              full={"publisher": 2_000, "old": 200, "naive": 1_000, "bridge": 2_000,
                    "e2e-sqlite": 200, "e2e-postgres": 200})


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


def plan(row: str, sizes: Sizes, events_override: int | None) -> list[Phase]:
    """The phases of one row; every row walks the same event stream from index 0."""
    phases: list[Phase] = []
    pos = 0

    def add(name, n, rate, batch):
        nonlocal pos
        phases.append(Phase(name, pos, pos + n, rate, batch))
        pos += n

    if row != "publisher":
        add("warmup", sizes.warmup, sizes.lat_rate, 1)
        add("lat500", sizes.lat, sizes.lat_rate, 1)
    if row == "bridge":
        add("paced20k", sizes.paced, sizes.paced_rate, max(1, int(sizes.paced_rate // 1000)))
    add("full", events_override or sizes.full[row], None, sizes.full_batch)
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


def run_row(ctx: Context, row: str, run_no: int, profile: bool = False) -> dict:
    """One run of one row, every process and Redis fresh. Returns flat figures.

    The phases: start the processes under test, start the observers, start the
    publisher, then each publishing phase, the figures read after the last,
    stop everything, and the figures read from the logs."""
    phases = plan(row, ctx.sizes, ctx.args.events)
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
    """The process under test (old loop, naive bridge or our bridge) and, in
    the end-to-end rows, a worker."""
    row, rundir, env = run.row, run.rundir, run.env
    stats_file = str(rundir / "stats.json")
    if row == "old":
        run.target = Proc("oldloop", python("-m", "bench.oldloop", stats_file), rundir, env)
        run.procs.append(run.target)
        run.target.wait_log("Event subscriber ready")
    elif row == "naive":
        run.target = Proc("naive", python("-m", "bench.naive", stats_file), rundir, env)
        run.procs.append(run.target)
        run.target.wait_log("Naive bridge ready")
    elif row in ("bridge", "e2e-sqlite", "e2e-postgres"):
        run.metrics_port = free_port()
        run.target = Proc("bridge", python("-m", "workers.bridge"), rundir,
                          {**env, "BRIDGE_METRICS_PORT": str(run.metrics_port)})
        run.procs.append(run.target)
        run.target.wait_log(BRIDGE_READY)
    if row.startswith("e2e"):
        worker = Proc("worker", python("-m", "celery", "-A", "workers", "worker", "-c", "2", "-l", "INFO"),
                      rundir, {**env, "REMAP_SIGTERM": "SIGQUIT", "CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT": "1"})
        run.procs.append(worker)
        worker.wait_log("ready.", timeout=90)


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


def _run_phase(run: Run, phase: Phase) -> None:
    """Publish one phase, wait for its events to arrive, record its figures."""
    ctx, row, out, target, observer = run.ctx, run.row, run.out, run.target, run.observer
    cpu_pids = {"target": [target.pid] if target else [], "redis": [run.server.proc.pid],
                "publisher": [run.pub.pid], "workers": [p.pid for p in run.procs if p.name == "worker"]}
    cpu_before = {k: cpu_seconds(v) for k, v in cpu_pids.items()}
    cpu_before["harness"] = _own_cpu()
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
        ctx.say(f"run {run.run_no} · {report.LABELS[row]} · {phase.count:,} events: {done['rate']:,.0f}/s")
        return
    keys = ctx.keys[phase.start:phase.stop]
    observer.wait_for(keys, ctx.sizes.idle_timeout)
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
    elif phase.name == "paced20k":
        out["at20k_events_per_s"] = rate
        out["at20k_publisher_events_per_s"] = done["rate"]
        for q, v in pct.items():
            out[f"at20k_{q}_ms"] = v
        out["at20k_rss_mb"] = rss
    elif phase.name == "full":
        out["events_per_s"] = rate
        out["publisher_events_per_s"] = done["rate"]
        out["full_events"] = phase.count
        for q, v in pct.items():
            out[f"full_{q}_ms"] = v
        for k in [*cpu_pids, "harness"]:
            if k == "harness" or cpu_pids[k]:
                out[f"cpu_{k}"] = (cpu_after[k] - cpu_before[k]) / wall if wall else None
    if phase.name != "warmup":
        detail = f"{rate:,.0f}/s" if phase.rate is None or phase.name == "paced20k" else ""
        ctx.say(f"run {run.run_no} · {report.LABELS[row]} · {phase.name} {phase.count:,} events "
                f"(publisher {done['rate']:,.0f}/s): delivered {delivered:,} {detail}"
                f" p50 {_ms(pct['p50'])} p99 {_ms(pct['p99'])}"
                + (f" · RSS {rss:.0f} MB" if rss else "") + (f" · LOST {lost:,}" if lost else ""))


def _collect_after_phases(run: Run, phases: list[Phase]) -> None:
    """Figures read once every phase is done, while the processes still run."""
    out, observer, database = run.out, run.observer, run.database
    out["lost"] = run.all_lost if observer else 0
    if observer is not None:
        out["duplicates"] = observer.duplicates
    if run.target is not None:
        out["rss_mb"] = peak_rss_mb(run.target.pid)
    if database is not None and run.row in ("old", "e2e-sqlite", "e2e-postgres"):
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
    for proc in run.procs:
        if proc.name == "worker":
            text = proc.log()
            out["worker_errors"] = text.count(" ERROR ") + text.count("Traceback")


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=None,
                        help="events in each row's full-speed phase (default: per row, see bench/harness.py)")
    parser.add_argument("--runs", type=int, default=None, help="runs per row; figures are medians (default 3)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run: the smoke mode")
    parser.add_argument("--rows", default=",".join(SELECTABLE),
                        help=f"comma-separated subset of {','.join(SELECTABLE)} (the publisher row always runs)")
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
    args.rows = ["publisher", *[r for r in SELECTABLE if r in rows]]
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
    total = max(ph.stop for row in args.rows for ph in plan(row, sizes, args.events))
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
                ctx.say(f"run {run_no}/{args.runs} · {report.LABELS[row]} · starting")
                results[row].append(run_row(ctx, row, run_no))
        profile = None
        if args.profile:
            profile = {}
            for row in args.rows:
                if row not in ("bridge", "e2e-sqlite", "e2e-postgres"):
                    continue
                ctx.say(f"profiling {report.LABELS[row]} under py-spy (one extra run, not counted)")
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
                       {row: [ph.spec() for ph in plan(row, sizes, args.events)] for row in args.rows})
    if realtime_result is not None:
        doc["realtime"] = realtime_result
        doc["targets"] += realtime.targets(realtime_result)
    text = report.render_console(doc)
    print(text, flush=True)
    name = report.write(doc, args.out)
    ctx.say(f"wrote {args.out / (name + '.md')} and {args.out / (name + '.json')}")
    return 0
