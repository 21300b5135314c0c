"""The registry: one Celery task per topic, all made by :func:`topic_task`.

A task is named after its topic, consumes the queue of the same name and runs
the handler its handler module declares for the event's type. Everything about
delivery (late acks, retries, dead letters, poison detection) is here, once;
the handlers in ``workers/handlers/`` only know about the database.
"""

from __future__ import annotations

import logging
import traceback

import msgspec
from celery import Task
from django.conf import settings

from e_clean_backend.logging import event_fields

from . import deliveries, envelope
from .celery import app
from .errors import PermanentError
from .handlers import BY_TOPIC
from .retry import RetryPolicy

log = logging.getLogger(__name__)

def _longest_wait() -> float:
    """The longest a retry may wait: it waits on the worker as an unacked ETA
    message, and past the visibility timeout Redis would hand it to a second
    worker."""
    return settings.CELERY_VISIBILITY_TIMEOUT / 2


class EventTask(Task):
    """The base of every topic task. Acks, rejects and results come from the
    ``CELERY_TASK_*`` settings (each beside its reason), stated once there."""

    # One positional JSON value; Celery's signature check would only repeat
    # the envelope's validation with a less useful error.
    typing = False


# Refusals the contract expects (an impossible state change, an invalid
# message): Celery logs them as "raised expected" at INFO without a
# traceback (Task.throws), and we log one line with the reason; the dead
# letter keeps the traceback. Anything else is a bug: traceback at ERROR.
EXPECTED_REFUSALS = (PermanentError, envelope.InvalidEvent)


def _dead_letter(task, topic, message, reason, exc, event=None):
    """Store the dead letter; if the database cannot take it either, keep the
    event: a new attempt is scheduled instead of acking it with no trace."""
    from django.db import DatabaseError

    try:
        _store_dead_letter(task, topic, message, reason, exc, event)
    except DatabaseError as db_exc:
        countdown = _longest_wait()
        log.error("Could not store the dead letter (%s); trying the event again in %.0fs", db_exc, countdown,
                  extra=event_fields(topic, event.type if event else None, task.request.id))
        raise task.retry(exc=db_exc, countdown=countdown, max_retries=task.request.retries + 1) from None


def _store_dead_letter(task, topic, message, reason, exc, event=None):
    from core.deadletters import record

    event_id = event.id if event else task.request.id
    if event:
        event_type = event.type
    else:
        event_type = message.get("type") if isinstance(message, dict) else None
    try:
        payload = msgspec.json.encode(message)
    except (TypeError, msgspec.EncodeError):
        payload = repr(message).encode()
    record(
        topic=topic,
        stage="worker",
        reason=reason,
        detail=f"{type(exc).__name__}: {exc}" if exc else "",
        payload=payload,
        event_id=event_id,
        event_type=event_type,
        traceback="".join(traceback.format_exception(exc)) if exc else "",
        attempts=task.request.retries + 1,
    )
    if isinstance(exc, EXPECTED_REFUSALS):
        log.warning("Event refused (%s): %s; dead-lettered, see the admin's dead letters", reason, exc,
                    extra=event_fields(topic, event_type, event_id))
        return
    log.error(
        "Event dead-lettered (%s) after %d attempt(s): %s; see the admin's dead letters",
        reason,
        task.request.retries + 1,
        exc,
        extra=event_fields(topic, event_type, event_id),
    )


def topic_task(topic: str, handlers: dict, policy: RetryPolicy):
    """Declare the Celery task of ``topic`` over its plain handler functions."""
    from .handlers.base import apply_once

    @app.task(
        name=topic,
        queue=topic,
        base=EventTask,
        bind=True,
        max_retries=policy.max_retries,
        throws=EXPECTED_REFUSALS,
    )
    def run(self, message):
        event_id = self.request.id
        # Messages come back when their worker dies or hits the time limit;
        # one that keeps coming back without finishing is poison.
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        started = 1 + deliveries.count(event_id) if redelivered else 1
        tracked = redelivered or self.request.retries > 0  # a count may exist from earlier deliveries
        if started > settings.EVENTS_MAX_DELIVERIES:
            # An event that kills its worker every time ends here, not in a loop.
            _dead_letter(self, topic, message, "worker_lost", RuntimeError(
                f"delivered {started - 1} times without finishing: the worker died or hit the time limit each time"))
            deliveries.clear(event_id)
            return "dead-lettered"
        event, fields = None, event_fields(topic, None, event_id)
        try:
            event = envelope.from_message(topic, message)
            fields = event_fields(topic, event.type, event.id)
            applied = apply_once(event, handlers[event.type], attempts=self.request.retries + 1)
        except envelope.InvalidEvent as exc:
            if tracked:
                deliveries.clear(event_id)
            _dead_letter(self, topic, message, exc.reason, exc)
            raise
        except Exception as exc:
            if tracked:
                deliveries.clear(event_id)
            if policy.should_retry(exc, self.request.retries):
                countdown = min(policy.countdown(self.request.retries, settings.EVENTS_RETRY_BACKOFF_SCALE),
                                _longest_wait())
                log.warning("Transient failure (%s), retry %d/%d in %.2fs", exc, self.request.retries + 1,
                            policy.max_retries, countdown, extra=fields)
                raise self.retry(exc=exc, countdown=countdown)
            reason = "retries_exhausted" if isinstance(exc, policy.retry_on) else "permanent_error"
            _dead_letter(self, topic, message, reason, exc, event)
            raise
        if tracked:
            deliveries.clear(event_id)
        log.info("Event handled" if applied else "Event already handled, skipped", extra=fields)
        return "handled" if applied else "duplicate"

    return run


# topic -> task, one per topic of workers/topics.py.
TOPIC_TASKS = {topic: topic_task(topic, module.HANDLERS, module.RETRY) for topic, module in BY_TOPIC.items()}

for _topic, _module in BY_TOPIC.items():
    if set(_module.HANDLERS) != set(envelope.types_of(_topic)):  # pragma: no cover - caught at import
        raise RuntimeError(f"{_module.__name__} handles {sorted(_module.HANDLERS)}, "
                           f"the topic's event types are {sorted(envelope.types_of(_topic))}")
