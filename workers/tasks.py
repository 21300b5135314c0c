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


class EventTask(Task):
    """Options every topic task shares; see settings for why each is set."""

    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    typing = False


def _dead_letter(task, topic, message, reason, exc, event=None):
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
    )
    def run(self, message):
        event_id = self.request.id
        counter = journal.deliveries_key(event_id)
        # Counts deliveries that started but never finished: only a worker
        # killed inside the handler leaves it raised. Bounded, so an event that
        # kills its worker every time ends as a dead letter instead of a loop.
        with _client().pipeline(transaction=False) as pipe:
            started, _ = pipe.incr(counter).expire(counter, settings.EVENTS_CLAIM_TTL).execute()
        if started > settings.EVENTS_MAX_DELIVERIES:
            _dead_letter(self, topic, message, "worker_lost", RuntimeError(
                f"delivered {started - 1} times without finishing: the worker died each time"))
            _client().delete(counter)
            return "dead-lettered"
        try:
            event = envelope.from_message(topic, message)
        except envelope.InvalidEvent as exc:
            _client().delete(counter)
            _dead_letter(self, topic, message, exc.reason, exc)
            raise
        fields = event_fields(topic, event.type, event.id)
        if event.id != event_id:
            log.warning("Task id %s differs from the event id", event_id, extra=fields)
        try:
            applied = apply_once(event, handlers[event.type], attempts=self.request.retries + 1)
        except Exception as exc:
            _client().delete(counter)
            if policy.should_retry(exc, self.request.retries):
                countdown = policy.countdown(self.request.retries, settings.EVENTS_RETRY_BACKOFF_SCALE)
                log.warning("Transient failure (%s), retry %d/%d in %.2fs", exc, self.request.retries + 1,
                            policy.max_retries, countdown, extra=fields)
                raise self.retry(exc=exc, countdown=countdown)
            reason = "retries_exhausted" if isinstance(exc, policy.retry_on) else "permanent_error"
            _dead_letter(self, topic, message, reason, exc, event)
            raise
        _client().delete(counter)
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
