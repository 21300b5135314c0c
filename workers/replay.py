"""The one seam from the Django project into the Celery side.

The admin's replay action and ``manage.py replay_dead_letters`` go through
``core.deadletters.replay``, which imports this module lazily, only when
something is replayed: the web process builds no Celery app otherwise.
"""

from __future__ import annotations

from typing import Iterable

from . import deliveries
from .enqueue import enqueue_events
from .envelope import Event


def send_again(events: Iterable[Event]) -> int:
    """Enqueue ``events`` to their topic's task as fresh deliveries: their
    unfinished-delivery counts are reset first, so an event dead-lettered as
    poison gets the whole EVENTS_MAX_DELIVERIES again."""
    events = list(events)
    deliveries.reset([e.id for e in events])
    return enqueue_events(events)
