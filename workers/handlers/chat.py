"""Topic ``chat``: a message tells its recipient."""

from __future__ import annotations

from ..envelope import Event
from ..retry import RetryPolicy
from .base import notify, user

# Chat is only worth delivering while it is fresh: give up within a minute or so.
RETRY = RetryPolicy(max_retries=4, backoff_min=1.0, backoff_max=20.0)

PREVIEW = 200


def chat_message(event: Event) -> None:
    data = event.data
    sender = user(data.sender_id)
    recipient = user(data.recipient_id)
    text = data.text if len(data.text) <= PREVIEW else data.text[: PREVIEW - 1] + "…"
    notify(event, [recipient], f"New message from {sender.get_username()}", text)


HANDLERS = {"chat.message": chat_message}
