"""What a handler may raise, and what the task does with it.

TRANSIENT errors are retried with backoff (the world may fix itself: the
database came back, the row got committed); everything else is permanent and
goes straight to the dead letters. There is no catch-all retry: a bug retried
five times is still a bug, only later and noisier.
"""

from __future__ import annotations

import redis
from django.db import InterfaceError, OperationalError


class NotYetCommitted(Exception):
    """A row the event refers to does not exist (yet): its transaction may not
    have committed. Retried, then dead-lettered if it never appears."""


class PermanentError(Exception):
    """The event can never be applied as it stands (an impossible state
    change, data that contradicts the database). Not retried."""


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    NotYetCommitted,
    OperationalError,  # database restarting, locked, connection dropped
    InterfaceError,
    redis.ConnectionError,
    redis.TimeoutError,
)
