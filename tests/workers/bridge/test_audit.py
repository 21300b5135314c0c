"""The audit (workers/bridge/audit.py) against the real Redis and database:
what it calls lost, and what it must not."""

from __future__ import annotations

import json
import time

import pytest

from core import events
from workers.bridge.audit import audit
from workers.journal import audited_key

pytestmark = pytest.mark.db
TOPIC = "notifications"


def accepted_long_ago(redis_client, user, seconds_ago: float = 100) -> tuple[str, bytes]:
    """An event the bridge accepted ``seconds_ago`` (as its claim recorded it)."""
    payload = events.build_event(TOPIC, "notification.created", {"user_id": user.pk, "title": "t", "message": "m"})
    payload = payload.encode() if isinstance(payload, str) else payload
    entry = redis_client.xadd(f"eclean:accepted:{TOPIC}", {b"e": payload}, id=f"{int((time.time() - seconds_ago) * 1000)}-0")
    return json.loads(payload)["id"], entry


def test_a_prefetched_task_is_not_reported_lost_and_is_looked_at_again(redis_client, users):
    event_id, entry = accepted_long_ago(redis_client, users["client"])
    # What kombu's Redis transport records for a message a worker reserved
    # (prefetched, not started): delivery tag -> [message, exchange, routing key].
    redis_client.hset("unacked", "tag-1", json.dumps([{"headers": {"id": event_id, "task": TOPIC}, "body": ""},
                                                      "", TOPIC]))
    sent = []
    assert audit(redis_client, redis_client, "t", (TOPIC,), sent.extend, delay=15) == 0
    assert sent == []
    assert redis_client.get(audited_key("t", TOPIC)) is None, "the cursor moved past a task still held"
    # The worker died and the message vanished in the BRPOP window: lost now.
    redis_client.hdel("unacked", "tag-1")
    assert audit(redis_client, redis_client, "t", (TOPIC,), sent.extend, delay=15) == 1
    assert [e.id for e in sent] == [event_id]
    assert redis_client.get(audited_key("t", TOPIC)) == entry


def test_a_settled_event_is_not_enqueued_again(redis_client, users):
    from core.models import ProcessedEvent

    event_id, entry = accepted_long_ago(redis_client, users["client"])
    ProcessedEvent.objects.create(event_id=event_id, topic=TOPIC, type="notification.created")
    sent = []
    assert audit(redis_client, redis_client, "t", (TOPIC,), sent.extend, delay=15) == 0
    assert sent == [] and redis_client.get(audited_key("t", TOPIC)) == entry


def test_a_topic_with_a_backlog_is_left_for_later(redis_client, users):
    accepted_long_ago(redis_client, users["client"])
    redis_client.rpush(TOPIC, b"{}")
    sent = []
    assert audit(redis_client, redis_client, "t", (TOPIC,), sent.extend, delay=15) == 0
    assert redis_client.get(audited_key("t", TOPIC)) is None
