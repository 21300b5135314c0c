"""What the worker does per event besides the handler: its log lines and its
task events (README "Performance"). Real worker subprocesses on the suite's
password-protected Redis."""

from __future__ import annotations

import base64
import json
import threading

import pytest

from core.models import ProcessedEvent

from .. import support
from ..support import envelope, wait_for

pytestmark = [pytest.mark.db, pytest.mark.slow, pytest.mark.timeout(120)]


def _send(messages):
    from workers.celery import app

    for m in messages:
        app.send_task("notifications", args=[m], task_id=m["id"], queue="notifications")


def _notifications(user, n):
    return [envelope("notification.created", {"user_id": user.pk, "title": "t", "message": "m"}) for _ in range(n)]


def _handled(messages, timeout=60):
    ids = [m["id"] for m in messages]
    wait_for(lambda: ProcessedEvent.objects.filter(event_id__in=ids).count() == len(ids), timeout=timeout,
             what=f"{len(ids)} events handled")


def _start(tmp_path, name, level: str | None, env=None):
    import sys

    args = [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "notifications", "-c", "1",
            "-n", f"{name}@%h", "--without-gossip", "--without-mingle", *(["-l", level] if level else [])]
    return support.start(name, args, tmp_path, {"REMAP_SIGTERM": "SIGQUIT", **(env or {})})


@pytest.mark.parametrize("level, env, per_event_lines", [
    ("WARNING", {"LOG_LEVEL": "INFO"}, False),   # -l warning means warning, whatever LOG_LEVEL says
    ("INFO", {"LOG_LEVEL": "WARNING"}, True),    # and -l info means info
    (None, {"LOG_LEVEL": "WARNING"}, False),     # no -l: LOG_LEVEL decides
    (None, {"LOG_LEVEL": "INFO"}, True),
])
def test_the_worker_logs_at_the_level_it_is_given(tmp_path, redis_client, users, level, env, per_event_lines):
    worker = _start(tmp_path, f"lvl-{level}-{env['LOG_LEVEL']}", level, env)
    try:
        # No waiting for "ready." (an INFO line): the tasks wait in the queue.
        messages = _notifications(users["client"], 3)
        _send(messages)
        _handled(messages)
        log = worker.log()
        for m in messages:
            assert (f"event_id={m['id']}" in log) is per_event_lines, log[-2000:]
        assert ("Task notifications[" in log) is per_event_lines
    finally:
        worker.stop()


def _event_messages(redis_client, stop, out):
    """Every task-event message the worker PUBLISHes (kombu's fanout channel
    ``/<db>.celeryev/<routing key>``), decoded."""
    pubsub = redis_client.pubsub()
    pubsub.psubscribe("/*.celeryev/task.*")
    try:
        while not stop.is_set():
            msg = pubsub.get_message(timeout=0.1)
            if not msg or msg["type"] != "pmessage":
                continue
            envelope_ = json.loads(msg["data"])
            body = envelope_["body"]
            if envelope_.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            out.append(json.loads(body))
    finally:
        pubsub.close()


def test_task_events_go_out_in_batches_and_every_task_is_seen(tmp_path, redis_client, users):
    stop, seen = threading.Event(), []
    listener = threading.Thread(target=_event_messages, args=(redis_client, stop, seen), daemon=True)
    listener.start()
    worker = _start(tmp_path, "events", "INFO", {"CELERY_WORKER_SEND_TASK_EVENTS": "true"})
    try:
        worker.wait_log(support.WORKER_READY, timeout=60)
        messages = _notifications(users["client"], 60)
        _send(messages)
        _handled(messages)
        ids = {m["id"] for m in messages}

        def succeeded():
            events = [e for body in seen for e in (body if isinstance(body, list) else [body])]
            return {e["uuid"] for e in events if e.get("type") == "task-succeeded"} >= ids

        wait_for(succeeded, timeout=10, what="a task-succeeded event for every task")
        # Three events per task (received, started, succeeded); Celery alone
        # sends them in one PUBLISH per task, batching in far fewer.
        assert len(seen) <= len(messages) // 5, f"{len(seen)} event messages for {len(messages)} tasks"
    finally:
        stop.set()
        worker.stop()
        listener.join(5)
