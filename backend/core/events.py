"""The event publisher: how the backend tells the pipeline something happened.

    from core.events import publish_event
    with transaction.atomic():
        job = Job.objects.create(...)
        publish_event("jobs", "job.created", {"job_id": job.pk})

The event is published only after the surrounding transaction commits, so a
worker never receives an event about a row it cannot see yet, and a rolled
back change publishes nothing.
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
from django.db import transaction

from e_clean_backend import redis_config
from e_clean_backend.logging import event_fields
from workers import envelope, journal

log = logging.getLogger(__name__)
_local = threading.local()

PUBLISH_ATTEMPTS = 3


def _client() -> redis.Redis:
    # One client per thread: the connection pool is thread-safe, but a
    # forked web worker must not share its parent's sockets.
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = redis_config.client(settings.REDIS_URL)
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


def send(topic: str, payload: bytes, event_id: str, event_type: str) -> int:
    """Journal and publish now; on failure keep the event as a dead letter."""
    fields = event_fields(topic, event_type, event_id)
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        try:
            return journal.publish(_client(), topic, payload, settings.EVENTS_JOURNAL_MAXLEN)
        except redis.RedisError as exc:
            if attempt == PUBLISH_ATTEMPTS:
                from core.deadletters import record

                log.error("Publishing failed after %d attempts: %s; kept as a dead letter", attempt, exc, extra=fields)
                record(
                    topic=topic,
                    stage="publisher",
                    reason="publish_failed",
                    detail=str(exc),
                    payload=payload,
                    event_id=event_id,
                    event_type=event_type,
                    attempts=attempt,
                )
                return 0
            time.sleep(0.05 * 2**attempt)
    return 0  # pragma: no cover


def publish_event(topic: str, type: str, data: dict[str, Any], *, using: str | None = None) -> str:
    """Publish an event after the current transaction commits; return its id.

    Outside a transaction it is published at once. The envelope is validated
    now, so a wrong field raises :class:`workers.envelope.InvalidEvent` here.
    """
    event_id = str(uuid.uuid4())
    payload = build_event(topic, type, data, event_id)
    transaction.on_commit(lambda: send(topic, payload, event_id, type), using=using)
    return event_id
