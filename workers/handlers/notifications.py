"""Topic ``notifications``: a notification the backend wants shown, as is."""

from __future__ import annotations

from ..envelope import Event
from ..retry import RetryPolicy
from .base import notify, user

RETRY = RetryPolicy(max_retries=5, backoff_min=1.0, backoff_max=30.0)


def notification_created(event: Event) -> None:
    data = event.data
    notify(event, [user(data.user_id)], data.title, data.message, kind=data.kind or "general")


HANDLERS = {"notification.created": notification_created}
