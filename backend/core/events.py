"""The event publisher: how the backend tells the pipeline something happened.

    from core.events import publish_event
    with transaction.atomic():
        job = Job.objects.create(...)
        publish_event("jobs", "job.created", {"job_id": job.pk})

The event is written to the outbox (:class:`core.models.OutboxEvent`) in the
surrounding transaction, so it exists exactly when the change it describes
does: a rolled back change publishes nothing, a committed one is never lost.
Right after the commit it is published (the fast path) and its row deleted, so
a worker never receives an event about a row it cannot see yet. When the fast
path fails (Redis hung or down, the process killed between commit and
publish), the row stays and the bridge's relay publishes it a few seconds
later (``workers/bridge/outbox.py``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import msgspec
import redis
from django.conf import settings
from django.db import DatabaseError, transaction
from redis.backoff import NoBackoff
from redis.retry import Retry

from e_clean_backend import redis_config
from e_clean_backend.logging import event_fields
from workers import envelope, journal

log = logging.getLogger(__name__)
_local = threading.local()

# After a failed fast path, skip it for this long: the relay publishes those
# events anyway, and a bulk action on N rows must not wait N timeouts.
FAST_PATH_PAUSE = 10.0
_paused_until = 0.0


def _client() -> redis.Redis:
    # One client per thread: the connection pool is thread-safe, but a
    # forked web worker must not share its parent's sockets.
    client = getattr(_local, "client", None)
    if client is None:
        # One short try: the outbox covers a failure, so a hung Redis costs a
        # request EVENTS_PUBLISH_TIMEOUT at most, not timeouts times retries.
        timeout = settings.EVENTS_PUBLISH_TIMEOUT
        client = _local.client = redis_config.client(
            settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
    return client


def build_event(topic: str, type: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    """The envelope as bytes, validated: a bad event fails here, in the caller."""
    message = {
        "id": event_id or str(uuid.uuid4()),
        "type": type,
        "data": data,
        "occurred_at": datetime.now(timezone.utc).isoformat(),
        "version": 1,
    }
    payload = msgspec.json.encode(message)
    envelope.parse(topic, payload, settings.EVENTS_MAX_BYTES)  # raises InvalidEvent
    return payload


def send(topic: str, payload: bytes, event_id: str, event_type: str) -> bool:
    """Journal and publish one event now, once, with a short timeout.

    Returns True when Redis took it. A failure only logs: the caller keeps the
    event (the outbox row) for the relay, so there is nothing to dead-letter,
    and a publish that timed out yet reached Redis is at worst sent twice,
    which the bridge's claims and the handlers' idempotency absorb.
    """
    global _paused_until
    try:
        journal.publish(_client(), topic, payload, settings.EVENTS_JOURNAL_MAXLEN)
        return True
    except redis.RedisError as exc:
        _paused_until = time.monotonic() + FAST_PATH_PAUSE
        log.warning("Publishing failed (%s); the event stays in the outbox for the bridge's relay",
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                    extra=event_fields(topic, event_type, event_id))
        return False


def publish_now(row, using: str | None = None) -> bool:
    """The fast path for one outbox row: publish, then delete the row.

    Skipped (returns False, the row stays for the relay) for a while after a
    failure, so one hung Redis costs one timeout, not one per event.
    """
    if time.monotonic() < _paused_until:
        log.info("Fast path paused after a failure; the event stays in the outbox for the bridge's relay",
                 extra=event_fields(row.topic, row.type, str(row.event_id)))
        return False
    if not send(row.topic, row.payload.encode(), str(row.event_id), row.type):
        return False
    try:
        type(row).objects.using(using).filter(pk=row.pk).delete()
    except DatabaseError as exc:
        # Published; the relay will publish it once more, which is harmless.
        log.warning("Published, but the outbox row could not be deleted (%s)", exc,
                    extra=event_fields(row.topic, row.type, str(row.event_id)))
    return True


def publish_event(topic: str, type: str, data: dict[str, Any], *, using: str | None = None) -> str:
    """Record an event in the outbox now and publish it after the current
    transaction commits; return its id.

    Outside a transaction the row is written and published at once. The
    envelope is validated now, so a wrong field raises
    :class:`workers.envelope.InvalidEvent` here, before anything is written.
    """
    from core.models import OutboxEvent

    event_id = str(uuid.uuid4())
    payload = build_event(topic, type, data, event_id)
    row = OutboxEvent.objects.using(using).create(
        event_id=event_id, topic=topic, type=type, payload=payload.decode("utf-8"))
    transaction.on_commit(lambda: publish_now(row, using), using=using)
    return event_id
