"""The audit: accepted events that never had an effect get enqueued again.

Celery on Redis has one window no ack setting closes: a worker pops a task
(BRPOP) and only then records it as unacked. If Redis restarts or the
connection drops in between, the task exists nowhere (kombu#2590 and the
celery issues it links). Every event a bridge claimed is on record in
``eclean:accepted:<topic>`` (appended with the claim, workers/bridge/claims.py),
whether the publisher journaled it or another program sent a plain PUBLISH.
A while after each was accepted the bridge checks it has an effect or a dead
letter; if it has neither and the broker does not hold its task either, it
enqueues the event again. Handlers are idempotent, so a false alarm costs one
duplicate task, never a second effect.

"The broker holds it" means waiting in its queue or in kombu's unacked hash —
prefetched by a worker but not started yet (a worker reserves
``CELERY_WORKER_PREFETCH_MULTIPLIER`` × concurrency tasks). Those are not
lost, and the audit looks at them again next round instead of moving past.

"A while" is ``EVENTS_AUDIT_DELAY``: longer than anything that legitimately
keeps a task in flight (the visibility timeout after which a dead worker's
tasks return, a retry's countdown). A topic whose queue is not empty is not
audited in that round: its events may simply still be waiting.
"""

from __future__ import annotations

import json
import logging
import time

from django.db import close_old_connections

from e_clean_backend.logging import event_fields

from .. import envelope
from ..journal import JOURNAL_FIELD, accepted_key, audited_key
from . import metrics

log = logging.getLogger("workers.bridge")

PAGE = 2000
SQL_CHUNK = 500  # ids per IN (...) query, well under SQLite's variable limit
UNACKED_KEY = "unacked"  # kombu's Redis transport default (transport option unacked_key)


def unsettled(event_ids: list[str]) -> set[str]:
    """Ids with neither a "handled" mark nor a dead letter."""
    from core.models import DeadLetter, ProcessedEvent

    close_old_connections()
    settled: set[str] = set()
    for start in range(0, len(event_ids), SQL_CHUNK):
        chunk = event_ids[start:start + SQL_CHUNK]
        settled.update(str(i) for i in ProcessedEvent.objects.filter(event_id__in=chunk)
                       .values_list("event_id", flat=True))
        settled.update(DeadLetter.objects.filter(event_id__in=chunk).values_list("event_id", flat=True))
    return set(event_ids) - settled


def unacked_task_ids(broker, unacked_key: str = UNACKED_KEY) -> set[str]:
    """Task ids a worker has taken but not acked yet (running or prefetched)."""
    ids = set()
    for _, raw in broker.hscan_iter(unacked_key, count=1000):
        try:
            ids.add(json.loads(raw)[0]["headers"]["id"])
        except (ValueError, LookupError, TypeError):
            continue  # not a task message of ours
    return ids


def audit(client, broker, bridge_name: str, topics, enqueue, delay: float) -> int:
    """One round over every topic; returns how many events were enqueued again.
    ``broker`` is the broker's Redis (which may be another one than ``client``)."""
    horizon_ms = int((time.time() - delay) * 1000)
    recovered = 0
    in_flight: set[str] | None = None
    for topic in topics:
        if broker.llen(topic):
            continue  # a backlog: its events may still be on their way
        key = audited_key(bridge_name, topic)
        start = client.get(key) or b"0-0"
        entries = client.xrange(accepted_key(topic), min=b"(" + start, max=horizon_ms, count=PAGE)
        if not entries:
            continue
        events = {}
        order = []  # (entry id, event id)
        for entry_id, fields in entries:
            try:
                event = envelope.parse(topic, fields.get(JOURNAL_FIELD, b""), max_bytes=envelope.NO_SIZE_LIMIT)
            except envelope.InvalidEvent:
                continue  # only valid events are accepted; nothing to do
            events[event.id] = event
            order.append((entry_id, event.id))
        missing = unsettled(list(events))
        held: set[str] = set()
        if missing:
            in_flight = unacked_task_ids(broker) if in_flight is None else in_flight
            held = missing & in_flight
            missing -= held
        if missing:
            enqueue([events[i] for i in missing])
            for i in missing:
                log.warning("Event was enqueued but never handled; enqueued again (audit)",
                            extra=event_fields(topic, events[i].type, i))
            metrics.RECOVERED.labels(topic).inc(len(missing))
            recovered += len(missing)
        # Move past what is settled or recovered; stop before the first task
        # still held by a worker, to look at it again next round.
        cursor = entries[-1][0]
        previous = None
        for entry_id, event_id in order:
            if event_id in held:
                cursor = previous
                break
            previous = entry_id
        if cursor is not None:
            client.set(key, cursor)
    return recovered
