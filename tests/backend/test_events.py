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


def test_envelope_is_built_and_sent_after_commit(subscriber, redis_client, db):
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


def test_rollback_publishes_nothing(subscriber, redis_client, db):
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        events.publish_event("jobs", "job.created", {"job_id": 7})
        1 / 0
    assert received(subscriber, 0.3) is None
    assert redis_client.xlen("eclean:journal:jobs") == 0


def test_bad_event_fails_in_the_caller(redis_client, db):
    with pytest.raises(InvalidEvent, match="bad_data"):
        events.publish_event("jobs", "job.created", {"job_id": "seven"})
    with pytest.raises(InvalidEvent, match="wrong_topic"):
        events.publish_event("chat", "job.created", {"job_id": 7})
    assert redis_client.xlen("eclean:journal:jobs") == 0


def test_unheard_publish_is_counted_and_still_journaled(redis_client, db):
    events.publish_event("jobs", "job.created", {"job_id": 1})  # no subscriber
    assert redis_client.get("eclean:publisher:unheard:jobs") == b"1"
    assert redis_client.xlen("eclean:journal:jobs") == 1


def test_journal_is_capped(redis_client, db, settings):
    settings.EVENTS_JOURNAL_MAXLEN = 100
    for n in range(400):
        events.send("jobs", events.build_event("jobs", "job.created", {"job_id": n + 1}), "x", "job.created")
    # approximate trimming: whole nodes are dropped, never below the cap
    assert 100 <= redis_client.xlen("eclean:journal:jobs") < 400


def test_redis_down_keeps_the_event_as_a_dead_letter(db, settings, monkeypatch):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    monkeypatch.setattr(events._local, "client", None, raising=False)
    monkeypatch.setattr(events, "PUBLISH_ATTEMPTS", 2)
    event_id = events.publish_event("jobs", "job.created", {"job_id": 3})
    letter = DeadLetter.objects.get(event_id=event_id)
    assert (letter.stage, letter.reason, letter.topic, letter.event_type) == (
        "publisher", "publish_failed", "jobs", "job.created")
    assert json.loads(letter.payload)["id"] == event_id
    monkeypatch.setattr(events._local, "client", None, raising=False)


def test_nul_bytes_are_kept_escaped_in_dead_letters(db):
    from core.deadletters import record

    letter = record(topic="jobs", stage="bridge", reason="not_json", payload=b"a\x00b", detail="x\x00y")
    letter.refresh_from_db()
    assert letter.payload == "a\\x00b" and letter.detail == "x\\x00y"
