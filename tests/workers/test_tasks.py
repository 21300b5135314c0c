"""The topic tasks (workers/tasks.py) in Celery's in-process worker
(pytest-celery's ``celery_session_worker``), on the real password-protected
Redis broker. The in-process worker consumes its own ``inproc.*`` queues so it
never takes tasks meant for the worker subprocesses of other tests."""

from __future__ import annotations

import uuid

import pytest
from django.db import OperationalError

from core.models import DeadLetter, Notification, ProcessedEvent
from workers.handlers import jobs

from ..support import envelope, wait_for

pytestmark = pytest.mark.db
QUEUES = tuple(f"inproc.{t}" for t in ("jobs", "notifications", "chat", "payments"))


@pytest.fixture(scope="session")
def celery_session_app():
    from workers.celery import app

    return app


@pytest.fixture(scope="session")
def celery_worker_pool():
    return "threads"


@pytest.fixture(scope="session")
def celery_worker_parameters():
    return {"queues": QUEUES, "perform_ping_check": False, "concurrency": 2}


def send(app, topic, message):
    return app.send_task(topic, args=[message], task_id=message["id"], queue=f"inproc.{topic}")


def dead_letter(event_id):
    return DeadLetter.objects.filter(event_id=event_id).first()


def test_handled_once(celery_session_app, celery_session_worker, job):
    message = envelope("job.created", {"job_id": job.pk})
    send(celery_session_app, "jobs", message)
    wait_for(lambda: ProcessedEvent.objects.filter(event_id=message["id"]).exists(), what="handled")
    send(celery_session_app, "jobs", message)  # a duplicate task for the same event
    send(celery_session_app, "jobs", message)
    marker = envelope("job.created", {"job_id": job.pk})
    send(celery_session_app, "jobs", marker)
    wait_for(lambda: ProcessedEvent.objects.filter(event_id=marker["id"]).exists(), what="marker handled")
    assert Notification.objects.filter(event_id=message["id"]).count() == 1


def test_transient_error_twice_then_success(celery_session_app, celery_session_worker, job, monkeypatch):
    calls = []
    real = jobs.HANDLERS["job.created"]

    def flaky(event):
        calls.append(event.id)
        if len(calls) <= 2:
            raise OperationalError("database is locked")
        real(event)

    monkeypatch.setitem(jobs.HANDLERS, "job.created", flaky)
    message = envelope("job.created", {"job_id": job.pk})
    send(celery_session_app, "jobs", message)
    done = wait_for(lambda: ProcessedEvent.objects.filter(event_id=message["id"]).first(), what="handled")
    assert done.attempts == 3  # two retries recorded
    assert len(calls) == 3
    assert Notification.objects.filter(event_id=message["id"]).count() == 1
    assert dead_letter(message["id"]) is None


def test_permanent_error_dead_letters_without_retry(celery_session_app, celery_session_worker, job):
    job.status = "cancelled"
    job.save()
    message = envelope("job.completed", {"job_id": job.pk})
    send(celery_session_app, "jobs", message)
    letter = wait_for(lambda: dead_letter(message["id"]), what="dead letter")
    assert (letter.reason, letter.stage, letter.attempts) == ("permanent_error", "worker", 1)
    assert "PermanentError" in letter.detail and "Traceback" in letter.traceback
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert not ProcessedEvent.objects.filter(event_id=message["id"]).exists()


def test_retries_run_out_then_dead_letter(celery_session_app, celery_session_worker, clean_db):
    message = envelope("job.created", {"job_id": 987_654})  # never committed
    send(celery_session_app, "jobs", message)
    letter = wait_for(lambda: dead_letter(message["id"]), timeout=30, what="dead letter")
    assert letter.reason == "retries_exhausted"
    assert letter.attempts == jobs.RETRY.max_retries + 1
    assert "NotYetCommitted" in letter.detail


def test_invalid_task_argument_is_dead_lettered_not_retried(celery_session_app, celery_session_worker, clean_db):
    message = {"id": str(uuid.uuid4()), "type": "payment.succeeded", "data": {"job_id": 1}}
    send(celery_session_app, "jobs", message)
    letter = wait_for(lambda: dead_letter(message["id"]), what="dead letter")
    assert (letter.reason, letter.attempts) == ("wrong_topic", 1)
