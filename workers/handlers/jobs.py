"""Topic ``jobs``: a job's life cycle changes its row and tells the people on it."""

from __future__ import annotations

from core.models import Job

from ..envelope import Event
from ..errors import PermanentError
from ..retry import RetryPolicy
from .base import existing, notify, user

# A job row is committed by the web process just before it publishes; a few
# quick retries cover replication or commit lag, then a person looks.
RETRY = RetryPolicy(max_retries=5, backoff_min=1.0, backoff_max=30.0)

_FINAL = {Job.Status.COMPLETED, Job.Status.CANCELLED}


def _job(event: Event) -> Job:
    # Locked: two events about one job (accepted, then completed) apply in turn.
    return existing(Job, event.data.job_id, lock=True, related=("client", "cleaner"))


def _close(event: Event, status: str, refused_from: str) -> None:
    """Complete or cancel: a final state, refused from the other final state."""
    job = _job(event)
    if job.status == refused_from:
        raise PermanentError(f"job {job.pk} is {job.status}; it cannot become {status}")
    job.status = status
    job.save(update_fields=["status", "updated_at"])
    notify(event, [job.client, job.cleaner], f"Job {status}", f"The job “{job.title}” is {status}.")


def job_created(event: Event) -> None:
    job = _job(event)
    notify(event, [job.client], "Job booked", f"Your job “{job.title}” is booked. We are finding a cleaner.")


def job_accepted(event: Event) -> None:
    job = _job(event)
    cleaner = user(event.data.cleaner_id)
    if job.status in _FINAL:
        raise PermanentError(f"job {job.pk} is {job.status}; it cannot be accepted")
    if job.cleaner_id not in (None, cleaner.pk):
        raise PermanentError(f"job {job.pk} was already accepted by cleaner {job.cleaner_id}")
    if cleaner.pk == job.client_id:
        raise PermanentError(f"job {job.pk}: the client cannot be its own cleaner")
    job.cleaner = cleaner
    job.status = Job.Status.ACCEPTED
    job.save(update_fields=["cleaner", "status", "updated_at"])
    notify(event, [job.client], "Cleaner found", f"{cleaner.get_username()} accepted your job “{job.title}”.")


def job_completed(event: Event) -> None:
    _close(event, Job.Status.COMPLETED, refused_from=Job.Status.CANCELLED)


def job_cancelled(event: Event) -> None:
    _close(event, Job.Status.CANCELLED, refused_from=Job.Status.COMPLETED)


HANDLERS = {
    "job.created": job_created,
    "job.accepted": job_accepted,
    "job.completed": job_completed,
    "job.cancelled": job_cancelled,
}
