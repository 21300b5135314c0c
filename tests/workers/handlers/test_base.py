"""apply_once under concurrency, on the real database (SQLite and PostgreSQL)."""

import threading

import pytest
from django.db import connection

from core.models import Notification, ProcessedEvent

from .helpers import HANDLERS, event
from workers.handlers.base import apply_once

pytestmark = pytest.mark.db


def test_two_workers_racing_on_one_event_apply_it_once(job):
    ev = event("job.created", {"job_id": job.pk})
    barrier = threading.Barrier(4)
    results, errors = [], []

    def run():
        try:
            barrier.wait(timeout=5)
            results.append(apply_once(ev, HANDLERS["job.created"]))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert sorted(results) == [False, False, False, True]
    assert ProcessedEvent.objects.filter(event_id=ev.id).count() == 1
    assert Notification.objects.filter(event_id=ev.id).count() == 1


def test_a_failing_handler_leaves_no_mark(job):
    ev = event("job.created", {"job_id": job.pk})

    def broken(e):
        HANDLERS["job.created"](e)
        raise RuntimeError("after the effect")

    with pytest.raises(RuntimeError):
        apply_once(ev, broken)
    assert not ProcessedEvent.objects.filter(event_id=ev.id).exists()
    assert not Notification.objects.filter(event_id=ev.id).exists()  # rolled back with it
    assert apply_once(ev, HANDLERS["job.created"]) is True
