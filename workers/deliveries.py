"""Delivery counting: how many times a task message came back to its queue.

Kept in Redis under ``journal.deliveries_key`` (one key per event id), read
by the topic tasks (workers/tasks.py) to spot a poison event, and reset by a
replay (workers/replay.py) so a replayed event starts from zero.
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings

from e_clean_backend import redis_config
from e_clean_backend.logging import event_fields

from . import journal

log = logging.getLogger(__name__)

_redis: redis.Redis | None = None


def _client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis_config.client(settings.REDIS_URL)
    return _redis


def reset(event_ids: list[str]) -> None:
    """Forget unfinished-delivery counts, e.g. before a replay."""
    if event_ids:
        _client().delete(*(journal.deliveries_key(i) for i in event_ids))


def count(event_id: str) -> int:
    """Count a delivery of a message that came back to the queue; 0 when
    Redis cannot say.

    Only called for redelivered messages (kombu flags every message it puts
    back: worker lost, time limit, visibility timeout, shutdown), so a first
    delivery costs no Redis round trip. Best effort on purpose: it only guards
    against poison events, and a Redis hiccup here must not fail, and so ack,
    an event that was never handled.
    """
    key = journal.deliveries_key(event_id)
    try:
        with _client().pipeline(transaction=False) as pipe:
            returned, _ = pipe.incr(key).expire(key, settings.EVENTS_CLAIM_TTL).execute()
        return returned
    except redis.RedisError as exc:
        log.warning("Delivery count unavailable (%s)", exc, extra=event_fields(event_id=event_id))
        return 0


def clear(event_id: str) -> None:
    try:
        _client().delete(journal.deliveries_key(event_id))
    except redis.RedisError:
        pass  # expires with EVENTS_CLAIM_TTL
