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
    response = post(Client(), "/api/chat", {})
    assert response.status_code == 401 and response.json()["error"] == "not_logged_in"
    get_user_model().objects.create_user("plain", password="pw-for-tests-only")
    client = Client()
    client.login(username="plain", password="pw-for-tests-only")
    response = client.get("/api/notifications?user_id=1")
    assert response.status_code == 403 and response.json()["error"] == "not_staff"


@pytest.mark.parametrize("path, body, detail", [
    ("/api/jobs", {"title": "no client"}, "client_id is required"),
    ("/api/jobs", {"client_id": "one", "title": "x"}, "client_id: Expected `int`, got `str`"),
    ("/api/jobs", {"client_id": 1, "title": "x", "extra": 1}, "Object contains unknown field `extra`"),
    ("/api/chat", {"sender_id": 1, "recipient_id": 2}, "text is required"),
    ("/api/payments", {"payment_id": "p", "job_id": 1, "amount": "1.00", "currency": "EUR", "status": "lost"},
     "status must be one of succeeded, failed, refunded"),
    ("/api/notifications", {"user_id": 2**63, "title": "t", "message": "m"},
     "user_id: Expected `int` <= 9223372036854775807"),
    ("/api/jobs", [], "Expected `object`, got `array`"),
])
def test_bad_input_is_a_400_naming_the_field_and_publishes_nothing(staff, redis_client, path, body, detail):
    response = post(staff, path, body)
    assert response.status_code == 400, response.content
    assert response.json() == {"error": "bad_request", "detail": detail}
    assert not any(redis_client.xlen(f"eclean:journal:{t}") for t in ("jobs", "chat", "payments", "notifications"))


def test_not_json(staff):
    response = staff.post("/api/chat", "nope", content_type="application/json")
    assert response.status_code == 400 and response.json() == {"error": "not_json", "detail": "the body is not JSON"}


@pytest.mark.parametrize("body", [
    b'{"client_id": ' + b"[" * 100_000 + b"]" * 100_000 + b', "title": "deep"}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"client_id": 1, "title": "x", "deep": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"}",
])
def test_a_deeply_nested_body_is_a_400_not_a_500(staff, redis_client, body):
    response = staff.post("/api/jobs", body, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"] == "bad_request"
    assert redis_client.xlen("eclean:journal:jobs") == 0


def test_a_reference_to_no_row_is_a_400(staff, redis_client):
    response = post(staff, "/api/jobs", {"client_id": 999_999, "title": "nobody's"})
    assert response.status_code == 400
    assert response.json() == {"error": "bad_reference", "detail": "client_id: no user with id 999999"}
    assert redis_client.xlen("eclean:journal:jobs") == 0


def test_unknown_jobs_and_actions_are_404_at_the_door(staff, job, redis_client):
    for path in ("/api/jobs/9999/complete", "/api/jobs/9999/accept"):
        response = post(staff, path, {"cleaner_id": 1})
        assert response.status_code == 404, path
        assert response.json() == {"error": "not_found", "detail": "no job with id 9999"}
    response = post(staff, f"/api/jobs/{job.pk}/explode", {})
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert "accept, complete, cancel" in response.json()["detail"]
    response = post(staff, "/api/nothing-here", {})
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    response = post(staff, f"/api/jobs/{job.pk}/accept", {"cleaner_id": 424242})
    assert response.status_code == 400 and response.json()["detail"] == "cleaner_id: no user with id 424242"
    assert redis_client.xlen("eclean:journal:jobs") == 0, "nothing published for any of them"


def test_every_error_is_json(staff, users, redis_client):
    response = staff.get("/api/jobs")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"
    assert response["Allow"] == "POST"
    response = staff.get("/api/notifications?user_id=abc")
    assert response.status_code == 400 and response.json()["detail"].startswith("user_id:")
    # CSRF: a logged-in staff session without the token.
    strict = Client(enforce_csrf_checks=True)
    assert strict.login(username="ops", password="pw-for-tests-only")
    response = post(strict, "/api/chat", {"sender_id": 1, "recipient_id": 2, "text": "x"})
    assert response.status_code == 403 and response["Content-Type"] == "application/json"
    assert response.json()["error"] == "csrf_failed" and "X-CSRFToken" in response.json()["detail"]
    # Outside /api/ the CSRF page stays Django's HTML.
    page = strict.post("/admin/logout/")
    assert page.status_code == 403 and page["Content-Type"].startswith("text/html")


def test_the_csrf_header_passes(staff, users, redis_client):
    strict = Client(enforce_csrf_checks=True)
    assert strict.login(username="ops", password="pw-for-tests-only")
    strict.get("/admin/")  # sets the csrftoken cookie
    token = strict.cookies["csrftoken"].value
    response = strict.post("/api/notifications", json.dumps({"user_id": users["client"].pk, "title": "t",
                                                              "message": "m"}),
                           content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 202, response.content


def test_debug_page_hides_urls_with_passwords(temp_settings):
    from django.views.debug import get_default_exception_reporter_filter

    safe = get_default_exception_reporter_filter().get_safe_settings()
    assert temp_settings.REDIS_URL and safe["REDIS_URL"] != temp_settings.REDIS_URL
    assert safe["CELERY_BROKER_URL"] != temp_settings.CELERY_BROKER_URL
    # Not only by name: CHANNEL_LAYERS carries the URL in hosts[].address.
    password = "Sup3r-S3cret-sentinel"
    temp_settings.CHANNEL_LAYERS = {"default": {"CONFIG": {"hosts": [{"address": f"redis://:{password}@h:1/0"}, f"rediss://user:{password}@h:2/0"]}}}
    safe = get_default_exception_reporter_filter().get_safe_settings()
    assert "CHANNEL_LAYERS" in safe
    assert password not in repr(safe)


def test_an_unexpected_error_is_a_json_500_without_the_traceback(staff, users, redis_client, monkeypatch):
    import core.api

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(core.api, "publish_event", broken)
    staff.raise_request_exception = False
    response = post(staff, "/api/notifications", {"user_id": users["client"].pk, "title": "t", "message": "m"})
    assert response.status_code == 500 and response["Content-Type"] == "application/json"
    assert response.json()["error"] == "server_error" and b"secret internals" not in response.content
