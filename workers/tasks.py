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
import redis
from celery import Task
from django.conf import settings

from e_clean_backend import redis_config
from e_clean_backend.logging import event_fields

from . import envelope, journal
from .celery_app import app
from .errors import PermanentError
from .handlers import MODULES
from .retry import RetryPolicy

log = logging.getLogger(__name__)

_redis: redis.Redis | None = None


def _client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis_config.client(settings.REDIS_URL)
    return _redis


def reset_deliveries(event_ids: list[str]) -> None:
    """Forget unfinished-delivery counts, e.g. before a replay."""
    if event_ids:
        _client().delete(*(journal.deliveries_key(i) for i in event_ids))


def _count_delivery(event_id: str) -> int:
    """Count a delivery of a message that came back to the queue; 0 when
    Redis cannot say.

    Only called for redelivered messages (kombu flags every message it puts
    back: worker lost, time limit, visibility timeout, shutdown), so a first
    delivery costs no Redis round trip. Best effort on purpose: it only guards
    against poison events, and a Redis hiccup here must not fail, and so ack,
    an event that was never handled.
    """
    key = journal.deliveries_key(event_id)
    try:
        with _client().pipeline(transaction=False) as pipe:
            returned, _ = pipe.incr(key).expire(key, settings.EVENTS_CLAIM_TTL).execute()
        return returned
    except redis.RedisError as exc:
        log.warning("Delivery count unavailable (%s)", exc, extra=event_fields(event_id=event_id))
        return 0


def _clear_deliveries(event_id: str) -> None:
    try:
        _client().delete(journal.deliveries_key(event_id))
    except redis.RedisError:
        pass  # expires with EVENTS_CLAIM_TTL


class EventTask(Task):
    """Options every topic task shares; see settings for why each is set."""

    acks_late = True
    acks_on_timeout = False
    reject_on_worker_lost = True
    ignore_result = True
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
        countdown = settings.CELERY_VISIBILITY_TIMEOUT / 2
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
        started = 1 + _count_delivery(event_id) if redelivered else 1
        tracked = redelivered or self.request.retries > 0  # a count may exist from earlier deliveries
        if started > settings.EVENTS_MAX_DELIVERIES:
            # An event that kills its worker every time ends here, not in a loop.
            _dead_letter(self, topic, message, "worker_lost", RuntimeError(
                f"delivered {started - 1} times without finishing: the worker died or hit the time limit each time"))
            _clear_deliveries(event_id)
            return "dead-lettered"
        event, fields = None, event_fields(topic, None, event_id)
        try:
            event = envelope.from_message(topic, message)
            fields = event_fields(topic, event.type, event.id)
            applied = apply_once(event, handlers[event.type], attempts=self.request.retries + 1)
        except envelope.InvalidEvent as exc:
            if tracked:
                _clear_deliveries(event_id)
            _dead_letter(self, topic, message, exc.reason, exc)
            raise
        except Exception as exc:
            if tracked:
                _clear_deliveries(event_id)
            if policy.should_retry(exc, self.request.retries):
                # A retry waits on the worker as an unacked ETA message; past the
                # visibility timeout Redis would hand it to a second worker.
                countdown = min(policy.countdown(self.request.retries, settings.EVENTS_RETRY_BACKOFF_SCALE),
                                settings.CELERY_VISIBILITY_TIMEOUT / 2)
                log.warning("Transient failure (%s), retry %d/%d in %.2fs", exc, self.request.retries + 1,
                            policy.max_retries, countdown, extra=fields)
                raise self.retry(exc=exc, countdown=countdown)
            reason = "retries_exhausted" if isinstance(exc, policy.retry_on) else "permanent_error"
            _dead_letter(self, topic, message, reason, exc, event)
            raise
        if tracked:
            _clear_deliveries(event_id)
        log.info("Event handled" if applied else "Event already handled, skipped", extra=fields)
        return "handled" if applied else "duplicate"

    return run


# topic -> task. The bridge refuses to start if a topic has no task here.
TOPIC_TASKS = {module.TOPIC: topic_task(module.TOPIC, module.HANDLERS, module.RETRY) for module in MODULES}

missing = set(envelope.TOPICS) - set(TOPIC_TASKS)
if missing:  # pragma: no cover - a programming error caught at import
    raise RuntimeError(f"topics without a task: {sorted(missing)}")
for _module in MODULES:
    _unhandled = set(envelope.types_of(_module.TOPIC)) - set(_module.HANDLERS)
    if _unhandled:  # pragma: no cover
        raise RuntimeError(f"{_module.__name__} has no handler for {sorted(_unhandled)}")
