"""The audit: journaled events that were enqueued but never handled get enqueued again.

Celery on Redis has one window no ack setting closes: a worker pops a task
(BRPOP) and only then records it as unacked. If Redis restarts or the
connection drops in between, the task exists nowhere (kombu#2590 and the
celery issues it links). The journal still has the event, so the bridge
checks, a while after each event was published, that it has an effect or a
dead letter; if it has neither, it enqueues the event again. Handlers are
idempotent, so a false alarm costs one duplicate task, never a second effect.

"A while" is ``EVENTS_AUDIT_DELAY``: longer than anything that legitimately
keeps a task in flight (the visibility timeout after which a dead worker's
tasks return, a retry's countdown). A topic whose queue is not empty is not
audited in that round: its events may simply still be waiting.
"""

from __future__ import annotations

import logging
import time

from django.db import close_old_connections

from e_clean_backend.logging import event_fields

from .. import envelope
from ..journal import JOURNAL_FIELD, journal_key
from . import metrics

log = logging.getLogger("workers.bridge")

PAGE = 2000
SQL_CHUNK = 500  # ids per IN (...) query, well under SQLite's variable limit


def audited_key(bridge_name: str, topic: str) -> str:
    return f"eclean:bridge:{bridge_name}:audited:{topic}"


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


def audit(client, bridge_name: str, topics, enqueue, delay: float, queue_length) -> int:
    """One round over every topic; returns how many events were enqueued again.
    ``queue_length(topic)`` asks the broker (which may be another Redis)."""
    horizon_ms = int((time.time() - delay) * 1000)
    recovered = 0
    for topic in topics:
        if queue_length(topic):
            continue  # a backlog: its events may still be on their way
        key = audited_key(bridge_name, topic)
        start = client.get(key) or b"0-0"
        entries = client.xrange(journal_key(topic), min=b"(" + start, max=horizon_ms, count=PAGE)
        if not entries:
            continue
        events = {}
        for _, fields in entries:
            try:
                event = envelope.parse(topic, fields.get(JOURNAL_FIELD, b""), max_bytes=1 << 30)
            except envelope.InvalidEvent:
                continue  # dead-lettered when it was received live or replayed
            events[event.id] = event
        missing = unsettled(list(events))
        if missing:
            enqueue([events[i] for i in missing])
            for i in missing:
                log.warning("Event was enqueued but never handled; enqueued again (audit)",
                            extra=event_fields(topic, events[i].type, i))
            metrics.RECOVERED.labels(topic).inc(len(missing))
            recovered += len(missing)
        client.set(key, entries[-1][0])
    return recovered
