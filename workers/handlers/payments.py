"""Topic ``payments``: the provider's verdict on a payment, recorded by its reference."""

from __future__ import annotations

from core.models import Job, Payment

from ..envelope import Event
from ..errors import PermanentError
from ..retry import RetryPolicy
from .base import existing, notify

# Money: retry longer before giving up, a lost payment update costs support time.
RETRY = RetryPolicy(max_retries=8, backoff_min=2.0, backoff_max=60.0)


def _record(event: Event, status: str) -> tuple[Payment, Job]:
    data = event.data
    job = existing(Job, data.job_id, related=("client", "cleaner"))
    payment, _ = Payment.objects.select_for_update().get_or_create(
        reference=data.payment_id,
        defaults={"job": job, "amount": data.decimal_amount, "currency": data.currency},
    )
    if payment.job_id != job.pk:
        raise PermanentError(f"payment {data.payment_id} belongs to job {payment.job_id}, not job {job.pk}")
    if status == Payment.Status.REFUNDED and payment.status == Payment.Status.FAILED:
        raise PermanentError(f"payment {data.payment_id} failed; it cannot be refunded")
    # Events are not ordered (a retried "succeeded" can arrive after the
    # refund): a refund is final, a late verdict must not undo it.
    if payment.status == Payment.Status.REFUNDED and status != Payment.Status.REFUNDED:
        raise PermanentError(f"payment {data.payment_id} is refunded; a late {status} cannot change it")
    payment.status = status
    payment.amount = data.decimal_amount
    payment.currency = data.currency
    payment.failure_reason = getattr(data, "reason", None) or ""
    payment.save()
    return payment, job


def payment_succeeded(event: Event) -> None:
    payment, job = _record(event, Payment.Status.SUCCEEDED)
    text = f"Payment of {payment.amount} {payment.currency} for “{job.title}” succeeded."
    notify(event, [job.client, job.cleaner], "Payment received", text)


def payment_failed(event: Event) -> None:
    payment, job = _record(event, Payment.Status.FAILED)
    reason = f": {payment.failure_reason}" if payment.failure_reason else "."
    notify(event, [job.client], "Payment failed", f"Your payment for “{job.title}” failed{reason}")


def payment_refunded(event: Event) -> None:
    payment, job = _record(event, Payment.Status.REFUNDED)
    text = f"{payment.amount} {payment.currency} for “{job.title}” were refunded."
    notify(event, [job.client], "Payment refunded", text)


HANDLERS = {
    "payment.succeeded": payment_succeeded,
    "payment.failed": payment_failed,
    "payment.refunded": payment_refunded,
}
