"""What every topic's handlers share: applying an event once, and notifying."""

from __future__ import annotations

from typing import Callable

from django.contrib.auth import get_user_model
from django.db import models, transaction
from django.utils import timezone

from core import realtime
from core.models import Notification, ProcessedEvent

from ..envelope import Event
from ..errors import NotYetCommitted

Handler = Callable[[Event], None]


def apply_once(event: Event, handler: Handler, attempts: int = 1) -> bool:
    """Run ``handler`` and mark the event handled, in one transaction.

    Returns False, doing nothing, when the event was already handled: a
    redelivery, a replay or a duplicate enqueue. The mark is inserted first,
    so a second worker on the same event waits on its row lock and then finds it.
    """
    with transaction.atomic():
        if not _mark_handled(event, attempts):
            return False
        handler(event)
    return True


_MARK_FIELDS = ("event_id", "topic", "type", "attempts", "handled_at")


def _mark_handled(event: Event, attempts: int) -> bool:
    """Insert the handled mark; False when the event already has one.

    One ``INSERT … ON CONFLICT DO NOTHING`` (PostgreSQL, SQLite ≥ 3.24)
    instead of an insert in a savepoint that catches IntegrityError: two
    statements fewer per event (SAVEPOINT, RELEASE), each a round trip to
    PostgreSQL. Same locking: an insert of an id another transaction holds
    waits for it, then inserts nothing if that one committed.
    """
    connection = transaction.get_connection()
    meta = ProcessedEvent._meta
    fields = [meta.get_field(name) for name in _MARK_FIELDS]
    values = (event.id, event.topic, event.type, attempts, timezone.now())
    params = [field.get_db_prep_save(value, connection) for field, value in zip(fields, values)]
    qn = connection.ops.quote_name
    sql = (f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))}) ON CONFLICT DO NOTHING")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount == 1


def existing(model: type[models.Model], pk: int, *, lock: bool = False, related: tuple[str, ...] = ()) -> models.Model:
    """The row, or NotYetCommitted: the publisher may not have committed it yet.

    ``related``: foreign keys read in the same query (one statement instead
    of one per user notified); a lock covers this row only, not theirs.
    """
    qs = model.objects.select_related(*related) if related else model.objects.all()
    if lock:
        qs = qs.select_for_update(of=("self",)) if related else qs.select_for_update()
    try:
        return qs.get(pk=pk)
    except model.DoesNotExist:
        raise NotYetCommitted(f"{model.__name__} {pk} does not exist (yet)") from None


def user(pk: int):
    return existing(get_user_model(), pk)


def notify(event: Event, users, title: str, message: str, kind: str | None = None) -> None:
    """One notification per user for this event (users may repeat or be None),
    pushed to each user's open sockets once the transaction commits."""
    seen = set()
    rows = []
    for u in users:
        if u is None or u.pk in seen:
            continue
        seen.add(u.pk)
        rows.append(Notification(user=u, kind=kind or event.type, title=title, message=message, event_id=event.id))
    Notification.objects.bulk_create(rows)
    if rows:
        # After the commit, never before: a browser must not show a
        # notification the database rolled back. A failed push is only
        # logged and counted (the client's resume covers it): the event's
        # effect is committed, so it must not fail, retry or dead-letter.
        transaction.on_commit(lambda: realtime.push(_with_pks(rows, event)), robust=True)


def _with_pks(rows: list[Notification], event: Event) -> list[Notification]:
    # bulk_create fills pks where the database returns them (PostgreSQL,
    # SQLite >= 3.35); otherwise read the committed rows back.
    if all(r.pk is not None for r in rows):
        return rows
    return list(Notification.objects.filter(event_id=event.id))
