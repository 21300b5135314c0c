"""The outbox relay (workers/bridge/outbox.py) against a real Redis and database."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from core import events
from core.models import OutboxEvent
from workers.bridge.outbox import Relay

pytestmark = pytest.mark.db


def _row(job_id: int, age: float) -> OutboxEvent:
    payload = events.build_event("jobs", "job.created", {"job_id": job_id})
    row = OutboxEvent.objects.create(event_id=json.loads(payload)["id"], topic="jobs", type="job.created",
                                     payload=payload.decode())
    OutboxEvent.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(seconds=age))
    return row


def test_the_relay_publishes_only_rows_older_than_the_delay_and_deletes_them(redis_client, clean_db):
    from workers.bridge.outbox import BACKLOG, RELAYED

    old, fresh = _row(1, age=30), _row(2, age=0)
    relayed = RELAYED.labels("jobs")._value.get()
    assert Relay(delay=5, journal_maxlen=1000).run(redis_client) == 1
    assert RELAYED.labels("jobs")._value.get() == relayed + 1
    assert BACKLOG._value.get() == 0
    (_, fields), = redis_client.xrange("eclean:journal:jobs")
    assert json.loads(fields[b"e"])["id"] == str(old.event_id)
    assert [str(pk) for pk in OutboxEvent.objects.values_list("pk", flat=True)] == [str(fresh.pk)]


def test_a_redis_failure_keeps_the_row_counts_the_try_and_reaches_the_bridge(redis_server, clean_db):
    row = _row(3, age=30)
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    with pytest.raises(redis.ConnectionError):
        Relay(delay=5, journal_maxlen=1000).run(dead)
    from workers.bridge.outbox import BACKLOG

    assert BACKLOG._value.get() == 1
    row.refresh_from_db()
    assert row.attempts == 1 and "Connection refused" in row.last_error
