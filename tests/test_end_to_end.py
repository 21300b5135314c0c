"""The whole pipeline with real processes: PUBLISH → bridge → Redis broker →
`celery -A workers worker` → handlers → database."""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction

from core.models import DeadLetter, Job, Notification, Payment, ProcessedEvent

from . import support
from .support import envelope, publish_raw, wait_for

pytestmark = [pytest.mark.db, pytest.mark.slow]


@pytest.fixture
def pipeline(tmp_path, redis_client, users):
    bridge = support.bridge(tmp_path)
    worker = support.worker(tmp_path)
    try:
        bridge.wait_log(support.READY)
        worker.wait_log(support.WORKER_READY)
        yield {"bridge": bridge, "worker": worker, "redis": redis_client, "tmp": tmp_path}
    finally:
        assert bridge.stop() == 0, bridge.log()[-2000:]
        worker.stop()


def handled(*event_ids):
    return ProcessedEvent.objects.filter(event_id__in=event_ids).count() == len(event_ids)


def test_every_event_type_published_raw_has_its_effect(pipeline, users, job):
    r = pipeline["redis"]
    client, cleaner = users["client"], users["cleaner"]
    second = Job.objects.create(client=client, title="Windows")
    # Waves: events whose effect depends on an earlier one's are published after it was handled.
    waves = [
        [("jobs", envelope("job.created", {"job_id": job.pk})),
         ("jobs", envelope("job.accepted", {"job_id": job.pk, "cleaner_id": cleaner.pk}))],
        [("payments", envelope("payment.succeeded",
                               {"payment_id": "pi_ok", "job_id": job.pk, "amount": "49.90", "currency": "EUR"})),
         ("payments", envelope("payment.failed", {"payment_id": "pi_ko", "job_id": second.pk, "amount": "20.00",
                                                  "currency": "EUR", "reason": "card declined"})),
         ("chat", envelope("chat.message", {"sender_id": client.pk, "recipient_id": cleaner.pk, "text": "Hi!"})),
         ("notifications", envelope("notification.created", {"user_id": cleaner.pk, "title": "Tip",
                                                             "message": "Bring gloves", "kind": "tip"}))],
        [("jobs", envelope("job.completed", {"job_id": job.pk})),
         ("jobs", envelope("job.cancelled", {"job_id": second.pk})),
         ("payments", envelope("payment.refunded",
                               {"payment_id": "pi_ok", "job_id": job.pk, "amount": "49.90", "currency": "EUR"}))],
    ]
    for n, wave in enumerate(waves):
        for topic, message in wave:
            assert publish_raw(r, topic, message) == 1  # the bridge is the one subscriber
        wait_for(lambda: handled(*(m["id"] for _, m in wave)), what=f"wave {n} handled")

    job.refresh_from_db()
    second.refresh_from_db()
    assert (job.status, job.cleaner_id) == ("completed", cleaner.pk)
    assert second.status == "cancelled"
    assert Payment.objects.get(reference="pi_ok").status == "refunded"
    assert Payment.objects.get(reference="pi_ko").status == "failed"
    by_event = {}
    for n in Notification.objects.all():
        by_event.setdefault(str(n.event_id), []).append(n.user.username)
    ids = [m["id"] for wave in waves for _, m in wave]
    expected = [["client"], ["client"], ["cleaner", "client"], ["client"], ["cleaner"], ["cleaner"],
                ["cleaner", "client"], ["client"], ["client"]]
    assert [sorted(by_event.get(i, [])) for i in ids] == expected
    assert DeadLetter.objects.count() == 0


def test_publish_event_publishes_only_after_commit(pipeline, users):
    from core.events import publish_event

    with transaction.atomic():
        job = Job.objects.create(client=users["client"], title="Oven")
        event_id = publish_event("jobs", "job.created", {"job_id": job.pk})
        # Not yet on the wire: nothing journaled, nothing handled.
        assert pipeline["redis"].xlen("eclean:journal:jobs") == 0
    wait_for(lambda: handled(event_id), what="job.created handled after commit")
    assert Notification.objects.get(event_id=event_id).user == users["client"]
    assert pipeline["redis"].xlen("eclean:journal:jobs") == 1


def test_rolled_back_transaction_publishes_nothing(pipeline, users):
    from core.events import publish_event

    with pytest.raises(RuntimeError), transaction.atomic():
        job = Job.objects.create(client=users["client"], title="Oven")
        publish_event("jobs", "job.created", {"job_id": job.pk})
        raise RuntimeError("rollback")
    after = publish_event("notifications", "notification.created",
                          {"user_id": users["client"].pk, "title": "t", "message": "m"})  # outside: at once
    wait_for(lambda: handled(after), what="the later event handled")
    assert pipeline["redis"].xlen("eclean:journal:jobs") == 0
    assert ProcessedEvent.objects.count() == 1


def test_bad_messages_become_dead_letters_and_the_bridge_goes_on(pipeline, users):
    r = pipeline["redis"]
    pid = pipeline["bridge"].pid
    bad = [b"\xff\xfe", b"not json", b"[1]", b'{"type": "job.created", "data": {}}',
           b'{"id": "%s", "type": "job.exploded", "data": {}}' % str(uuid.uuid4()).encode()]
    for raw in bad:
        publish_raw(r, "jobs", raw)
    good = envelope("notification.created", {"user_id": users["client"].pk, "title": "t", "message": "m"})
    publish_raw(r, "notifications", good)
    wait_for(lambda: handled(good["id"]), what="the good event after the bad ones")
    wait_for(lambda: DeadLetter.objects.count() == len(bad), what="one dead letter per bad message")
    assert set(DeadLetter.objects.values_list("reason", flat=True)) == {
        "not_utf8", "not_json", "bad_envelope", "unknown_type"}
    assert pipeline["bridge"].proc.poll() is None and pipeline["bridge"].pid == pid
    assert r.llen("jobs") == 0  # nothing enqueued for them
    assert "Rejected message (not_json" in pipeline["bridge"].log()


def test_task_is_named_after_topic_with_event_id_as_task_id(tmp_path, redis_client, users):
    """Without a worker, the bridge's messages stay on the broker: inspect them."""
    import json

    bridge = support.bridge(tmp_path)
    try:
        bridge.wait_log(support.READY)
        message = envelope("chat.message", {"sender_id": 1, "recipient_id": 2, "text": "x"})
        publish_raw(redis_client, "chat", message)
        raw = wait_for(lambda: redis_client.lindex("chat", 0), what="task message on the chat queue")
    finally:
        bridge.stop()
    task = json.loads(raw)
    assert task["headers"]["task"] == "chat"
    assert task["headers"]["id"] == message["id"]
    assert task["content-type"] == "application/json"
    assert task["properties"]["delivery_info"]["routing_key"] == "chat"
    assert redis_client.llen("chat") == 1
