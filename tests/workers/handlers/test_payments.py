from decimal import Decimal

import pytest

from core.models import Job, Notification, Payment
from workers.errors import NotYetCommitted, PermanentError

from .helpers import event, handle

pytestmark = pytest.mark.db


def pay(type, job, ref="pi_123", amount="49.90", **extra):
    return event(type, {"payment_id": ref, "job_id": job.pk, "amount": amount, "currency": "EUR", **extra})


def who(ev):
    return sorted(Notification.objects.filter(event_id=ev.id).values_list("user__username", flat=True))


def test_succeeded_records_and_notifies_client_and_cleaner(job, users):
    job.cleaner = users["cleaner"]
    job.save()
    ev = pay("payment.succeeded", job)
    handle(ev)
    p = Payment.objects.get(reference="pi_123")
    assert (p.status, p.amount, p.currency, p.job_id) == ("succeeded", Decimal("49.90"), "EUR", job.pk)
    assert who(ev) == ["cleaner", "client"]


def test_succeeded_without_cleaner_notifies_client(job):
    ev = pay("payment.succeeded", job)
    handle(ev)
    assert who(ev) == ["client"]


def test_failed_records_reason_and_notifies_client(job, users):
    job.cleaner = users["cleaner"]
    job.save()
    ev = pay("payment.failed", job, reason="card declined")
    handle(ev)
    p = Payment.objects.get(reference="pi_123")
    assert (p.status, p.failure_reason) == ("failed", "card declined")
    assert who(ev) == ["client"]
    assert "card declined" in Notification.objects.get(event_id=ev.id).message


def test_refund_updates_the_same_payment(job):
    handle(pay("payment.succeeded", job))
    ev = pay("payment.refunded", job)
    handle(ev)
    assert Payment.objects.count() == 1
    assert Payment.objects.get().status == "refunded"
    assert who(ev) == ["client"]


def test_refund_of_a_failed_payment_is_permanent(job):
    handle(pay("payment.failed", job))
    with pytest.raises(PermanentError):
        handle(pay("payment.refunded", job))
    assert Payment.objects.get().status == "failed"


def test_reference_of_another_job_is_permanent(job, users):
    other = Job.objects.create(client=users["client"], title="other")
    handle(pay("payment.succeeded", job))
    with pytest.raises(PermanentError):
        handle(pay("payment.succeeded", other))


def test_missing_job_is_transient(clean_db):
    ev = event("payment.succeeded", {"payment_id": "x", "job_id": 424242, "amount": "1.00", "currency": "EUR"})
    with pytest.raises(NotYetCommitted):
        handle(ev)
    assert not Payment.objects.exists()


def test_duplicate_payment_event_applies_once(job):
    ev = pay("payment.succeeded", job)
    assert handle(ev) and not handle(ev)
    assert Notification.objects.filter(event_id=ev.id).count() == 1


def test_a_late_verdict_cannot_undo_a_refund(job):
    handle(pay("payment.succeeded", job))
    handle(pay("payment.refunded", job))
    with pytest.raises(PermanentError):
        handle(pay("payment.succeeded", job))
    assert Payment.objects.get().status == "refunded"
