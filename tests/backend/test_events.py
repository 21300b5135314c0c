"""The publisher (backend/core/events.py)."""

from __future__ import annotations

import json
import uuid

import pytest
from django.db import transaction

from core import events
from core.models import DeadLetter
from workers.envelope import InvalidEvent

pytestmark = pytest.mark.db


@pytest.fixture
def subscriber(redis_client):
    pubsub = redis_client.pubsub()
    pubsub.subscribe("jobs")
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    yield pubsub
    pubsub.close()


def received(pubsub, timeout=2.0):
    msg = pubsub.get_message(timeout=timeout)
    return json.loads(msg["data"]) if msg else None


def test_envelope_is_built_and_sent_after_commit(subscriber, redis_client, clean_db):
    with transaction.atomic():
        event_id = events.publish_event("jobs", "job.created", {"job_id": 7})
        assert received(subscriber, 0.2) is None
        assert redis_client.xlen("eclean:journal:jobs") == 0
    message = received(subscriber)
    assert message["id"] == event_id and str(uuid.UUID(event_id)) == event_id
    assert (message["type"], message["data"], message["version"]) == ("job.created", {"job_id": 7}, 1)
    assert message["occurred_at"].endswith("+00:00")
    (entry_id, fields), = redis_client.xrange("eclean:journal:jobs")
    assert json.loads(fields[b"e"]) == message


def test_rollback_publishes_nothing(subscriber, redis_client, clean_db):
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        events.publish_event("jobs", "job.created", {"job_id": 7})
        1 / 0
    assert received(subscriber, 0.3) is None
    assert redis_client.xlen("eclean:journal:jobs") == 0


def test_bad_event_fails_in_the_caller(redis_client, clean_db):
    with pytest.raises(InvalidEvent, match="bad_data"):
        events.publish_event("jobs", "job.created", {"job_id": "seven"})
    with pytest.raises(InvalidEvent, match="wrong_topic"):
        events.publish_event("chat", "job.created", {"job_id": 7})
    assert redis_client.xlen("eclean:journal:jobs") == 0


def test_unheard_publish_is_counted_and_still_journaled(redis_client, clean_db):
    events.publish_event("jobs", "job.created", {"job_id": 1})  # no subscriber
    assert redis_client.get("eclean:publisher:unheard:jobs") == b"1"
    assert redis_client.xlen("eclean:journal:jobs") == 1


def test_journal_is_capped(redis_client, clean_db, temp_settings):
    temp_settings.EVENTS_JOURNAL_MAXLEN = 100
    for n in range(400):
        events.send("jobs", events.build_event("jobs", "job.created", {"job_id": n + 1}), "x", "job.created")
    # approximate trimming: whole nodes are dropped, never below the cap
    assert 100 <= redis_client.xlen("eclean:journal:jobs") < 400


@pytest.fixture
def fresh_publisher(monkeypatch):
    """The publisher with no cached client and no pause from an earlier failure."""
    monkeypatch.setattr(events._local, "client", None, raising=False)
    monkeypatch.setattr(events, "_paused_until", 0.0)
    yield
    events._local.client = None
    events._paused_until = 0.0


def test_the_outbox_row_commits_with_the_change_and_goes_once_published(subscriber, redis_client, clean_db):
    from core.models import OutboxEvent

    with transaction.atomic():
        event_id = events.publish_event("jobs", "job.created", {"job_id": 7})
        row = OutboxEvent.objects.get(pk=event_id)
        assert (row.topic, row.type, json.loads(row.payload)["id"]) == ("jobs", "job.created", event_id)
    assert received(subscriber)["id"] == event_id
    assert not OutboxEvent.objects.exists()
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        events.publish_event("jobs", "job.created", {"job_id": 8})
        1 / 0
    assert not OutboxEvent.objects.exists()


def test_redis_down_keeps_the_event_in_the_outbox_not_as_a_dead_letter(clean_db, temp_settings, fresh_publisher):
    from core.models import OutboxEvent

    temp_settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    event_id = events.publish_event("jobs", "job.created", {"job_id": 3})
    row = OutboxEvent.objects.get(pk=event_id)
    assert json.loads(row.payload)["id"] == event_id
    assert not DeadLetter.objects.exists()


def test_a_hung_redis_costs_one_short_timeout_per_request_not_one_per_event(clean_db, temp_settings, fresh_publisher):
    import socket
    import time

    from core.models import OutboxEvent

    # A socket that accepts connections and never answers: a hung Redis.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        temp_settings.REDIS_URL = f"redis://:pw@127.0.0.1:{hung.getsockname()[1]}/0"
        temp_settings.EVENTS_PUBLISH_TIMEOUT = 0.5
        started = time.monotonic()
        with transaction.atomic():
            ids = [events.publish_event("jobs", "job.created", {"job_id": n}) for n in range(1, 5)]
        elapsed = time.monotonic() - started
    assert elapsed < 0.5 + 1.5, f"4 events waited {elapsed:.1f}s on a hung Redis"
    assert sorted(str(r.pk) for r in OutboxEvent.objects.all()) == sorted(ids)
    assert not DeadLetter.objects.exists()


def test_nul_bytes_are_kept_escaped_in_dead_letters(clean_db):
    from core.deadletters import record

    letter = record(topic="jobs", stage="bridge", reason="not_json", payload=b"a\x00b", detail="x\x00y")
    letter.refresh_from_db()
    assert letter.payload == "a\\x00b" and letter.detail == "x\\x00y"


def test_nul_in_text_and_ids_beyond_the_column_fail_in_the_caller_on_every_database(redis_client, clean_db):
    from core.models import OutboxEvent

    with pytest.raises(InvalidEvent, match="NUL"):
        events.publish_event("chat", "chat.message", {"sender_id": 1, "recipient_id": 2, "text": "a\x00b"})
    with pytest.raises(InvalidEvent, match="bad_data"):
        events.publish_event("notifications", "notification.created",
                             {"user_id": 2**31, "title": "t", "message": "m"})
    assert not OutboxEvent.objects.exists()
    assert redis_client.xlen("eclean:journal:chat") == 0
