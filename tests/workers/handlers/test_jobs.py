import pytest

from core.models import Job, Notification, ProcessedEvent
from workers.errors import NotYetCommitted, PermanentError

from .helpers import event, handle

pytestmark = pytest.mark.db


def notes(job_event):
    return list(Notification.objects.filter(event_id=job_event.id).values_list("user__username", "kind"))


def test_created_notifies_the_client(job):
    ev = event("job.created", {"job_id": job.pk})
    assert handle(ev) is True
    assert notes(ev) == [("client", "job.created")]
    assert ProcessedEvent.objects.get(event_id=ev.id).topic == "jobs"


def test_accepted_assigns_the_cleaner_and_notifies_the_client(job, users):
    ev = event("job.accepted", {"job_id": job.pk, "cleaner_id": users["cleaner"].pk})
    handle(ev)
    job.refresh_from_db()
    assert (job.status, job.cleaner) == (Job.Status.ACCEPTED, users["cleaner"])
    assert notes(ev) == [("client", "job.accepted")]


def test_completed_notifies_client_and_cleaner(job, users):
    job.cleaner = users["cleaner"]
    job.save()
    ev = event("job.completed", {"job_id": job.pk})
    handle(ev)
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    assert sorted(notes(ev)) == [("cleaner", "job.completed"), ("client", "job.completed")]


def test_cancelled_without_cleaner_notifies_the_client_only(job):
    ev = event("job.cancelled", {"job_id": job.pk})
    handle(ev)
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert notes(ev) == [("client", "job.cancelled")]


def test_cancelled_with_cleaner_notifies_both(job, users):
    job.cleaner = users["cleaner"]
    job.save()
    ev = event("job.cancelled", {"job_id": job.pk})
    handle(ev)
    assert sorted(notes(ev)) == [("cleaner", "job.cancelled"), ("client", "job.cancelled")]


def test_redelivered_event_has_its_effect_once(job):
    ev = event("job.created", {"job_id": job.pk})
    assert handle(ev) is True
    assert handle(ev) is False
    assert Notification.objects.filter(event_id=ev.id).count() == 1
    assert ProcessedEvent.objects.filter(event_id=ev.id).count() == 1


def test_missing_job_is_transient_and_leaves_nothing(clean_db):
    ev = event("job.created", {"job_id": 999_999})
    with pytest.raises(NotYetCommitted):
        handle(ev)
    assert not ProcessedEvent.objects.filter(event_id=ev.id).exists()


def test_missing_cleaner_is_transient(job):
    ev = event("job.accepted", {"job_id": job.pk, "cleaner_id": 999_999})
    with pytest.raises(NotYetCommitted):
        handle(ev)
    job.refresh_from_db()
    assert job.status == Job.Status.OPEN


@pytest.mark.parametrize("status, type", [
    (Job.Status.CANCELLED, "job.completed"),
    (Job.Status.COMPLETED, "job.cancelled"),
    (Job.Status.COMPLETED, "job.accepted"),
])
def test_impossible_transitions_are_permanent_and_change_nothing(job, users, status, type):
    job.status = status
    job.save()
    data = {"job_id": job.pk}
    if type == "job.accepted":
        data["cleaner_id"] = users["cleaner"].pk
    ev = event(type, data)
    with pytest.raises(PermanentError):
        handle(ev)
    job.refresh_from_db()
    assert job.status == status
    assert not Notification.objects.filter(event_id=ev.id).exists()
    assert not ProcessedEvent.objects.filter(event_id=ev.id).exists()


def test_client_cannot_accept_own_job(job, users):
    with pytest.raises(PermanentError):
        handle(event("job.accepted", {"job_id": job.pk, "cleaner_id": users["client"].pk}))
