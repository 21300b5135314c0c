"""The results: one table (Markdown), the targets, machine info; JSON beside it."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from collections import Counter
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from . import __doc__ as METHOD
from . import realtime
from .procs import REPO

LABELS = {
    "publisher": "publisher alone (journal.publish, pipelined)",
    "old": "old loop (pub/sub + inline handlers, SQLite WAL)",
    "naive": "naive bridge (apply_async per event)",
    "bridge": "our bridge (python -m workers.bridge)",
    "celery-plain": "plain Celery (apply_async per event, default app, worker -c 2, SQLite WAL)",
    "dramatiq": "Dramatiq (actor.send per event, RedisBroker, -p 2 -t 1, SQLite WAL)",
    "e2e-sqlite": "end to end, SQLite WAL (our bridge + workers)",
    "e2e-sqlite-noevents": "end to end, SQLite WAL, task events off (our bridge + workers)",
    "e2e-postgres": "end to end, PostgreSQL (our bridge + workers)",
}
SHORT = {"publisher": "publisher", "old": "old loop", "naive": "naive", "bridge": "our bridge",
         "celery-plain": "plain Celery", "dramatiq": "Dramatiq", "e2e-sqlite": "e2e SQLite",
         "e2e-sqlite-noevents": "e2e SQLite, events off", "e2e-postgres": "e2e PG"}
# The rows each row is compared with in the table (all pairs are in the Markdown's ratio table).
TABLE_REFS = {"naive": ("old",), "bridge": ("naive", "old"), "celery-plain": ("old",),
              "dramatiq": ("old", "celery-plain"), "e2e-sqlite": ("old", "celery-plain", "dramatiq"),
              "e2e-sqlite-noevents": ("old", "celery-plain", "dramatiq", "e2e-sqlite"),
              "e2e-postgres": ("old", "e2e-sqlite")}
RATIO_FIGURES = ("events_per_s", "enqueue_p50_ms", "enqueue_p99_ms", "effect_p50_ms", "effect_p99_ms", "rss_mb",
                 "cpu_ms_per_event", "redis_calls_per_event", "lat200_p99_ms", "half_p99_ms")
TOPOLOGY_BASE = "prefork-c2"  # the worker layout the topology table compares each layout with
RATIO_HEADS = ("events/s", "enqueue p50", "enqueue p99", "effect p50", "effect p99", "peak RSS", "CPU ms/event",
               "Redis cmds/event", "p99 @200/s", "p99 @half")


def label(row: str) -> str:
    """The long name of a row; ``e2e-sqlite@<layout>`` is a topology row."""
    if "@" in row:
        return f"end to end, SQLite WAL, workers {row.partition('@')[2]}"
    return LABELS[row]


def short(row: str) -> str:
    return f"e2e SQLite @{row.partition('@')[2]}" if "@" in row else SHORT[row]


def median_of(runs: list[dict]) -> dict:
    keys = {k for r in runs for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    med = {}
    for k in sorted(keys):
        values = [r[k] for r in runs if isinstance(r.get(k), (int, float)) and r.get(k) is not None]
        med[k] = statistics.median(values) if values else None
    return med

def _num(v, digits=0, unit=""):
    if v is None:
        return "—"
    if digits == 0:
        return f"{v:,.0f}{unit}"
    return f"{v:,.{digits}f}{unit}"


def _lat(med: dict, prefix: str) -> str:
    vals = [med.get(f"{prefix}_{q}_ms") for q in ("p50", "p95", "p99")]
    if all(v is None for v in vals):
        return "—"
    return " / ".join("—" if v is None else (f"{v:.1f}" if v < 100 else f"{v:,.0f}") for v in vals)


def per_run_ratio(results: dict, row: str, ref: str, figure: str) -> float | None:
    """Median over runs of row ÷ ref, each pair from the same run."""
    ratios = []
    for a, b in zip(results.get(row, []), results.get(ref, [])):
        x, y = a.get(figure), b.get(figure)
        if x is not None and y:
            ratios.append(x / y)
    return statistics.median(ratios) if ratios else None


def ratios(results: dict, rows: list[str]) -> list[dict]:
    out = []
    for i, row in enumerate(rows):
        for ref in rows[:i]:
            if ref not in TABLE_REFS.get(row, ()):  # only rows that measure the same thing
                continue
            entry = {"row": row, "ref": ref}
            for figure in RATIO_FIGURES:
                r = per_run_ratio(results, row, ref, figure)
                if r is not None:
                    entry[figure] = r
            if len(entry) > 2:
                out.append(entry)
    return out


def targets(doc: dict) -> list[dict]:
    rows, res = doc["rows"], doc["runs"]
    med = {r: v["median"] for r, v in rows.items()}
    out = []

    def add(name, figure, met, detail):
        out.append({"target": name, "figure": figure, "met": met, "detail": detail})

    b = med.get("bridge")
    if b:
        v = b.get("events_per_s")
        add("our bridge sustained ingest ≥ 20,000 events/s", v, v is not None and v >= 20_000,
            f"{_num(v)} events/s ({v / 20_000:.2f}× the target)" if v else "no figure")
        pub = b.get("publisher_events_per_s")
        if v and pub and v > 0.9 * pub:
            out[-1]["detail"] += f"; publisher-bound: the publisher managed only {_num(pub)}/s"
        if med.get("naive"):
            r = per_run_ratio(res, "bridge", "naive", "events_per_s")
            add("our bridge ≥ 6× the naive bridge (same run)", r, r is not None and r >= 6,
                f"{r:.1f}× (median of per-run ratios)" if r else "no figure")
        n = b.get("full_events") or 0
        if n >= 100_000:
            rec = max((r.get("reconnects") or 0) for r in res["bridge"])
            lost = max((r.get("lost") or 0) for r in res["bridge"])
            add("burst of 100,000 events at full speed: 0 pub/sub disconnects, 0 lost", [rec, lost],
                rec == 0 and lost == 0,
                f"worst run: {rec} reconnect(s), {lost} lost, {_num(b.get('publisher_events_per_s'))}/s publishing, "
                f"peak pub/sub buffer {_num(max((r.get('pubsub_buffer_peak_mb') or 0) for r in res['bridge']), 1)} MB "
                f"(Redis client-output-buffer-limit {doc['machine'].get('redis', {}).get('client-output-buffer-limit')})")
        else:
            add("burst of 100,000 events at full speed: 0 pub/sub disconnects, 0 lost", None, None,
                f"not evaluated: the full-speed phase had {n:,} events")
        rss, rate = b.get("at20k_rss_mb"), b.get("at20k_events_per_s")
        add("bridge peak RSS at 20,000 events/s ≤ 80 MB", rss, rss is not None and rss <= 80,
            f"{_num(rss, 1)} MB peak (VmHWM) while delivering {_num(rate)}/s" if rss else "no figure")
        if rss and rate and rate < 18_000:
            out[-1]["detail"] += (" — the bridge could not keep up with 20,000/s, so this is its RSS while "
                                  "saturated by a 20,000/s stream (the backlog waits in Redis, not in the bridge)")
    e = med.get("e2e-sqlite")
    if e:
        p50, p99 = e.get("effect_p50_ms"), e.get("effect_p99_ms")
        ok = p50 is not None and p99 is not None and p50 <= 5 and p99 <= 20
        add("end to end at 500 events/s (SQLite WAL): p50 ≤ 5 ms, p99 ≤ 20 ms", [p50, p99], ok,
            f"p50 {_num(p50, 1)} ms, p99 {_num(p99, 1)} ms publish → effect committed "
            f"(insert-time lower bound p50 {_num(e.get('effect_insert_p50_ms'), 1)} ms, "
            f"p99 {_num(e.get('effect_insert_p99_ms'), 1)} ms)")
        workers = doc.get("e2e_layout") or "?"
        for row, db in (("e2e-sqlite", "SQLite WAL"), ("e2e-postgres", "PostgreSQL")):
            if med.get("old") and med.get(row):
                r = per_run_ratio(res, row, "old", "events_per_s")
                add(f"end-to-end throughput, {db} (workers {workers}) ≥ 1.0× the old loop", r,
                    r is not None and r >= 1.0,
                    f"{r:.2f}× ({_num(med[row].get('events_per_s'))} vs {_num(med['old'].get('events_per_s'))} "
                    "events/s, median of per-run ratios)" if r else "no figure")
        for ref in ("celery-plain", "dramatiq"):
            if med.get(ref):
                r = per_run_ratio(res, "e2e-sqlite", ref, "events_per_s")
                add(f"end to end ahead of {label(ref).split(' (')[0]} on the same handlers and database", r,
                    r is not None and r > 1.0, f"{r:.2f}× its events/s" if r else "no figure")
        cpu = e.get("cpu_ms_per_event")
        add("CPU per event, all processes (SQLite WAL) ≤ 1.5 ms", cpu, cpu is not None and cpu <= 1.5,
            f"{_num(cpu, 2)} ms (old loop {_num((med.get('old') or {}).get('cpu_ms_per_event'), 2)} ms)")
        for key, what in (("lat200", "at 200 events/s"), ("half", "at half its own full-speed rate")):
            v = e.get(f"{key}_p99_ms")
            add(f"end to end p99 ≤ 20 ms {what} (SQLite WAL)", v, v is not None and v <= 20,
                f"p99 {_num(v, 1)} ms" + (f" at {_num(e.get('half_rate'))}/s" if key == "half" and e.get("half_rate")
                                          else ""))
    return out


def build(args, sizes, results, skipped, machine, profile, phases, e2e_layout: str | None = None) -> dict:
    rows = {}

    for row, runs in results.items():
        rows[row] = {"label": label(row), "median": median_of(runs),
                     "redis_top_per_event": (runs[-1].get("redis_top") if runs else None)}
    doc = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m bench " + " ".join(_argv(args)),
        "runs_per_row": args.runs,
        "quick": args.quick,
        "rows": rows,
        "runs": results,
        "skipped": skipped,
        "phases": phases,
        "machine": machine,
        "method": METHOD,
        "e2e_layout": e2e_layout,
    }
    doc["ratios"] = ratios(results, [r for r in results if "@" not in r])
    layouts = [r for r in results if "@" in r]
    if layouts:
        doc["topology"] = topology(results, rows, layouts)
    doc["targets"] = targets(doc)
    if profile:
        doc["profile"] = profile
    return doc


def _argv(args) -> list[str]:
    out = []
    if args.quick:
        out.append("--quick")
    if args.events:
        out += ["--events", str(args.events)]
    selected = getattr(args, "selected", None) or [r for r in args.rows if r != "publisher"]
    out += ["--runs", str(args.runs), "--rows", ",".join(selected)]
    if "topology" in selected:
        out += ["--layouts", ",".join(args.layouts)]
    if getattr(args, "burst", 0):
        out += ["--burst", str(args.burst)]
    return out


def table(doc: dict) -> str:
    rows = doc["rows"]
    order = [r for r in rows if "@" not in r]  # the topology rows have a table of their own
    layout = doc.get("e2e_layout")
    head = ("| row | events/s | vs rows above (events/s) | enqueue p50 / p95 / p99 ms @500/s "
            "| effect committed p50 / p95 / p99 ms @500/s | effect p99 ms @200/s | effect p99 ms @half "
            "| CPU ms/event | Redis cmds/event | peak RSS MB | reconnects | lost |")
    lines = [head, "|" + "---|" * 12]
    for row in order:
        med = rows[row]["median"]
        vs = []
        for entry in doc["ratios"]:
            if entry["row"] == row and "events_per_s" in entry:
                vs.append(f"{entry['events_per_s']:.2f}× {short(entry['ref'])}")
        name = label(row) + (f" · {layout}" if layout and row.startswith("e2e") else "")
        lines.append(
            f"| {name} | {_num(med.get('events_per_s'))} | {' · '.join(vs) or ''} "
            f"| {_lat(med, 'enqueue')} | {_lat(med, 'effect')} | {_num(med.get('lat200_p99_ms'), 1)} "
            f"| {_num(med.get('half_p99_ms'), 1)} | {_num(med.get('cpu_ms_per_event'), 2)} "
            f"| {_num(med.get('redis_calls_per_event'), 1)} | {_num(med.get('rss_mb'), 1)} "
            f"| {_num(med.get('reconnects'))} | {_num(med.get('lost'))} |"
        )
        if row == "bridge" and med.get("at20k_events_per_s") is not None:
            lines.append(
                f"| ↳ our bridge, paced at 20,000 events/s | {_num(med.get('at20k_events_per_s'))} | "
                f"| {_lat(med, 'at20k')} (@20k/s) | — | | | | | {_num(med.get('at20k_rss_mb'), 1)} | | |"
            )
    return "\n".join(lines)


def latency_table(doc: dict) -> str:
    """Effect committed p50 / p95 / p99 at 200/s and at half the row's full-speed rate."""
    lines = ["| row | effect p50 / p95 / p99 ms @200/s | half-rate events/s | effect p50 / p95 / p99 ms @half |",
             "|---|---|---|---|"]
    for row, v in doc["rows"].items():
        med = v["median"]
        if med.get("lat200_events") is None and med.get("half_events") is None:
            continue
        lines.append(f"| {short(row)} | {_lat(med, 'lat200')} | {_num(med.get('half_rate'))} | {_lat(med, 'half')} |")
    return "\n".join(lines)


def topology(results: dict, rows: dict, layouts: list[str]) -> list[dict]:
    """One entry per layout: events/s, ratio vs TOPOLOGY_BASE (same run), CPU, p99 at 200/s."""
    base = next((r for r in layouts if r.partition("@")[2] == TOPOLOGY_BASE), None)
    out = []
    for row in layouts:
        med = rows[row]["median"]
        out.append({"layout": row.partition("@")[2], "row": row, "events_per_s": med.get("events_per_s"),
                    "vs_base": per_run_ratio(results, row, base, "events_per_s") if base else None,
                    "cpu_ms_per_event": med.get("cpu_ms_per_event"),
                    "redis_calls_per_event": med.get("redis_calls_per_event"),
                    "lat200_p99_ms": med.get("lat200_p99_ms"), "half_p99_ms": med.get("half_p99_ms"),
                    "lost": med.get("lost")})
    return out


def topology_text(doc: dict) -> str:
    lines = ["Worker topology (our bridge + `celery -A workers worker`, SQLite WAL, same run):", "",
             f"| layout | events/s | vs {TOPOLOGY_BASE} | CPU ms/event | Redis cmds/event | effect p99 ms @200/s "
             "| effect p99 ms @half | lost |", "|---|---|---|---|---|---|---|---|"]
    for t in doc["topology"]:
        vs = "—" if t["vs_base"] is None else f"{t['vs_base']:.2f}×"
        lines.append(f"| {t['layout']} | {_num(t['events_per_s'])} | {vs} | {_num(t['cpu_ms_per_event'], 2)} "
                     f"| {_num(t['redis_calls_per_event'], 1)} | {_num(t['lat200_p99_ms'], 1)} "
                     f"| {_num(t['half_p99_ms'], 1)} | {_num(t['lost'])} |")
    return "\n".join(lines)


def burst_summary(burst: dict, n: int) -> dict:
    """Per row: seconds from the first publish to the last effect, and the
    drain rate (delivered ÷ those seconds). Rows are compared by drain rate:
    a row that lost part of the burst (the old loop, dropped by Redis'
    pub/sub output buffer limit) finishes early without having drained it."""

    def rate(r):
        secs, delivered = r.get("burst_s"), r.get("burst_delivered")
        return delivered / secs if secs and delivered else None

    old = rate(burst.get("old") or {})
    rows = {}
    for row, r in burst.items():
        mine = rate(r)
        rows[row] = {"seconds": r.get("burst_s"), "publish_seconds": r.get("burst_publish_s"),
                     "delivered": r.get("burst_delivered"), "lost": r.get("burst_lost"),
                     "events_per_s": mine,
                     "reconnects": r.get("reconnects"), "cpu_ms_per_event": r.get("cpu_ms_per_event"),
                     "redis_calls_per_event": r.get("redis_calls_per_event"),
                     "vs_old": (mine / old) if old and mine else None}
    return {"events": n, "rows": rows}


def burst_text(doc: dict) -> str:
    b = doc["burst"]
    lines = [f"Burst: {b['events']:,} events published as fast as possible, seconds from the first publish to "
             "the last effect committed, and the drain rate (delivered ÷ those seconds; rows are compared by "
             "it, since a row that lost events stops early):", "",
             "| row | seconds to last effect | publishing took s | drained events/s | vs old loop | delivered | lost "
             "| reconnects |", "|---|---|---|---|---|---|---|---|"]
    for row, r in b["rows"].items():
        vs = "—" if r["vs_old"] is None else f"{r['vs_old']:.2f}×"
        lines.append(f"| {short(row)} | {_num(r['seconds'], 1)} | {_num(r['publish_seconds'], 1)} "
                     f"| {_num(r.get('events_per_s'))} | {vs} "
                     f"| {_num(r['delivered'])} | {_num(r['lost'])} | {_num(r['reconnects'])} |")
    return "\n".join(lines)


def _extras(doc: dict) -> list[str]:
    """The topology and burst tables, where the run has them."""
    parts = []
    if doc.get("topology"):
        parts += [topology_text(doc), ""]
    if doc.get("burst"):
        parts += [burst_text(doc), ""]
    return parts


def targets_text(doc: dict) -> str:
    lines = []
    for t in doc["targets"]:
        mark = "MET" if t["met"] else ("n/a" if t["met"] is None else "NOT MET")
        lines.append(f"- **{mark}** — {t['target']}: {t['detail']}")
    return "\n".join(lines)


def _notes(doc: dict) -> str:
    runs = doc["runs_per_row"]
    full = {r: v["median"].get("full_events") or v["median"].get("published") for r, v in doc["rows"].items()}
    sizes = ", ".join(f"{short(r)} {_num(n)}" for r, n in full.items() if n)
    return (f"Median of {runs} run(s) per row. events/s: full-speed phase ({sizes} events), unique events delivered ÷ "
            "(last delivery − first publish). Latencies at a paced 500 events/s (after a 500/s warm-up), publish → "
            "task message in the broker queue (enqueue) or → handled mark + effects committed (effect); the rows "
            "that commit effects also at a paced 200/s and, after the full-speed phase, at half their own "
            "full-speed rate. CPU ms/event and Redis cmds/event: over the full-speed phase, every process of the "
            "row (bridge/loop, workers with their pool children, redis-server, publisher) ÷ events delivered; "
            "Redis commands from INFO commandstats, the harness' own left out. "
            f"e2e rows: workers {doc.get('e2e_layout') or '?'} (see the method). "
            "RSS: VmHWM of the bridge / loop process. Reconnects: pub/sub connections lost. Lost: published − delivered, all phases.")


def render_console(doc: dict) -> str:
    parts = ["", f"E-Clean events benchmark — {doc['generated']} — {doc['machine'].get('cpu_model')} "
             f"({doc['machine'].get('cpus')} cores)", "", table(doc), "", _notes(doc), "", *_extras(doc),
             *([realtime.markdown(doc["realtime"])] if doc.get("realtime") else []), "Targets:", targets_text(doc)]
    for row, why in doc["skipped"].items():
        parts.append(f"- skipped {row}: {why}")
    return "\n".join(parts)


def markdown(doc: dict) -> str:
    m = doc["machine"]
    title = "# E-Clean events benchmark"
    parts = [title, "", f"`{doc['command']}` — {doc['generated']}", "",
             table(doc), "", _notes(doc), "", "## Paced latency (effect committed)", "", latency_table(doc), "",
             *_extras(doc), *([realtime.markdown(doc["realtime"])] if doc.get("realtime") else []),
             "## Targets", "", targets_text(doc), ""]
    if doc["skipped"]:
        parts += ["Skipped: " + "; ".join(f"{r}: {w}" for r, w in doc["skipped"].items()), ""]
    parts += ["## Ratios (median of per-run ratios, row ÷ a row above it that measures the same thing)", "",
              "| row ÷ ref | " + " | ".join(RATIO_HEADS) + " |", "|---" * (len(RATIO_HEADS) + 1) + "|"]
    for e in doc["ratios"]:
        cells = [("—" if e.get(f) is None else f"{e[f]:.2f}×") for f in RATIO_FIGURES]
        parts.append(f"| {short(e['row'])} ÷ {short(e['ref'])} | " + " | ".join(cells) + " |")
    parts += ["", "## Redis commands per event, top 5 (full-speed phase, last run)", "",
              "| row | commands per event |", "|---|---|"]
    for row, v in doc["rows"].items():
        top = v.get("redis_top_per_event") or {}
        parts.append(f"| {short(row)} | " + (", ".join(f"{k} {n:.2f}" for k, n in top.items()) or "—") + " |")
    parts += ["", "## More figures (medians)", "",
              "| row | publisher events/s in the full phase | full-phase latency p50 / p99 ms | "
              "effect insert-time p50 / p99 ms @500/s | peak pub/sub buffer in Redis MB (limit 32) "
              "| CPU in the full phase (cores): bridge/loop · redis · publisher · workers · harness |",
              "|---|---|---|---|---|---|"]
    for row, v in doc["rows"].items():
        med = v["median"]
        cpu = " · ".join(_num(med.get(f"cpu_{k}"), 2) for k in ("target", "redis", "publisher", "workers", "harness"))
        parts.append(f"| {short(row)} | {_num(med.get('publisher_events_per_s'))} | "
                     f"{_num(med.get('full_p50_ms'), 1)} / {_num(med.get('full_p99_ms'), 1)} | "
                     f"{_num(med.get('effect_insert_p50_ms'), 1)} / {_num(med.get('effect_insert_p99_ms'), 1)} | "
                     f"{_num(med.get('pubsub_buffer_peak_mb'), 1)} | {cpu} |")
    for row, prof in (doc.get("profile") or {}).items():
        for role, data in prof.get("roles", {}).items():
            parts += ["", f"## Where the time goes: {label(row)} — {role} (py-spy, extra run)", "",
                      f"{data['samples']:,} samples, {data['idle_pct']:.0f}% idle (waiting in select/poll/sleep); "
                      "shares below are of the busy samples.", "", "| self % | function |", "|---|---|"]
            parts += [f"| {p:.1f} | `{f}` |" for f, p in data["self"][:15]]
            parts += ["", "| inclusive % | function |", "|---|---|"]
            parts += [f"| {p:.1f} | `{f}` |" for f, p in data["inclusive"][:30]]
    parts += ["", "## Machine", ""]
    parts += [f"- {k}: {v}" for k, v in m.items()]
    parts += ["", "## Method", "", "```", doc["method"].strip(), "```", ""]
    return "\n".join(parts)


def write(doc: dict, out: Path) -> str:
    """Write ``latest.md``/``latest.json`` and a timestamped JSON; return the name."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = doc["generated"].replace(":", "").replace("-", "").replace("+0000", "Z")
    base = "latest"
    blob = json.dumps(doc, indent=2, default=str)
    for name in (f"{base}.json", f"{stamp}.json"):
        tmp = out / f"{name}.tmp"
        tmp.write_text(blob)
        tmp.replace(out / name)
    tmp = out / f"{base}.md.tmp"
    tmp.write_text(markdown(doc))
    tmp.replace(out / f"{base}.md")
    return base


def machine_info(ctx) -> dict:
    info: dict = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["cpus"] = os.cpu_count()
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
        with open("/proc/meminfo") as f:
            info["memory_gb"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except (OSError, AttributeError):
        pass
    info["os"] = platform.platform()
    info["python"] = platform.python_version()
    for dist in ("celery", "kombu", "redis", "hiredis", "Django", "msgspec", "psycopg", "billiard"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[dist] = None
    info["redis"] = ctx.redis_info
    info["redis-server"] = ctx.redis_info.get("version")
    for database in (ctx.sqlite, ctx.postgres):
        if database is not None:
            try:
                info[database.kind] = database.version()
            except Exception as exc:  # noqa: BLE001 - informational only
                info[database.kind] = f"unknown ({exc})"
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                            text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        info["git_dirty"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _frame_name(frame: str) -> str:
    # py-spy raw frames: "function (path/to/file.py:line)"; keep function + short file
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, _line = where.rpartition(":")
    short = "/".join(Path(path).parts[-2:]) if path else where
    return f"{name} ({short})"


# Leaf functions that mean "waiting, not working".
_IDLE = ("select", "poll", "epoll", "sleep", "wait", "acquire", "_recv", "recv_into", "readinto", "accept",
         "_wait_for_tstate_lock", "serve_forever")


def _is_idle(leaf: str) -> bool:
    name = leaf.split(" (")[0].rsplit(".", 1)[-1]
    return name in _IDLE


def summarize_profile(path: Path) -> dict:
    """Self and inclusive shares per function from py-spy's collapsed stacks
    (``--format raw``), per process role: with ``--subprocesses`` the first
    process frame is the main process and a second one a pool child."""
    roles: dict[str, dict] = {}
    try:
        text = path.read_text()
    except OSError:
        return {"roles": {}, "error": f"no profile at {path}"}
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        raw = stack.split(";")
        depth = sum(1 for f in raw if f.startswith("process "))
        role = {0: "main process", 1: "main process"}.get(depth, "pool child processes")
        frames = [_frame_name(f) for f in raw if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        r = roles.setdefault(role, {"self": Counter(), "inclusive": Counter(), "samples": 0, "idle": 0})
        r["samples"] += n
        if _is_idle(frames[-1]):
            r["idle"] += n
            continue
        r["self"][frames[-1]] += n
        for f in set(frames):
            r["inclusive"][f] += n
    out = {"file": str(path), "roles": {}}
    for role, r in roles.items():
        busy = r["samples"] - r["idle"]
        share = (lambda c: [(f, 100.0 * k / busy) for f, k in c.most_common(40)]) if busy else (lambda c: [])
        out["roles"][role] = {"samples": r["samples"], "idle_pct": 100.0 * r["idle"] / r["samples"],
                              "self": share(r["self"]), "inclusive": share(r["inclusive"])}
    return out
