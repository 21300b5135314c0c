"""The outbox relay: publish what the publisher's fast path left behind.

``core.events.publish_event`` writes each event to the ``OutboxEvent`` table
in the transaction of the change it describes and, after the commit, publishes
it and deletes the row. A row that is still there ``EVENTS_OUTBOX_DELAY``
seconds later was not published: the web process died between its commit and
the publish, or Redis hung or refused it. The bridge calls :meth:`Relay.run`
on its tick (about once a second); it publishes those rows through the same
journal + PUBLISH step as the publisher and deletes them.

Publishing twice is harmless, so nothing here locks: a fast path that timed
out but reached Redis, or two bridges relaying the same row, end as a
duplicate the bridge's claims skip, and the handlers are idempotent anyway.

The relay never gives up on a row: a row is a committed change whose event
must go out, and the only thing that stops it is Redis refusing the write,
which a later try outlives. Each failed try is counted on the row
(``attempts``, ``last_error``) and the backlog is a metric. A payload that no
longer passes the envelope (an event type removed since it was written)
is published anyway and dead-lettered by the bridge with its reason, like any
other invalid message.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import redis
from django.db import DatabaseError, close_old_connections
from django.utils import timezone
from prometheus_client import Counter, Gauge

from e_clean_backend.logging import event_fields

from ..journal import publish

log = logging.getLogger("workers.bridge")

RELAYED = Counter("eclean_outbox_relayed", "Events the relay published because the fast path after commit had not",
                  ["topic"])
BACKLOG = Gauge("eclean_outbox_backlog", "Outbox rows older than EVENTS_OUTBOX_DELAY still waiting to be published")


class Relay:
    """One duty of the bridge's loop: publish outbox rows older than ``delay`` seconds."""

    def __init__(self, delay: float, journal_maxlen: int, batch: int = 200):
        self.delay = delay
        self.journal_maxlen = journal_maxlen
        self.batch = batch
        self._quiet_until = 0.0  # the database-down warning, once a minute at most

    def run(self, client: redis.Redis) -> int:
        """Publish up to one batch of stale rows with ``client``; return how many.

        Database trouble skips the round (the next tick tries again); a Redis
        error stops the round, notes it on the row and is raised, so the bridge
        reconnects as for any lost connection.
        """
        from core.models import OutboxEvent

        cutoff = timezone.now() - timedelta(seconds=self.delay)
        try:
            close_old_connections()
            stale = OutboxEvent.objects.filter(created_at__lte=cutoff)
            rows = list(stale.order_by("created_at")[: self.batch])
            waiting = len(rows) if len(rows) < self.batch else stale.count()
        except DatabaseError as exc:
            if time.monotonic() >= self._quiet_until:
                self._quiet_until = time.monotonic() + 60
                log.warning("Outbox relay skipped: database unavailable (%s)", str(exc).splitlines()[0])
            return 0
        done = []
        for row in rows:
            fields = event_fields(row.topic, row.type, str(row.event_id))
            try:
                publish(client, row.topic, row.payload.encode("utf-8"), self.journal_maxlen)
            except redis.RedisError as exc:
                self._note_failure(row, exc)
                self._delete(done)
                BACKLOG.set(waiting - len(done))
                raise
            done.append(row)
            log.info("Relayed from the outbox: not published after commit (attempt %d)", row.attempts + 1,
                     extra=fields)
            RELAYED.labels(row.topic).inc()
        self._delete(done)
        BACKLOG.set(waiting - len(done))
        return len(done)

    def _delete(self, rows) -> None:
        from core.models import OutboxEvent

        if not rows:
            return
        try:
            OutboxEvent.objects.filter(pk__in=[r.pk for r in rows]).delete()
        except DatabaseError as exc:
            # Published already; the next round publishes them again (harmless).
            log.warning("Could not delete %d relayed outbox row(s) (%s)", len(rows), str(exc).splitlines()[0])

    @staticmethod
    def _note_failure(row, exc: Exception) -> None:
        from core.models import OutboxEvent

        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning("Outbox relay could not publish (%s); tried %d time(s), trying again", reason, row.attempts + 1,
                    extra=event_fields(row.topic, row.type, str(row.event_id)))
        try:
            OutboxEvent.objects.filter(pk=row.pk).update(attempts=row.attempts + 1, last_error=reason[:1000])
        except DatabaseError:
            pass  # the count is for people; the row itself is what matters
