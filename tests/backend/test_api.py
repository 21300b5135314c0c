"""The small JSON API (backend/core/api.py), through the real pipeline."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from core.models import Job, Notification, Payment, ProcessedEvent

from .. import support
from ..support import wait_for

pytestmark = [pytest.mark.db, pytest.mark.slow]


@pytest.fixture
def staff(users):
    get_user_model().objects.create_user("ops", password="pw-for-tests-only", is_staff=True)
    client = Client()
    assert client.login(username="ops", password="pw-for-tests-only")
    return client


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


def handled(response):
    assert response.status_code == 202, response.content
    event_id = response.json()["event_id"]
    wait_for(lambda: ProcessedEvent.objects.filter(event_id=event_id).exists(), what=f"{event_id} handled")
    return event_id


def test_a_whole_job_through_the_api(tmp_path, redis_client, users, staff):
    bridge, worker = support.bridge(tmp_path), support.worker(tmp_path)
    try:
        bridge.wait_log(support.READY)
        worker.wait_log(support.WORKER_READY)
        client_id, cleaner_id = users["client"].pk, users["cleaner"].pk
        created = post(staff, "/api/jobs", {"client_id": client_id, "title": "Kitchen"})
        handled(created)
        job_id = created.json()["job_id"]
        handled(post(staff, f"/api/jobs/{job_id}/accept", {"cleaner_id": cleaner_id}))
        handled(post(staff, "/api/chat", {"sender_id": client_id, "recipient_id": cleaner_id, "text": "Hi"}))
        handled(post(staff, "/api/payments", {"payment_id": "pi_api", "job_id": job_id, "amount": "30.00",
                                              "currency": "EUR", "status": "succeeded"}))
        handled(post(staff, f"/api/jobs/{job_id}/complete", {}))
        handled(post(staff, "/api/notifications", {"user_id": client_id, "title": "Rate us", "message": "?"}))
    finally:
        bridge.stop()
        worker.stop()
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.cleaner_id) == ("completed", cleaner_id)
    assert Payment.objects.get(reference="pi_api").status == "succeeded"
    listed = staff.get(f"/api/notifications?user_id={client_id}").json()["notifications"]
    assert {n["title"] for n in listed} >= {"Job booked", "Cleaner found", "Payment received", "Job completed",
                                            "Rate us"}
    assert Notification.objects.filter(user_id=cleaner_id, kind="chat.message").count() == 1


def test_staff_only(users, redis_client):
    assert post(Client(), "/api/chat", {}).status_code == 403
    get_user_model().objects.create_user("plain", password="pw-for-tests-only")
    client = Client()
    client.login(username="plain", password="pw-for-tests-only")
    assert client.get("/api/notifications?user_id=1").status_code == 403


@pytest.mark.parametrize("path, body, error", [
    ("/api/chat", {"sender_id": 1, "recipient_id": 2}, "bad_data"),
    ("/api/chat", {"sender_id": 1, "recipient_id": 2, "text": "x", "extra": 1}, "bad_data"),
    ("/api/payments", {"payment_id": "p", "job_id": 1, "amount": "1.00", "currency": "EUR", "status": "lost"},
     "bad request"),
    ("/api/jobs", {"title": "no client"}, "bad request"),
])
def test_bad_input_is_a_400_and_publishes_nothing(staff, redis_client, path, body, error):
    response = post(staff, path, body)
    assert response.status_code == 400 and response.json()["error"] == error
    assert not any(redis_client.xlen(f"eclean:journal:{t}") for t in ("jobs", "chat", "payments"))


def test_not_json(staff):
    response = staff.post("/api/chat", "nope", content_type="application/json")
    assert response.status_code == 400 and response.json()["error"] == "the body is not JSON"


def test_a_reference_to_no_row_is_a_400(staff, redis_client):
    response = post(staff, "/api/jobs", {"client_id": 999_999, "title": "nobody's"})
    assert response.status_code == 400 and response.json()["error"] == "bad reference"
    assert redis_client.xlen("eclean:journal:jobs") == 0


def test_debug_page_hides_urls_with_passwords(settings):
    from django.views.debug import get_default_exception_reporter_filter

    safe = get_default_exception_reporter_filter().get_safe_settings()
    assert settings.REDIS_URL and safe["REDIS_URL"] != settings.REDIS_URL
    assert safe["CELERY_BROKER_URL"] != settings.CELERY_BROKER_URL
