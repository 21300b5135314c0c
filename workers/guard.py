"""The worker's door: every task message is checked before Celery acts on it.

Celery reads a message's headers in the worker's main process, before any of
our code runs: a ``timelimit`` of ``["x", "y"]`` raises there and kills the
worker ("Unrecoverable error"), and every restarted worker takes the same
message and dies too; ``[1e-9, 1e-9]`` brings back the soft time limit our
settings avoid; a builtin task (``celery.chord_unlock``) runs whatever it is
told. Anyone who can write to the broker can send such a message, including
the other programs the README invites to publish events.

So the consumer checks each message first (:class:`GuardedConsumer`, set as
``worker_consumer`` in ``workers/celery.py``): only the four topic tasks,
only the headers Celery's own ``apply_async`` writes for them, with the types
it writes. A message that fails is dead-lettered (stage ``worker``, reason
``bad_task_message``, the headers and body kept) and acked; the worker goes on.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from datetime import datetime

from celery.exceptions import WorkerShutdown
from celery.utils.functional import promise
from celery.worker.consumer import Consumer

from e_clean_backend.logging import event_fields

from .envelope import TOPICS

log = logging.getLogger("workers.guard")

REASON = "bad_task_message"
TASK_NAMES = frozenset(TOPICS)  # one task per topic, named after it (workers/tasks.py)
KEEP_BYTES = 16 * 1024
ETA_SKEW = 60  # seconds of clock difference between hosts tolerated in an ETA


class BadTaskMessage(ValueError):
    """A task message the worker refuses to run; the text says why."""


def _opt_str(headers, name, max_len=1000):
    value = headers.get(name)
    if value is not None and not (isinstance(value, str) and len(value) <= max_len):
        raise BadTaskMessage(f"header {name!r} must be a string or null, got {_short(value)}")


def _opt_int(headers, name, low=0, high=10_000):
    value = headers.get(name)
    if value is not None and not (type(value) is int and low <= value <= high):
        raise BadTaskMessage(f"header {name!r} must be an integer in {low}..{high} or null, got {_short(value)}")


def _opt_time(headers, name) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        when = datetime.fromisoformat(value)
        return when.timestamp()  # out-of-range years fail here, not in Celery's timer
    except (ValueError, OverflowError, OSError):
        raise BadTaskMessage(f"header {name!r} must be an ISO 8601 time or null, got {_short(value)}") from None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check(headers, body: bytes | str | None, max_time_limit: float = 3600,
          content_type: str = "application/json", max_delay: float = 3600) -> None:
    """Raise :class:`BadTaskMessage` unless this is a topic task message as
    our bridge (or ``apply_async``, or a retry) writes it."""
    if content_type != "application/json":
        # Never decoded: pickle would run code (Celery refuses it too, later).
        raise BadTaskMessage(f"untrusted content type {_short(content_type)}: task messages are JSON only")
    if not isinstance(headers, dict) or "task" not in headers:
        raise BadTaskMessage("not a Celery protocol 2 task message (no task header)")
    task = headers["task"]
    if task not in TASK_NAMES:
        raise BadTaskMessage(f"task {_short(task)} is not a topic task; only {sorted(TASK_NAMES)} run here")
    if not isinstance(headers.get("id"), str) or not 0 < len(headers["id"]) <= 100:
        raise BadTaskMessage(f"header 'id' must be a non-empty string, got {_short(headers.get('id'))}")
    # No soft limit (the settings avoid it: it would interrupt a handler
    # mid-transaction), and a hard limit only as the app sets it, up to the
    # worker's own: a message cannot outlive the visibility timeout or make
    # its limit so short that it dies on every delivery.
    limits = headers.get("timelimit")
    if limits is not None:
        hard, soft = limits if isinstance(limits, (list, tuple)) and len(limits) == 2 else ("?", "?")
        if soft is not None or not (hard is None or (type(hard) in (int, float) and 1 <= hard <= max_time_limit)):
            raise BadTaskMessage(f"header 'timelimit' must be [null or 1..{max_time_limit:g} seconds, null], "
                                 f"got {_short(limits)}: time limits are the worker's settings")
    # A retry's countdown is at most half the visibility timeout (workers/tasks.py);
    # a later ETA would sit unacked in the worker's memory while kombu puts a
    # copy back on the queue every visibility timeout, and never start.
    eta = _opt_time(headers, "eta")
    if eta is not None and eta > time.time() + max_delay + ETA_SKEW:
        raise BadTaskMessage(f"header 'eta' is more than {max_delay:g}s ahead: no retry of ours waits that long")
    _opt_time(headers, "expires")
    _opt_int(headers, "retries")
    _opt_int(headers, "group_index", high=2**31)
    _opt_int(headers, "replaced_task_nesting", high=0)
    for name in ("shadow", "group", "root_id", "parent_id", "origin", "lang"):
        _opt_str(headers, name)
    if headers.get("stamped_headers") or headers.get("stamps"):
        raise BadTaskMessage("stamped task messages are not accepted")
    if headers.get("ignore_result") not in (None, True, False):
        raise BadTaskMessage("header 'ignore_result' must be a boolean or null")
    for name, value in headers.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise BadTaskMessage(f"header {name!r} is not a finite number")
    _check_body(body)


def _check_body(body) -> None:
    # Protocol 2 body: [args, kwargs, embed]. The embed could chain or call
    # back any task, builtins included; topic tasks are never chained.
    try:
        args, kwargs, embed = json.loads(body)
    except (TypeError, ValueError, RecursionError):
        raise BadTaskMessage("the body is not a JSON [args, kwargs, embed] triple") from None
    if not (isinstance(args, list) and len(args) == 1 and isinstance(kwargs, dict) and not kwargs):
        raise BadTaskMessage("a topic task takes exactly one argument, the event")
    if not isinstance(embed, dict) or any(embed.get(k) for k in ("callbacks", "errbacks", "chain", "chord")):
        raise BadTaskMessage("callbacks, errbacks, chains and chords are not accepted")


def refuse(message, exc: Exception, connection_errors=()) -> None:
    """Dead-letter ``message`` with the reason, then ack it. If the database
    cannot take the dead letter, the message is left unacked: Redis hands it
    back after the visibility timeout, and it is refused again then."""
    from django.db import DatabaseError, close_old_connections

    from core.deadletters import record

    headers = message.headers if isinstance(message.headers, dict) else {}
    event_id = headers.get("id")
    if event_id is None:  # protocol 1 keeps the id in the body
        try:
            event_id = json.loads(message.body).get("id")
        except (TypeError, ValueError, AttributeError, RecursionError):
            pass
    event_id = event_id if isinstance(event_id, str) else None
    topic = (message.delivery_info or {}).get("routing_key") or str(headers.get("task", ""))[:50]
    body = message.body
    if isinstance(body, bytes):
        body = body[:KEEP_BYTES].decode("utf-8", "backslashreplace")
    kept = json.dumps({"headers": headers, "body": str(body)[:KEEP_BYTES]}, default=repr)
    detail = str(exc)
    event = _event_inside(headers, message.body)
    if event is not None:
        # A topic task whose headers were bad may still carry a good event:
        # keep the event as the payload, so a replay (which writes proper
        # headers) can run it; the message as received goes in the detail.
        topic, kept, detail = headers["task"], json.dumps(event), f"{exc}; the message as received: {kept}"
    fields = event_fields(topic, None, event_id[:100] if event_id else None)
    try:
        close_old_connections()
        record(topic=topic[:50], stage="worker", reason=REASON, detail=detail, payload=kept,
               event_id=event_id[:100] if event_id else None, attempts=1)
    except DatabaseError as db_exc:
        log.error("Refused a task message (%s) but could not store the dead letter (%s); left on the broker, "
                  "it comes back after the visibility timeout", exc, db_exc, extra=fields)
        return
    log.warning("Refused a task message: %s; dead-lettered and acked", exc, extra=fields)
    message.ack_log_error(log, connection_errors)


def _event_inside(headers, body):
    """The event argument of a topic task message, or None."""
    if headers.get("task") not in TASK_NAMES:
        return None
    try:
        args = json.loads(body)[0]
    except (TypeError, ValueError, KeyError, IndexError, RecursionError):
        return None
    if isinstance(args, list) and len(args) == 1 and isinstance(args[0], dict):
        return args[0]
    return None


class GuardedConsumer(Consumer):
    """Celery's consumer with :func:`check` in front of every task message,
    and an exit instead of an endless retry when the broker refuses our
    credentials after start-up."""

    def ensure_connected(self, conn):
        """Celery retries a lost broker connection forever, and kombu counts a
        refused password as a lost connection: a password rotated under a
        running worker would be "Trying again in 16.00 seconds... (8/None)"
        for ever. A refusal ends the worker instead, exit 3 with one line
        naming the variable to fix, as at start-up (workers/celery.py)."""
        from .preflight import broker_refusal_message, is_refusal

        retry = conn.ensure_connection
        url = self.app.conf.broker_url

        def ensure_connection(errback=None, *args, **kwargs):
            def on_error(exc, interval, *rest):
                if is_refusal(exc):
                    print(f"celery worker: {broker_refusal_message(url, exc)}", file=sys.stderr, flush=True)
                    raise WorkerShutdown(3)
                if errback is not None:
                    return errback(exc, interval, *rest)

            return retry(on_error, *args, **kwargs)

        conn.ensure_connection = ensure_connection
        try:
            return super().ensure_connected(conn)
        except Exception as exc:
            # Retries disabled (or given up): the refusal is raised as is.
            if is_refusal(exc):
                print(f"celery worker: {broker_refusal_message(url, exc)}", file=sys.stderr, flush=True)
                raise WorkerShutdown(3) from None
            raise

    def create_task_handler(self, promise=promise):
        handle = super().create_task_handler(promise)
        errors = self.connection_errors
        max_time_limit = self.app.conf.task_time_limit or 3600
        max_delay = (self.app.conf.broker_transport_options or {}).get("visibility_timeout", 7200) / 2

        def on_task_received(message):
            try:
                check(message.headers, message.body, max_time_limit, message.content_type, max_delay)
            except BadTaskMessage as exc:
                return refuse(message, exc, errors)
            return handle(message)

        return on_task_received
