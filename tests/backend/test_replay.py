"""Dead-letter replay: manage.py replay_dead_letters and the admin action."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from core.deadletters import record
from core.models import DeadLetter, Notification, ProcessedEvent

from .. import support
from ..support import envelope, wait_for

pytestmark = [pytest.mark.db, pytest.mark.slow]


@pytest.fixture
def worker(tmp_path, redis_client):
    proc = support.worker(tmp_path)
    proc.wait_log(support.WORKER_READY)
    yield proc
    proc.stop()


def letter(message, topic="notifications", reason="retries_exhausted"):
    return record(topic=topic, stage="worker", reason=reason, payload=json.dumps(message).encode(),
                  event_id=message.get("id"), event_type=message.get("type"))


def run(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command("replay_dead_letters", *args, stdout=out)
    return out.getvalue()


def test_replay_has_its_effect_once_even_when_replayed_twice(worker, users):
    message = envelope("notification.created", {"user_id": users["client"].pk, "title": "t", "message": "m"})
    dead = letter(message)
    output = run()
    assert f"replayed notifications notification.created {message['id']}" in output
    assert "1 replayed, 0 still invalid" in output
    wait_for(lambda: ProcessedEvent.objects.filter(event_id=message["id"]).exists(), what="replayed event handled")
    dead.refresh_from_db()
    assert dead.replayed_at is not None and dead.replay_count == 1
    assert "0 replayed" in run()  # already replayed ones are left alone by default
    assert "1 replayed" in run("--id", message["id"])  # unless named
    marker = envelope("notification.created", {"user_id": users["client"].pk, "title": "t", "message": "m"})
    letter(marker)
    run()
    wait_for(lambda: ProcessedEvent.objects.filter(event_id=marker["id"]).exists(), what="marker handled")
    assert Notification.objects.filter(event_id=message["id"]).count() == 1


def test_dry_run_changes_nothing(redis_client, users):
    message = envelope("notification.created", {"user_id": users["client"].pk, "title": "t", "message": "m"})
    dead = letter(message)
    output = run("--dry-run")
    assert "would replay" in output and "dry run: 1 replayed" in output
    dead.refresh_from_db()
    assert dead.replayed_at is None
    assert redis_client.llen("notifications") == 0


def test_invalid_ones_are_reported_as_still_invalid(redis_client, clean_db):
    record(topic="jobs", stage="bridge", reason="not_json", payload=b"garbage")
    output = run()
    assert "still invalid" in output and "not_json" in output and "0 replayed, 1 still invalid" in output
    assert DeadLetter.objects.get().replayed_at is None
    assert redis_client.llen("jobs") == 0


def test_filters_by_topic(redis_client, users):
    a = envelope("notification.created", {"user_id": users["client"].pk, "title": "t", "message": "m"})
    b = envelope("job.created", {"job_id": 1})
    letter(a)
    letter(b, topic="jobs")
    assert "1 replayed" in run("--topic", "jobs")
    assert redis_client.llen("jobs") == 1 and redis_client.llen("notifications") == 0


def test_admin_action_uses_the_same_replay(redis_client, users):
    from django.contrib.admin.sites import site
    from django.test import RequestFactory

    from core.admin import DeadLetterAdmin

    message = envelope("notification.created", {"user_id": users["client"].pk, "title": "t", "message": "m"})
    letter(message)
    admin = DeadLetterAdmin(DeadLetter, site)
    request = RequestFactory().post("/")
    sent = []
    admin.message_user = lambda request, text, level=None: sent.append(text)
    admin.replay_selected(request, DeadLetter.objects.all())
    assert sent == ["1 replayed, 0 still invalid"]
    assert json.loads(redis_client.lindex("notifications", 0))["headers"]["id"] == message["id"]
