"""Database statements per event, per handler type (README "Performance").

Each statement is a round trip to PostgreSQL, and SQLite holds its write lock
for all of them: the count is part of a worker's cost per event. Counted on
the real database, SQLite and PostgreSQL (BEGIN/SAVEPOINT included; COMMIT is
COMMIT captured too)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.models import Job, Payment

from .helpers import HANDLERS, event
from workers.handlers.base import apply_once

pytestmark = pytest.mark.db

# type -> (data builder, statements when applied: BEGIN, the handled mark,
# the handler's reads and writes, COMMIT). Before the mark's single-statement
# insert and the joined reads: 7 for a notification, 10 for a job's completion.
CASES = {
    "notification.created": (lambda u, j: {"user_id": u["client"].pk, "title": "t", "message": "m"}, 5),
    "chat.message": (lambda u, j: {"sender_id": u["client"].pk, "recipient_id": u["cleaner"].pk, "text": "hi"}, 6),
    "job.created": (lambda u, j: {"job_id": j.pk}, 5),
    "job.accepted": (lambda u, j: {"job_id": j.pk, "cleaner_id": u["cleaner"].pk}, 7),
    "job.completed": (lambda u, j: {"job_id": j.pk}, 6),
    "job.cancelled": (lambda u, j: {"job_id": j.pk}, 6),
    "payment.succeeded": (lambda u, j: {"payment_id": "pi_q1", "job_id": j.pk, "amount": "10.00",
                                        "currency": "EUR"}, 10),
    "payment.failed": (lambda u, j: {"payment_id": "pi_q2", "job_id": j.pk, "amount": "10.00",
                                     "currency": "EUR"}, 10),
    "payment.refunded": (lambda u, j: {"payment_id": "pi_q3", "job_id": j.pk, "amount": "10.00",
                                       "currency": "EUR"}, 10),
}


def _statements(fn) -> list[str]:
    with CaptureQueriesContext(connection) as ctx:
        fn()
    return [q["sql"] for q in ctx.captured_queries]


@pytest.mark.parametrize("type_", sorted(CASES))
def test_statements_per_event(type_, users, job):
    build, expected = CASES[type_]
    if type_ in ("job.completed", "job.cancelled", "payment.succeeded"):
        job.cleaner = users["cleaner"]
        job.status = Job.Status.ACCEPTED
        job.save()
    ev = event(type_, build(users, job))
    applied = _statements(lambda: apply_once(ev, HANDLERS[type_]))
    assert len(applied) == expected, "\n".join(applied)
    # A duplicate costs the transaction and the mark's insert, nothing else.
    duplicate = _statements(lambda: apply_once(ev, HANDLERS[type_]))
    assert len(duplicate) == 3, "\n".join(duplicate)
    if type_.startswith("payment."):
        assert Payment.objects.filter(reference=ev.data.payment_id).exists()
