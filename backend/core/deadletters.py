"""Dead letters: events that could not be handled, kept in the database.

Why the database and not a Redis list: dead letters are for people. They
outlive a Redis flush, show in the admin with filters, and replay marks them
in the same place. A flood of garbage is bounded by the bridge's size limit
and by storing at most ``PAYLOAD_KEEP`` bytes of each payload.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db.models import QuerySet
from django.utils import timezone

from e_clean_backend.logging import event_fields

from .models import DeadLetter

log = logging.getLogger(__name__)

PAYLOAD_KEEP = 256 * 1024


def as_text(payload: bytes | str) -> str:
    if isinstance(payload, str):
        text = payload
    else:
        # Bytes that are not UTF-8 are kept escaped (\xff), visible and inert.
        text = payload[:PAYLOAD_KEEP].decode("utf-8", "backslashreplace")
    if len(text) > PAYLOAD_KEEP:
        text = text[:PAYLOAD_KEEP] + f"... [truncated, {len(payload)} in all]"
    # PostgreSQL text cannot hold NUL; escaped like the other non-text bytes.
    return text.replace("\x00", "\\x00")


def build(*, topic, stage, reason, payload, detail="", event_id=None, event_type=None, traceback="", attempts=0):
    return DeadLetter(
        topic=topic,
        stage=stage,
        reason=reason,
        detail=detail[:10_000].replace("\x00", "\\x00"),
        payload=as_text(payload),
        event_id=event_id or "",
        event_type=event_type or "",
        traceback=traceback,
        attempts=attempts,
    )


def record(**fields) -> DeadLetter:
    letter = build(**fields)
    letter.save()
    return letter


def record_many(letters: list[DeadLetter]) -> None:
    DeadLetter.objects.bulk_create(letters)


@dataclass
class ReplayReport:
    replayed: list[DeadLetter] = field(default_factory=list)
    still_invalid: list[tuple[DeadLetter, str]] = field(default_factory=list)

    def summary(self) -> str:
        return f"{len(self.replayed)} replayed, {len(self.still_invalid)} still invalid"


def replay(letters: QuerySet[DeadLetter], *, dry_run: bool = False) -> ReplayReport:
    """Re-enqueue the valid dead letters of ``letters`` to their topic's task.

    Each goes to the broker as a fresh task with its own event id; handlers
    are idempotent on that id, so replaying an event that did get handled, or
    replaying twice, still has one effect. Invalid ones are reported, left as they are.
    """
    from workers import envelope

    report = ReplayReport()
    events = []
    for letter in letters.order_by("created_at"):
        try:
            event = envelope.parse(letter.topic, letter.payload.encode("utf-8"), max_bytes=envelope.NO_SIZE_LIMIT)
        except envelope.InvalidEvent as exc:
            report.still_invalid.append((letter, f"{exc.reason}: {exc.detail}"))
            continue
        events.append(event)
        report.replayed.append(letter)
    if dry_run or not events:
        return report
    # The one way from the Django project into Celery, imported only now.
    from workers.replay import send_again

    send_again(events)
    now = timezone.now()
    for letter in report.replayed:
        letter.replayed_at = now
        letter.replay_count += 1
        letter.save(update_fields=["replayed_at", "replay_count"])
        log.info("Dead letter %s replayed", letter.pk, extra=event_fields(letter.topic, letter.event_type, letter.event_id))
    return report
