"""The admin cannot bypass the pipeline (backend/core/admin.py): what events
own is read-only, and what an operator may still do asks first."""

from __future__ import annotations

import json
import uuid

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.test import Client

from core.models import DeadLetter, Job, ProcessedEvent

pytestmark = pytest.mark.db


@pytest.fixture
def root(users):
    get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client = Client()
    assert client.login(username="root", password="pw-for-tests-only")
    return client


def journal(redis_client, topic="jobs"):
    return [json.loads(fields[b"e"]) for _, fields in redis_client.xrange(f"eclean:journal:{topic}")]


def test_processed_events_cannot_be_added_edited_or_deleted(root, redis_client):
    mark = ProcessedEvent.objects.create(event_id=uuid.uuid4(), topic="jobs", type="job.created")
    assert root.get("/admin/core/processedevent/add/").status_code == 403
    assert root.post("/admin/core/processedevent/add/", {"event_id": str(uuid.uuid4()), "topic": "jobs",
                                                         "type": "job.created", "attempts": 1}).status_code == 403
    url = f"/admin/core/processedevent/{mark.pk}/change/"
    page = root.get(url)
    assert page.status_code == 200 and b'name="_save"' not in page.content  # a view, not a form
    assert root.post(url, {"topic": "chat", "type": "chat.message", "attempts": 9}).status_code == 403
    assert root.post(f"/admin/core/processedevent/{mark.pk}/delete/", {"post": "yes"}).status_code == 403
    listing = root.get("/admin/core/processedevent/").content.decode()
    assert "delete_selected" not in listing and 'value="forget"' in listing
    # Even a hand-made bulk delete request is refused.
    root.post("/admin/core/processedevent/", {"action": "delete_selected", ACTION_CHECKBOX_NAME: [str(mark.pk)],
                                              "post": "yes"})
    mark.refresh_from_db()
    assert (mark.topic, mark.type, mark.attempts) == ("jobs", "job.created", 1)


def test_forgetting_a_mark_asks_first(root, redis_client):
    mark = ProcessedEvent.objects.create(event_id=uuid.uuid4(), topic="jobs", type="job.created")
    asked = root.post("/admin/core/processedevent/", {"action": "forget", ACTION_CHECKBOX_NAME: [str(mark.pk)]})
    assert asked.status_code == 200 and b"Forget these marks?" in asked.content
    assert b"<strong>again</strong>" in asked.content
    assert ProcessedEvent.objects.filter(pk=mark.pk).exists(), "nothing forgotten before the confirmation"
    done = root.post("/admin/core/processedevent/", {"action": "forget", ACTION_CHECKBOX_NAME: [str(mark.pk)],
                                                     "apply": "yes"})
    assert done.status_code == 302
    assert not ProcessedEvent.objects.filter(pk=mark.pk).exists()


def test_forget_needs_the_delete_permission(users, redis_client):
    from django.contrib.auth.models import Permission

    mark = ProcessedEvent.objects.create(event_id=uuid.uuid4(), topic="jobs", type="job.created")
    staff = get_user_model().objects.create_user("viewer", password="pw-for-tests-only", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_processedevent"))
    client = Client()
    assert client.login(username="viewer", password="pw-for-tests-only")
    assert b'value="forget"' not in client.get("/admin/core/processedevent/").content
    client.post("/admin/core/processedevent/", {"action": "forget", ACTION_CHECKBOX_NAME: [str(mark.pk)],
                                                "apply": "yes"})
    assert ProcessedEvent.objects.filter(pk=mark.pk).exists()


def test_dead_letters_cannot_be_added_or_edited_and_tracebacks_keep_their_indentation(root, redis_client):
    assert root.get("/admin/core/deadletter/add/").status_code == 403
    before = DeadLetter.objects.count()
    root.post("/admin/core/deadletter/add/", {"topic": "", "stage": "", "reason": "", "payload": ""})
    assert DeadLetter.objects.count() == before
    trace = ('Traceback (most recent call last):\n  File "workers/handlers/jobs.py", line 12, in complete\n'
             '    raise PermanentError("<job> is cancelled")\nPermanentError: <job> is cancelled\n')
    letter = DeadLetter.objects.create(topic="jobs", stage="worker", reason="permanent_error",
                                       payload='{"id": "x"}', traceback=trace)
    url = f"/admin/core/deadletter/{letter.pk}/change/"
    page = root.get(url)
    assert page.status_code == 200 and b'name="_save"' not in page.content
    body = page.content.decode()
    assert ('<pre style="white-space: pre-wrap; margin: 0">Traceback (most recent call last):\n'
            '  File &quot;workers/handlers/jobs.py&quot;, line 12, in complete\n'
            '    raise PermanentError(&quot;&lt;job&gt; is cancelled&quot;)') in body, "indented, escaped"
    assert root.post(url, {"reason": "edited", "payload": "{}"}).status_code == 403
    letter.refresh_from_db()
    assert (letter.reason, letter.payload) == ("permanent_error", '{"id": "x"}')
    assert "Replay selected" in root.get("/admin/core/deadletter/").content.decode()


def test_job_status_and_cleaner_are_read_only(root, job, users, redis_client):
    url = f"/admin/core/job/{job.pk}/change/"
    response = root.post(url, {"client": users["client"].pk, "title": "Renamed", "status": "completed",
                               "cleaner": users["cleaner"].pk})
    assert response.status_code == 302
    job.refresh_from_db()
    assert (job.title, job.status, job.cleaner_id) == ("Renamed", "open", None)
    assert journal(redis_client) == [], "editing a job publishes nothing"
    page = root.get(url).content.decode()
    assert 'name="status"' not in page and 'name="cleaner"' not in page


def test_accept_asks_for_the_cleaner(root, job, users, redis_client):
    selected = {"action": "accept", ACTION_CHECKBOX_NAME: [str(job.pk)]}
    asked = root.post("/admin/core/job/", selected)
    assert asked.status_code == 200 and b"Who accepts these jobs?" in asked.content
    assert b'name="cleaner"' in asked.content
    assert journal(redis_client) == [], "nothing published before the cleaner is chosen"
    # The client as their own cleaner is refused on the page, before any event.
    own = root.post("/admin/core/job/", {**selected, "apply": "yes", "cleaner": users["client"].pk})
    assert own.status_code == 200 and b"cannot be the cleaner of their own job" in own.content
    assert journal(redis_client) == []
    done = root.post("/admin/core/job/", {**selected, "apply": "yes", "cleaner": users["cleaner"].pk})
    assert done.status_code == 302
    (event,) = journal(redis_client)
    assert (event["type"], event["data"]) == ("job.accepted", {"job_id": job.pk, "cleaner_id": users["cleaner"].pk})


def test_accept_refuses_jobs_that_are_not_open(root, job, users, redis_client):
    Job.objects.filter(pk=job.pk).update(status="completed")
    response = root.post("/admin/core/job/", {"action": "accept", ACTION_CHECKBOX_NAME: [str(job.pk)]}, follow=True)
    assert b"Only open jobs can be accepted" in response.content
    assert journal(redis_client) == []


def test_payments_are_recorded_by_events_only(root, job, redis_client):
    from core.models import Payment

    payment = Payment.objects.create(job=job, reference="pi_1", amount="10.00", currency="EUR", status="succeeded")
    assert root.get("/admin/core/payment/add/").status_code == 403
    url = f"/admin/core/payment/{payment.pk}/change/"
    assert root.get(url).status_code == 200
    assert root.post(url, {"job": job.pk, "reference": "pi_1", "amount": "10.00", "currency": "EUR",
                           "status": "refunded"}).status_code == 403
    payment.refresh_from_db()
    assert payment.status == "succeeded"
